"""The one learning-rate schedule: linear warm-up, then cosine decay."""

import math

import pytest

from vicreg.schedule import warmup_cosine


def test_warm_up_then_cosine_by_hand():
    lrs = [warmup_cosine(s, 100, 10, 1.0, 0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert warmup_cosine(100, 100, 10, 1.0, 0.01) == pytest.approx(0.01)
    assert warmup_cosine(0, 10, 0, 1.0, 0.0) == pytest.approx(1.0)


def test_without_warm_up_it_is_the_plain_cosine_the_probe_and_predictor_used():
    # Before they called this function, the linear probe and the predictor wrote lr * 0.5 * (1 + cos(pi * step /
    # total)). Here the cosine's argument is pi * (step / total): float64 rounds the two products differently,
    # by at most an ulp of pi, so the learning rates agree to a few ulp of lr (seen: 3.7e-16 of lr), not to
    # the bit. Pre-training's schedule is this function's own formula, unchanged, so its runs resume exactly.
    worst = 0.0
    for total in (1, 7, 30, 1000):
        for step in range(total + 1):
            for lr in (1e-3, 0.3, 1.0):
                plain = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                worst = max(worst, abs(warmup_cosine(step, total, 0, lr) - plain) / lr)
    assert worst <= 4 * 2.0**-52  # a few float64 ulp of lr
