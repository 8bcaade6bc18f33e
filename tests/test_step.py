"""The fast step (both views in one call, per-view batch norm) against the plain step (one call per view)."""

import copy
import shutil

import pytest
import torch
from torch import nn

from vicreg.batchnorm import PerViewBatchNorm
from vicreg.config import LossConfig, ModelConfig
from vicreg.models import build_model
from vicreg.optim import set_learning_rate
from vicreg.step import Step, make_loss_fn, plan_step, stack_views

from numerics import BFLOAT16_EPS, FLOAT64_REL, assert_rel_close, relative_gap

MODELS = {
    "small_cnn": ModelConfig(backbone="small_cnn", expander=[32, 32]),
    "resnet18_cifar": ModelConfig(backbone="resnet18_cifar", expander=[32, 32]),
    "small_cnn+mlp_head": ModelConfig(backbone="small_cnn", head="mlp", head_widths=[24], embedding_dim=8,
                                      expander=[16, 16]),
    "small_cnn+seed_head": ModelConfig(backbone="small_cnn", head="seed", head_widths=[16, 8], embedding_dim=4,
                                       expander=[16, 16], dropout=0.0),
    # a ViT (layer norm, per sample; per-view batch norm in the expander only), 4x4 patches of the 8x8 views
    "timm_vit": ModelConfig(backbone="timm:vit_tiny_patch16_224", expander=[32, 32],
                            backbone_args={"patch_size": 4, "depth": 1, "embed_dim": 24, "num_heads": 2}),
}


def _views(n=6, channels=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g), torch.rand(n, channels, size, size, generator=g)


def _pair(name, channels=3, dtype=torch.float32):
    torch.manual_seed(0)
    plain = build_model(MODELS[name], channels, [0.5] * channels, [0.25] * channels, 8).to(dtype).train()
    fast = copy.deepcopy(plain)
    PerViewBatchNorm.convert_per_view_batchnorm(fast)
    assert sum(isinstance(m, PerViewBatchNorm) for m in fast.modules()) == \
        sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    return plain, fast


def _step(model, stack, xa, xb, amp=None):
    terms = make_loss_fn(model, LossConfig(), stack=stack, amp=amp)(xa, xb)
    model.zero_grad(set_to_none=True)
    terms.loss.backward()
    return torch.stack(tuple(terms)).detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _compare(fast, plain, got, want, rel, what):
    """Loss terms, every gradient and every buffer (running mean/var, batches tracked) of the two paths."""
    (terms_fast, grads_fast), (terms_plain, grads_plain) = got, want
    for i, term in enumerate(("loss", "invariance", "variance", "covariance")):
        assert_rel_close(terms_fast[i], terms_plain[i], rel, f"{what} {term}")
    # a gradient below 1e-3 of the whole gradient's norm counts as zero (see numerics.assert_rel_close)
    floor = 1e-3 * torch.cat([g.flatten() for g in grads_plain.values()]).norm().item()
    for n, g in grads_plain.items():
        assert_rel_close(grads_fast[n], g, rel, f"{what} grad {n}", floor=floor)
    buffers = dict(fast.named_buffers())
    for n, b in plain.named_buffers():  # running mean/var updated view a then view b, batches counted twice
        assert_rel_close(buffers[n].double(), b.double(), rel, f"{what} buffer {n}")


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_step_equals_the_plain_step_in_float64(name):
    """The exactness claim: stacked views with per-view batch norm compute the paper's per-view maths.
    In float64 the two paths agree to ~1e-12 on any machine (FLOAT64_REL = 1e-10 leaves two decades)."""
    plain, fast = _pair(name, dtype=torch.float64)
    xa, xb = (x.double() for x in _views())
    _compare(fast, plain, _step(fast, True, xa, xb), _step(plain, False, xa, xb), FLOAT64_REL, name)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18_cifar"])
def test_fast_step_in_float32_matches_the_plain_step_to_rounding(name):
    """float32: the same maths, summed in another order. Relative norm 1e-3: unit roundoff 1.2e-7, times
    ~20 for the batch-norm reductions (384 terms here, sqrt growth), amplified through up to 20 batch-norm
    backward passes (differences of near-equal sums) by up to ~400. Seen on a 2-core x86 machine: 1e-5
    (ResNet-18 gradients), 1e-6 (small CNN); in float64 the same comparison gives < 1e-13."""
    plain, fast = _pair(name)
    xa, xb = _views()
    _compare(fast, plain, _step(fast, True, xa, xb), _step(plain, False, xa, xb), 1e-3, name)


def test_fast_step_under_bf16_autocast_is_as_accurate_as_the_plain_bf16_step():
    """bf16 has 8 bits of mantissa (eps 7.8e-3) and the two paths round in different places, so they are
    compared with the float32 truth instead of with each other: the fast path must lose no more than the
    plain one. On this tiny net (batch 8 of 8x8 images, 20 batch-norm layers) the bf16 gradients of both
    paths are ~40 % off float32 (seen here: 0.417 plain, 0.427 fast); 1.5x allows the rounding to land
    elsewhere on another machine while a path that lost precision (e.g. statistics in bf16) would fail."""
    plain, fast = _pair("resnet18_cifar")
    xa, xb = _views(n=8)
    terms_plain, grads_plain = _step(plain, False, xa, xb, amp=torch.bfloat16)
    terms_fast, grads_fast = _step(fast, True, xa, xb, amp=torch.bfloat16)
    terms_fp32, grads_fp32 = _step(copy.deepcopy(plain), False, xa, xb)
    def flat(grads: dict) -> torch.Tensor:
        return torch.cat([g.flatten() for g in grads.values()])

    plain_gap = relative_gap(flat(grads_plain), flat(grads_fp32))
    assert relative_gap(flat(grads_fast), flat(grads_fp32)) <= 1.5 * plain_gap
    # the loss is computed in float32 from bf16 projections: a few bf16 eps from the float32 loss
    assert_rel_close(terms_fast, terms_fp32, 4 * BFLOAT16_EPS, "bf16 fast vs fp32 terms")
    assert_rel_close(terms_plain, terms_fp32, 4 * BFLOAT16_EPS, "bf16 plain vs fp32 terms")


def test_joint_batch_norm_changes_the_numbers():
    """Stacking without the per-view twin normalises both views together: a different loss (what
    train.batchnorm=joint trades for speed)."""
    torch.manual_seed(0)
    plain = build_model(MODELS["small_cnn"], 3, [0.5] * 3, [0.25] * 3).train()
    joint = copy.deepcopy(plain)
    xa, xb = _views()
    xb = xb * 0.3 + 0.6  # views with different statistics
    terms_plain, _ = _step(plain, False, xa, xb)
    terms_joint, _ = _step(joint, True, xa, xb)
    assert (terms_joint - terms_plain).abs().max() > 1e-3


def test_stack_views_order_and_memory_format():
    xa, xb = _views(n=2)
    x = stack_views(xa, xb, channels_last=True)
    assert torch.equal(x[:2], xa) and torch.equal(x[2:], xb)
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile on the CPU needs a C compiler")
@pytest.mark.slow
@pytest.mark.parametrize("name", ["small_cnn", "timm_vit"])
def test_compiled_fast_step_is_one_graph_and_matches_eager(name):
    """train.compile hands make_loss_fn to torch.compile: one graph (no breaks), the same loss and gradients;
    for a timm ViT too (its attention, layer norm and class token trace whole)."""
    plain, fast = _pair(name)
    xa, xb = _views()
    fn = make_loss_fn(fast, LossConfig(), stack=True)
    explained = torch._dynamo.explain(fn)(xa, xb)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    # channels_last too (the CUDA default): the per-view batch norm traces without a break in any layout
    explained = torch._dynamo.explain(make_loss_fn(fast, LossConfig(), stack=True, channels_last=True))(xa, xb)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    terms_eager, grads_eager = _step(plain, False, xa, xb)
    compiled = torch.compile(fn)
    terms = compiled(xa, xb)
    fast.zero_grad(set_to_none=True)
    terms.loss.backward()
    # inductor fuses and reorders the float32 reductions: rounding only, the same 1e-3 relative norm as
    # test_fast_step_in_float32_matches_the_plain_step_to_rounding
    assert_rel_close(torch.stack(tuple(terms)).detach(), terms_eager, 1e-3, "compiled terms")
    floor = 1e-3 * torch.cat([g.flatten() for g in grads_eager.values()]).norm().item()
    for n, p in fast.named_parameters():
        assert_rel_close(p.grad, grads_eager[n], 1e-3, f"compiled grad {n}", floor=floor)


# --------------------------------------------------------------------------------------------
# Step: compilation as train.compile asks, timed once, with an eager fallback
# --------------------------------------------------------------------------------------------


def _step_setup(**train):
    from vicreg.augment import TwoViews
    from vicreg.config import build_config
    cfg = build_config("demo", {"model.expander": [32, 32], "train.batch_size": 8, **train})
    torch.manual_seed(0)
    model = build_model(cfg.model, 1, [0.5], [0.25]).train()
    images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return cfg, model, TwoViews(cfg.augment, 8), images


def _compiles(device: str, world: int = 1, **train) -> tuple[bool, str, bool]:
    from vicreg.config import build_config

    plan, notes = plan_step(build_config("demo", train), torch.device(device), world)
    return plan.compile, plan.mode, plan.compiles_update


def test_compile_auto_is_on_for_cuda_with_cuda_graphs_and_off_on_the_cpu():
    assert _compiles("cpu") == (False, "default", False)
    assert _compiles("cuda") == (True, "reduce-overhead", False)  # the forward and loss (compile_scope=loss)
    assert _compiles("cuda", **{"train.compile_scope": "step"}) == (True, "reduce-overhead", True)
    assert _compiles("cpu", **{"train.compile": True}) == (True, "default", False)
    assert _compiles("cuda", **{"train.compile": False, "train.compile_mode": "max-autotune"}) == \
        (False, "max-autotune", False)


def test_the_plan_decides_batch_norm_ddp_precision_and_compilation_once():
    """Every choice the step makes, from the config, the device and the job's size, with the one note a job
    gets when compilation it asked for is off."""
    from vicreg.config import build_config

    plan, notes = plan_step(build_config("demo"), torch.device("cpu"))
    assert (plan.stack, plan.per_view, plan.sync_batchnorm, plan.data_parallel) == (True, True, False, False)
    assert (plan.amp, plan.channels_last, notes) == (None, False, [])
    plan, notes = plan_step(build_config("demo", {"train.batchnorm": "joint"}), torch.device("cuda"), world=4)
    assert (plan.per_view, plan.sync_batchnorm, plan.data_parallel, plan.compile) == (False, True, True, False)
    assert (plan.amp, plan.channels_last) == (torch.bfloat16, True)
    assert notes == ["train.compile is off with 4 processes: the compiled step does not capture the all-gather "
                     "and the synced batch norm yet (the step runs eagerly)"]
    plan, _ = plan_step(build_config("demo", {"train.stack_views": False}), torch.device("cpu"))
    assert (plan.stack, plan.per_view) == (False, False)


def test_the_step_converts_batch_norm_once_and_builds_its_optimiser():
    cfg, model, _, _ = _step_setup()
    step = Step(model, cfg, torch.device("cpu"), log=lambda m: None)
    assert step.module is model and step.plan.per_view
    layers = [m for m in model.modules() if isinstance(m, PerViewBatchNorm)]
    assert layers and all(m.views == 2 and not m.sync for m in layers)
    assert {id(p) for g in step.optimizer.param_groups for p in g["params"]} == \
        {id(p) for p in model.parameters() if p.requires_grad}


def test_a_failed_compilation_falls_back_to_eager_with_one_warning(monkeypatch):
    """The first call raises inside the "compiled" function after a forward that moved the batch-norm
    buffers: the step says why once, restores the buffers and gives exactly the eager step's numbers."""
    cfg, model, augment, images = _step_setup(**{"train.compile": True})
    reference = copy.deepcopy(model)

    def broken_compile(fn, mode=None):
        def run(xa, xb):
            model(torch.cat([xa, xb]))  # a forward that updates running statistics, then the "compiler" fails
            raise RuntimeError("inductor: no C compiler found\nsecond line")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    lines = []
    step = Step(model, cfg, torch.device("cpu"), log=lines.append)
    got = [step(images, augment, torch.Generator().manual_seed(0)) for _ in range(2)]
    assert step.fallback == "RuntimeError: inductor: no C compiler found" and step.compile_seconds == 0.0
    assert len(lines) == 1 and "train.compile failed, training eagerly instead (RuntimeError: inductor" in lines[0]
    cfg_eager = copy.deepcopy(cfg)
    cfg_eager.train.compile = False
    eager = Step(reference, cfg_eager, torch.device("cpu"), log=lines.append)
    want = [eager(images, augment, torch.Generator().manual_seed(0)) for _ in range(2)]
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    for (n, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), n


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile on the CPU needs a C compiler")
@pytest.mark.slow
def test_compiled_whole_update_matches_the_eager_step():
    """compile_scope=step: forward, loss, backward and the LARS update compiled, the learning rate a tensor
    set in place; three steps at three learning rates give the eager step's losses and weight updates."""
    runs = {}
    for compiled in (True, False):
        cfg, model, augment, images = _step_setup(**{"train.compile": compiled, "train.compile_scope": "step",
                                                     "optim.name": "lars"})
        before = [p.detach().clone() for p in model.parameters()]
        step, g, terms = Step(model, cfg, torch.device("cpu"), log=lambda m: None), torch.Generator().manual_seed(0), []
        for lr in (0.1, 0.2, 0.05):
            set_learning_rate(step.optimizer, lr)
            terms.append(step(images, augment, g))
        assert step.fallback is None and (step.compile_seconds > 0) == compiled
        runs[compiled] = (torch.stack(terms), [p.detach() - b for p, b in zip(model.parameters(), before)])
    # float32, reordered by the compiler: the same 1e-3 relative norm as the other float32 comparisons
    assert_rel_close(runs[True][0], runs[False][0], 1e-3, "losses")
    assert_rel_close(torch.cat([d.flatten() for d in runs[True][1]]),
                     torch.cat([d.flatten() for d in runs[False][1]]), 1e-3, "weight updates")


@pytest.mark.cuda
def test_cuda_fast_step_bf16_channels_last_is_as_accurate_as_the_plain_step():
    """On the GPU (var_mean statistics, channels_last, bf16 autocast): the per-view path loses no more
    than the plain bf16 path against the float32 truth (the criterion of the CPU test above)."""
    plain, fast = _pair("resnet18_cifar")
    plain, fast = (m.cuda().to(memory_format=torch.channels_last) for m in (plain, fast))
    xa, xb = (x.cuda() for x in _views(n=16))

    def run(model, stack, amp):
        terms = make_loss_fn(model, LossConfig(), stack=stack, amp=amp, channels_last=True)(xa, xb)
        model.zero_grad(set_to_none=True)
        terms.loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    truth = run(copy.deepcopy(plain), False, None)
    plain_gap = relative_gap(run(plain, False, torch.bfloat16), truth)
    assert relative_gap(run(fast, True, torch.bfloat16), truth) <= 1.5 * plain_gap + 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("scope", ["loss", "step"])
def test_cuda_compiled_step_under_cuda_graphs_matches_eager(scope):
    """train.compile=auto on CUDA (reduce-overhead: CUDA graphs) for the forward and loss (the default) and
    for the whole update (opt-in): five steps give the eager losses to bf16 precision, no fallback."""
    from vicreg.augment import TwoViews
    from vicreg.config import build_config

    losses = {}
    for compiled in ("auto", False):
        cfg = build_config("demo", {"model.expander": [64, 64], "train.compile": compiled,
                                    "train.compile_scope": scope})
        torch.manual_seed(0)
        model = build_model(cfg.model, 1, [0.5], [0.25]).cuda().train()
        step = Step(model, cfg, torch.device("cuda"), log=print)
        augment, g = TwoViews(cfg.augment, 16).cuda(), torch.Generator(device="cuda").manual_seed(0)
        images = torch.randint(0, 256, (32, 1, 16, 16), dtype=torch.uint8, device="cuda")
        losses[compiled] = torch.stack([step(images, augment, g).clone() for _ in range(5)])
        assert step.fallback is None and step.plan.compile == (compiled == "auto")
    # bf16 forward in both; the compiled graph rounds in other places: a few bf16 eps over five steps
    assert_rel_close(losses["auto"], losses[False], 8 * BFLOAT16_EPS, f"compiled ({scope}) vs eager losses")


