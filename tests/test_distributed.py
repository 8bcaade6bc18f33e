"""Two real processes (gloo, CPU): the loss on gathered embeddings equals the single-process loss."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vicreg import vicreg_loss
from vicreg.distributed import gather_with_grad, rank, world_size


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)


def _worker(r: int, n: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=n)
    try:
        x, y = _batch()
        half = slice(r * 4, (r + 1) * 4)
        xa, xb = x[half].clone().requires_grad_(), y[half].clone().requires_grad_()
        terms = vicreg_loss(xa, xb, gather=gather_with_grad)
        terms.loss.backward()
        # DDP averages gradients over processes; here the inputs' gradients, divided the same way
        torch.save({"rank": rank(), "world": world_size(), "terms": torch.stack(tuple(terms)).detach(),
                    "grad_a": xa.grad / n, "grad_b": xb.grad / n}, os.path.join(out_dir, f"{r}.pt"))
        dist.barrier()  # no process tears gloo down while another still talks to it
    finally:
        dist.destroy_process_group()


def test_two_process_loss_and_gradients_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    x, y = _batch()
    x.requires_grad_(), y.requires_grad_()
    full = vicreg_loss(x, y)
    full.loss.backward()
    results = [torch.load(tmp_path / f"{r}.pt") for r in (0, 1)]
    assert [res["world"] for res in results] == [2, 2] and [res["rank"] for res in results] == [0, 1]
    for r, res in enumerate(results):
        # variance and covariance see the global batch: equal to one process's values
        torch.testing.assert_close(res["terms"][2], full.variance.detach())
        torch.testing.assert_close(res["terms"][3], full.covariance.detach())
        half = slice(r * 4, (r + 1) * 4)
        torch.testing.assert_close(res["grad_a"], x.grad[half])
        torch.testing.assert_close(res["grad_b"], y.grad[half])
    # the invariance term is local; its mean over processes is the global one
    torch.testing.assert_close((results[0]["terms"][1] + results[1]["terms"][1]) / 2, full.invariance.detach())
