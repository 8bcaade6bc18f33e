"""The JEPA predictor: it learns known dynamics, the baselines are exact, roll-outs feed predictions back,
the transformer is causal, save/load and seeding are exact, and bad input fails clearly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vicreg.config import LossConfig, predictor_config
from vicreg.loss import covariance_term, variance_term
from vicreg.worldmodel import (
    EmbeddingNorm,
    FitResult,
    MLPPredictor,
    TransformerPredictor,
    baseline_last,
    baseline_linear,
    build_predictor,
    fit_predictor,
    load_predictor,
    prediction_loss,
    rollout,
    rollout_errors,
    save_predictor,
)
from vicreg.worldmodel.fit import rollout_loss

QUIET = {"log": lambda line: None}


def rotation_sequences(n: int, t: int, seed: int) -> torch.Tensor:
    """e[t+1] = R e[t] (R: two plane rotations, scaled by 0.98 and 1.02), random starts; shifted and scaled
    so that the standardisation has work to do. (N, T, 4)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.zeros(4, 4)
    for i, (angle, scale) in enumerate([(0.5, 0.98), (0.3, 1.02)]):
        c, s = math.cos(angle), math.sin(angle)
        r[2 * i:2 * i + 2, 2 * i:2 * i + 2] = scale * torch.tensor([[c, -s], [s, c]])
    frames = [torch.randn(n, 4, generator=g)]
    for _ in range(t - 1):
        frames.append(frames[-1] @ r.T)
    return torch.stack(frames, dim=1) * 3 + 1


def pushed_sequences(n: int, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """e[t+1] = e[t] + B a[t] with random actions a[t] (the push between frames t and t+1): (N, T, 4), (N, T, 2)."""
    b = torch.tensor([[0.6, -0.2], [0.1, 0.5], [-0.4, 0.3], [0.3, 0.6]])
    g = torch.Generator().manual_seed(seed)
    actions = torch.randn(n, t, 2, generator=g)
    frames = [torch.randn(n, 4, generator=g)]
    for i in range(t - 1):
        frames.append(frames[-1] + actions[:, i] @ b.T)
    return torch.stack(frames, dim=1), actions


def config(**overrides):
    base = {"width": 64, "layers": 2, "heads": 2, "epochs": 10, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.0}
    return predictor_config({**base, **overrides})


@pytest.fixture(scope="module")
def rotation_data():
    return rotation_sequences(256, 12, seed=0), rotation_sequences(128, 12, seed=1)


@pytest.fixture(scope="module")
def pushed_data():
    return pushed_sequences(256, 10, seed=0), pushed_sequences(128, 10, seed=1)


@pytest.fixture(scope="module")
def rotation_fits(rotation_data):
    train, test = rotation_data
    return {
        "mlp": fit_predictor(train, config(model="mlp", epochs=8), val=test, **QUIET),
        "transformer": fit_predictor(train, config(model="transformer", width=32, epochs=10, batch_size=128, lr=1e-2),
                                     val=test, **QUIET),
    }


@pytest.fixture(scope="module")
def pushed_fit(pushed_data):
    (train, actions), (test, test_actions) = pushed_data
    return fit_predictor(train, config(epochs=8), actions=actions, val=test, val_actions=test_actions, **QUIET)


# --------------------------------------------------------------------------------------------
# Learning known dynamics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_learns_linear_dynamics(rotation_data, rotation_fits, model):
    _, test = rotation_data
    fit = rotation_fits[model]
    errors = rollout_errors(fit.model, fit.norm, test, horizons=(1, 2, 4))
    # reached: mlp ~7e-5, transformer ~2e-5 at h=1; "last" 0.17, "linear" 0.035
    assert errors["predictor"][1] < 1e-2
    assert errors["predictor"][1] < 0.02 * errors["last"][1]
    assert errors["predictor"][1] < 0.1 * errors["linear"][1]
    assert errors["predictor"][4] < 0.05 * errors["last"][4]  # the roll-out stays good over 4 steps
    assert [h["epoch"] for h in fit.history] == list(range(1, fit.cfg.epochs + 1))
    one_step = rollout_errors(fit.model, fit.norm, test, horizons=(1,))  # the validation windows
    assert fit.history[-1]["val_loss"] == pytest.approx(one_step["predictor"][1], rel=1e-4)
    assert fit.history[-1]["val_loss"] < 0.1 * fit.history[0]["val_loss"]
    assert not fit.model.training and fit.action_dim == 0 and fit.dim == 4


def test_uses_actions(pushed_data, pushed_fit):
    (train, actions), (test, test_actions) = pushed_data
    blind = fit_predictor(train, config(epochs=8, use_actions=False), actions=actions, **QUIET)
    assert pushed_fit.action_dim == 2 and blind.action_dim == 0
    with_actions = rollout_errors(pushed_fit.model, pushed_fit.norm, test, test_actions, horizons=(1, 2))
    without = rollout_errors(blind.model, blind.norm, test, test_actions, horizons=(1, 2))
    # reached: ~2e-4 with the actions; ~0.15 without (the push is unpredictable, "last" is the best guess)
    assert with_actions["predictor"][1] < 1e-2
    assert without["predictor"][1] > 0.05
    assert without["predictor"][1] > 20 * with_actions["predictor"][1]
    assert blind.history[0]["val_loss"] is None


def test_train_horizon_loss_feeds_predictions_back():
    # The untrained predictor is "next = last" (zero-initialised residual). Fed back, every step predicts
    # frame s+k-1; with teacher forcing step j would predict frame s+k+j-1 instead.
    torch.manual_seed(0)
    model = MLPPredictor(dim=3, context=2)
    window = torch.randn(5, 2 + 3, 3)
    expected = torch.stack([F.mse_loss(window[:, 1], window[:, 2 + j]) for j in range(3)]).mean()
    assert rollout_loss(model, window, None, 2).item() == pytest.approx(expected.item(), rel=1e-6)


def test_train_horizon_fit_runs_with_actions(pushed_data):
    (train, actions), _ = pushed_data
    fit = fit_predictor(train[:64], config(epochs=2, train_horizon=3, model="transformer", width=16),
                        actions=actions[:64], **QUIET)
    assert len(fit.history) == 2 and all(math.isfinite(h["train_loss"]) for h in fit.history)


# --------------------------------------------------------------------------------------------
# Norm, baselines, roll-out
# --------------------------------------------------------------------------------------------


def test_embedding_norm_standardises_and_inverts():
    emb = torch.randn(20, 6, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 7.0])
    norm = EmbeddingNorm.fit(emb)
    z = norm(emb).reshape(-1, 3)
    assert torch.allclose(z.mean(dim=0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=0), torch.ones(3), atol=1e-5)
    assert torch.allclose(norm.denormalize(norm.normalize(emb)), emb, atol=1e-5)
    constant = EmbeddingNorm.fit(torch.ones(4, 5, 2))  # std floored: finite
    assert torch.isfinite(constant(torch.ones(3, 2))).all()


def test_baselines_exact():
    t = torch.arange(10, dtype=torch.float64)
    offset, slope = torch.randn(6, 1, 3, dtype=torch.float64), torch.randn(6, 1, 3, dtype=torch.float64)
    constant = offset.expand(6, 10, 3)
    linear = offset + t[None, :, None] * slope
    assert torch.equal(baseline_last(constant, 4, 5), constant[:, 4:9])
    assert torch.allclose(baseline_linear(linear, 4, 6), linear[:, 4:10], atol=1e-12)
    assert torch.allclose(baseline_linear(linear, 2, 1), linear[:, 2:3], atol=1e-12)

    # through rollout_errors (standardised units); the untrained predictor is "next = last"
    model = MLPPredictor(dim=3, context=2)
    norm = EmbeddingNorm.fit(linear)
    errors = rollout_errors(model, norm, linear, horizons=(1, 2, 4))
    assert all(errors["linear"][h] == pytest.approx(0.0, abs=1e-10) for h in (1, 2, 4))
    assert errors["last"][2] == pytest.approx(4 * errors["last"][1], rel=1e-5)
    assert errors["predictor"] == pytest.approx(errors["last"], rel=1e-5)
    noisy = constant + 0.1 * torch.randn(6, 1, 3, dtype=torch.float64)  # varies across sequences, not time
    errors = rollout_errors(model, EmbeddingNorm.fit(noisy), noisy, horizons=(1, 3))
    assert all(errors["last"][h] == pytest.approx(0.0, abs=1e-12) for h in (1, 3))


def test_rollout_shapes_and_one_step_equals_model(pushed_data, pushed_fit):
    _, (test, actions) = pushed_data
    model, norm, k = pushed_fit.model, pushed_fit.norm, pushed_fit.cfg.context
    start = 5
    out = rollout(model, norm, test, start, 3, actions)
    assert out.shape == (test.shape[0], 3, 4)
    with torch.no_grad():
        context = norm(test[:, start - k:start])
        first = model(context, actions[:, start - k:start])
        second = model(torch.cat([context[:, 1:], first[:, None]], dim=1), actions[:, start - k + 1:start + 1])
    assert torch.allclose(out[:, 0], norm.denormalize(first), atol=1e-5)
    assert torch.allclose(out[:, 1], norm.denormalize(second), atol=1e-5)
    assert torch.allclose(rollout(model, norm, test, start, 1, actions)[:, 0], out[:, 0], atol=1e-6)
    # actions for T - 1 frames (the last frame's action is never used) give the same roll-out
    assert torch.equal(rollout(model, norm, test, start, 3, actions[:, :-1]), out)


# --------------------------------------------------------------------------------------------
# The transformer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("train_mode", [True, False])
def test_transformer_is_causal(train_mode):
    torch.manual_seed(0)
    model = TransformerPredictor(dim=3, context=5, action_dim=2, width=16, layers=2, heads=2).train(train_mode)
    context, actions = torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    with torch.set_grad_enabled(train_mode):
        base = model.hidden_states(context, actions)
        for j in range(5):
            changed = context.clone()
            changed[:, j] += 1.0
            hidden = model.hidden_states(changed, actions)
            assert torch.allclose(hidden[:, :j], base[:, :j], atol=1e-6), f"positions < {j} saw frame {j}"
            assert (hidden[:, j:] - base[:, j:]).abs().amax(dim=2).min() > 1e-4


def test_context_lengths():
    transformer = TransformerPredictor(dim=3, context=4, width=8, layers=1, heads=2)
    for length in range(1, 5):
        assert transformer(torch.randn(2, length, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="1 <= L <= 4"):
        transformer(torch.randn(2, 5, 3))
    mlp = MLPPredictor(dim=3, context=4, width=8)
    with pytest.raises(ValueError, match="exactly context=4"):
        mlp(torch.randn(2, 3, 3))
    with pytest.raises(ValueError, match="pass the actions"):
        MLPPredictor(dim=3, context=4, action_dim=2)(torch.randn(2, 4, 3))


def test_build_predictor():
    assert isinstance(build_predictor(config(model="mlp"), 5, 2), MLPPredictor)
    model = build_predictor(config(model="transformer"), 5, 0)
    assert isinstance(model, TransformerPredictor) and model.dim == 5 and model.context == 4


# --------------------------------------------------------------------------------------------
# Save/load, seeding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_save_load_round_trip(tmp_path, rotation_data, rotation_fits, model):
    _, test = rotation_data
    fit = rotation_fits[model]
    path = tmp_path / "sub" / "predictor.pt"
    save_predictor(fit, path)
    assert [p.name for p in path.parent.iterdir()] == ["predictor.pt"]  # no temporary file left
    loaded = load_predictor(path)
    assert isinstance(loaded, FitResult) and not loaded.model.training
    assert loaded.cfg == fit.cfg and loaded.history == fit.history
    assert (loaded.dim, loaded.action_dim) == (fit.dim, fit.action_dim)
    assert torch.equal(rollout(loaded.model, loaded.norm, test, 6, 3), rollout(fit.model, fit.norm, test, 6, 3))


def test_save_load_with_actions(tmp_path, pushed_data, pushed_fit):
    _, (test, actions) = pushed_data
    save_predictor(pushed_fit, tmp_path / "p.pt")
    loaded = load_predictor(tmp_path / "p.pt")
    assert loaded.action_dim == 2
    assert torch.equal(rollout(loaded.model, loaded.norm, test, 4, 2, actions),
                       rollout(pushed_fit.model, pushed_fit.norm, test, 4, 2, actions))


def test_same_seed_same_weights(pushed_data):
    (train, actions), _ = pushed_data
    cfg = config(epochs=2, dropout=0.1, train_horizon=2)
    state = torch.get_rng_state()
    a = fit_predictor(train[:128], cfg, actions=actions[:128], **QUIET)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    b = fit_predictor(train[:128], cfg, actions=actions[:128], **QUIET)
    c = fit_predictor(train[:128], predictor_config({**vars(cfg), "seed": 1}), actions=actions[:128], **QUIET)
    weights_a, weights_b, weights_c = (fit.model.state_dict() for fit in (a, b, c))
    for name, weight in weights_a.items():
        assert torch.equal(weight, weights_b[name]), name
    assert any(not torch.equal(weight, weights_c[name]) for name, weight in weights_a.items())
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]


# --------------------------------------------------------------------------------------------
# Joint training loss
# --------------------------------------------------------------------------------------------


def test_prediction_loss_by_hand():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    cfg = LossConfig()  # mu 25, nu 1, eps 1e-4, gamma 1
    only = prediction_loss(pred, target, cfg, vicreg_weight=0.0)
    assert only["prediction"].item() == pytest.approx((1 + 4 + 4 + 9) / 4)
    assert only["loss"].item() == pytest.approx(4.5)
    assert only["variance"].grad_fn is None  # logged, not trained
    # pred: per-dim variance 2 (std > gamma, no hinge); target: variance 0.5 -> 1 - sqrt(0.5001) per dim
    variance = 1 - math.sqrt(0.5 + 1e-4)
    # covariances: pred C = [[2, 2], [2, 2]] -> 2 * 4 / 2 = 4; target C = 0.5 everywhere -> 2 * 0.25 / 2 = 0.25
    terms = prediction_loss(pred, target, cfg, vicreg_weight=0.5)
    assert terms["variance"].item() == pytest.approx(variance, abs=1e-6)
    assert terms["covariance"].item() == pytest.approx(4.25, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(4.5 + 0.5 * (25 * variance + 4.25), abs=1e-5)
    terms["loss"].backward()
    assert target.grad is not None and target.grad.abs().sum() > 0


def test_prediction_loss_uses_vicreg_terms():
    torch.manual_seed(0)
    pred, target = torch.randn(16, 5), torch.randn(16, 5) * 0.3
    cfg = LossConfig(mu=3.0, nu=0.5, eps=1e-3, gamma=0.8)
    terms = prediction_loss(pred, target, cfg, vicreg_weight=2.0)
    variance = variance_term(pred, 1e-3, 0.8) + variance_term(target, 1e-3, 0.8)
    covariance = covariance_term(pred) + covariance_term(target)
    assert torch.allclose(terms["variance"], variance) and torch.allclose(terms["covariance"], covariance)
    expected = F.mse_loss(pred, target) + 2.0 * (3.0 * variance + 0.5 * covariance)
    assert torch.allclose(terms["loss"], expected)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(pushed_data):
    (train, actions), _ = pushed_data
    cfg = config(epochs=1)
    with pytest.raises(ValueError, match=r"must be \(N, T, E\) embeddings .* got shape \(10, 4\)"):
        fit_predictor(torch.randn(10, 4), cfg, **QUIET)
    with pytest.raises(ValueError, match="T=4 frames per sequence, need at least 5"):
        fit_predictor(torch.randn(10, 4, 3), cfg, **QUIET)
    with pytest.raises(ValueError, match=r"actions must be \(N, T, A\)"):
        fit_predictor(train, cfg, actions=actions[:, :5], **QUIET)
    with pytest.raises(ValueError, match="val_actions is None"):
        fit_predictor(train, cfg, actions=actions, val=train, **QUIET)
    with pytest.raises(ValueError, match="embedding dim E=3, expected 4"):
        fit_predictor(train, cfg, val=torch.randn(5, 8, 3), **QUIET)
    model, norm = MLPPredictor(dim=4, context=4), EmbeddingNorm.fit(train)
    with pytest.raises(ValueError, match="start=2"):
        rollout(model, norm, train, 2, 1)
    with pytest.raises(ValueError, match="T >= max"):
        rollout_errors(model, norm, train, horizons=(8,))
    with pytest.raises(ValueError, match="expects a context of shape"):
        model(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="same shape"):
        prediction_loss(torch.randn(4, 3), torch.randn(4, 2), LossConfig(), 1.0)
