"""Two real processes (gloo, CPU, spawned here) against one process on their concatenated batch, in float64.

DDP averages the gradients over processes; the variance and covariance terms see the all-gathered
projections; batch norm (per view) sees the global batch. Together they make N processes x batch B the
same maths as one process x batch N*B: checked to float64 precision."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vicreg import vicreg_loss
from vicreg.config import LossConfig, ModelConfig
from vicreg.distributed import all_reduce_mean, gather_with_grad, rank, world_size
from vicreg.models import build_model
from vicreg.step import make_loss_fn, per_view_batchnorm

from numerics import FLOAT64_REL, assert_rel_close

WORLD = 2


def _spawn(fn, tmp_path, *args):
    """Run fn(rank, out_dir, *args) in WORLD processes joined by a gloo group (a file rendezvous)."""
    mp.spawn(_entry, args=(fn, str(tmp_path / "rendezvous"), str(tmp_path), args), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"{r}.pt") for r in range(WORLD)]


def _entry(r: int, fn, init_file: str, out_dir: str, args) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=WORLD)
    try:
        torch.save(fn(r, *args), os.path.join(out_dir, f"{r}.pt"))
        dist.barrier()  # no process tears gloo down while another still talks to it
    finally:
        dist.destroy_process_group()


def _projections(n: int = 8, d: int = 5):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def _loss_worker(r: int) -> dict:
    za, zb = _projections()
    half = slice(r * 4, (r + 1) * 4)
    xa, xb = za[half].clone().requires_grad_(), zb[half].clone().requires_grad_()
    terms = vicreg_loss(xa, xb, gather=gather_with_grad)
    terms.loss.backward()
    return {"rank": rank(), "world": world_size(), "terms": torch.stack(tuple(terms)).detach(),
            "logged": all_reduce_mean(torch.stack(tuple(terms)).detach()),
            # what DDP applies: the gradient averaged over processes
            "grad_a": xa.grad / WORLD, "grad_b": xb.grad / WORLD}


def test_loss_and_gradients_of_the_projections_equal_one_process_on_the_global_batch(tmp_path):
    results = _spawn(_loss_worker, tmp_path)
    za, zb = _projections()
    za.requires_grad_(), zb.requires_grad_()
    full = vicreg_loss(za, zb)
    full.loss.backward()
    assert [res["world"] for res in results] == [2, 2] and [res["rank"] for res in results] == [0, 1]
    for r, res in enumerate(results):
        # variance and covariance see the global batch: one process's values, on every process
        assert_rel_close(res["terms"][2:], torch.stack([full.variance, full.covariance]).detach(), FLOAT64_REL)
        half = slice(r * 4, (r + 1) * 4)
        assert_rel_close(res["grad_a"], za.grad[half], FLOAT64_REL)
        assert_rel_close(res["grad_b"], zb.grad[half], FLOAT64_REL)
        # the logged terms (averaged over processes): the global loss and its terms
        assert_rel_close(res["logged"], torch.stack(tuple(full)).detach(), FLOAT64_REL)


def _model():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="small_cnn", expander=[16, 16])
    return build_model(cfg, 1, [0.5], [0.25]).double()


def _views(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.rand(n, 1, 8, 8, generator=g,
                                                                                  dtype=torch.float64)


def _train_step(model, xa, xb, gather=None, sync=False):
    per_view_batchnorm(model, views=2, sync=sync)
    loss_fn = make_loss_fn(model, LossConfig(), stack=True, gather=gather)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    terms = loss_fn(xa, xb)
    optimizer.zero_grad()
    terms.loss.backward()
    optimizer.step()
    return terms


def _step_worker(r: int) -> dict:
    model = torch.nn.parallel.DistributedDataParallel(_model())
    xa, xb = _views()
    half = slice(r * 4, (r + 1) * 4)
    _train_step(model, xa[half], xb[half], gather=gather_with_grad, sync=True)
    return {"state": {k: v.detach().clone() for k, v in model.module.state_dict().items()}}


def test_one_ddp_step_with_synced_per_view_batch_norm_equals_one_process(tmp_path):
    results = _spawn(_step_worker, tmp_path)
    model = _model()
    xa, xb = _views()
    _train_step(model, xa, xb)
    expected = model.state_dict()
    for res in results:
        assert set(res["state"]) == set(expected)
        for key, value in expected.items():  # weights after the update and the running statistics
            if value.is_floating_point():
                assert_rel_close(res["state"][key], value, FLOAT64_REL, what=key)
            else:
                assert torch.equal(res["state"][key], value), key


@pytest.mark.parametrize("world", [1])
def test_helpers_are_no_ops_in_one_process(world):
    x = torch.arange(6.0).view(3, 2)
    assert gather_with_grad(x) is x and torch.equal(all_reduce_mean(x), x)
    assert world_size() == world and rank() == 0
