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
from vicreg.batchnorm import PerViewBatchNorm
from vicreg.config import LossConfig, ModelConfig
from vicreg.distributed import all_reduce_mean, gather_with_grad, rank, world_size
from vicreg.models import build_model
from vicreg.step import make_loss_fn

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


MODELS = {"small_cnn": ModelConfig(backbone="small_cnn", expander=[16, 16]),
          "timm_vit": ModelConfig(backbone="timm:vit_tiny_patch16_224", expander=[16, 16],
                                  backbone_args={"patch_size": 4, "depth": 1, "embed_dim": 24, "num_heads": 2})}


def _model(name: str = "small_cnn"):
    torch.manual_seed(0)
    return build_model(MODELS[name], 1, [0.5], [0.25], 8).double()


def _views(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.rand(n, 1, 8, 8, generator=g,
                                                                                  dtype=torch.float64)


def _train_step(model, xa, xb, gather=None, sync=False, views=2):
    PerViewBatchNorm.convert_per_view_batchnorm(model, views=views, sync=sync)
    loss_fn = make_loss_fn(model, LossConfig(), stack=True, gather=gather)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    terms = loss_fn(xa, xb)
    optimizer.zero_grad()
    terms.loss.backward()
    optimizer.step()
    return terms


def _step_worker(r: int, views: int, name: str = "small_cnn") -> dict:
    model = _model(name)
    PerViewBatchNorm.convert_per_view_batchnorm(model, views=views, sync=True)  # as the step does before DDP
    model = torch.nn.parallel.DistributedDataParallel(model)
    xa, xb = _views()
    half = slice(r * 4, (r + 1) * 4)
    _train_step(model, xa[half], xb[half], gather=gather_with_grad, sync=True, views=views)
    return {"state": {k: v.detach().clone() for k, v in model.module.state_dict().items()}}


@pytest.mark.parametrize("views, name", [(2, "small_cnn"), (1, "small_cnn"), (2, "timm_vit")],
                         ids=["per-view", "joint", "timm-vit"])
def test_one_ddp_step_with_synced_batch_norm_equals_one_process(tmp_path, views, name):
    # views=1: joint statistics of the stacked views (train.batchnorm=joint), synced by the same function,
    # which runs on gloo where torch's SyncBatchNorm needs a GPU; the ViT has batch norm in its expander only
    results = _spawn(_step_worker, tmp_path, views, name)
    model = _model(name)
    xa, xb = _views()
    _train_step(model, xa, xb, views=views)
    expected = model.state_dict()
    for res in results:
        assert set(res["state"]) == set(expected)
        for key, value in expected.items():  # weights after the update and the running statistics
            if value.is_floating_point():
                # floor 1e-3: the ViT's last layer-norm bias is 0 moved by a gradient that the expander's batch
                # norm cancels (exactly 0 in the maths, ~1e-16 of rounding in both paths); every other tensor here
                # has a norm above 1e-2, so the floor leaves every comparison that means something relative
                assert_rel_close(res["state"][key], value, FLOAT64_REL, what=key, floor=1e-3)
            else:
                assert torch.equal(res["state"][key], value), key


def _collectives_worker(r: int) -> dict:
    from vicreg.distributed import Dist, Vote, all_gather_stack, gather_rows

    uneven = torch.arange(8.0).reshape(4, 2)[:3] if r == 0 else torch.tensor([[10.0, 11.0]])  # 3 rows and 1
    some = torch.tensor([5, 6]) if r == 0 else None  # rank 1 has no rows (fewer batches than processes)
    vote = Vote(Dist(r, WORLD, r, "gloo", dist.new_group(backend="gloo")), 2)
    polls = [vote.poll([False, False]),  # nothing in flight yet
             vote.poll([r == 1, False]),  # rank 1 asks to stop: the result of the previous poll comes back
             vote.poll([r == 1, False])]  # one poll late, every process sees rank 1's request
    settled = vote.settle([r == 1, r == 0])  # waits: rank 0's failure counts at once
    return {"uneven": gather_rows(uneven), "some": gather_rows(some), "stack": all_gather_stack(torch.tensor([r, 7])),
            "polls": polls, "settled": settled, "closed": vote.close()}


def test_gather_rows_all_gather_stack_and_the_vote_with_two_processes(tmp_path):
    out = _spawn(_collectives_worker, tmp_path)
    assert torch.equal(out[0]["uneven"], torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [10.0, 11.0]]))
    assert torch.equal(out[0]["some"], torch.tensor([5, 6])) and out[0]["some"].dtype == torch.int64
    assert out[1]["uneven"] is None and out[1]["some"] is None  # rank 0 alone holds the rows
    for r in range(WORLD):
        assert torch.equal(out[r]["stack"], torch.tensor([[0, 7], [1, 7]]))
        assert out[r]["polls"] == [[False, False], [False, False], [True, False]]
        assert out[r]["settled"] == [True, True] and out[r]["closed"] == [False, False]


def test_the_vote_of_one_process_is_its_own_flags_at_once():
    from vicreg.distributed import Dist, Vote

    vote = Vote(Dist(), 2)
    assert vote.poll([True, False]) == [True, False] and vote.settle([False, True]) == [False, True]


@pytest.mark.parametrize("world", [1])
def test_helpers_are_no_ops_in_one_process(world):
    x = torch.arange(6.0).view(3, 2)
    assert gather_with_grad(x) is x and torch.equal(all_reduce_mean(x), x)
    assert world_size() == world and rank() == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_entry(r: int, port: int, run_dir: str, stop_at: int, resume: bool) -> None:
    """One rank of `vicreg train` as torchrun starts it: the group comes from the environment."""
    import signal

    from vicreg.distributed import shutdown
    from vicreg.training import train

    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(r), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)

    def stop(step: int) -> None:  # a Ctrl-C that reaches rank 1 only: every rank must stop after the same step
        if r == 1 and step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    try:
        train(_ddp_config(), run_dir=run_dir, resume=resume, on_step=stop if stop_at else None, echo=lambda m: None)
    finally:
        shutdown()


def _ddp_config():
    from vicreg.config import build_config

    return build_config("demo", {"train.epochs": 2, "train.batch_size": 64, "train.knn_every": 1,
                                 "train.log_every": 1, "train.progress": False, "model.expander": [64, 64]})


def _spawn_train(run_dir, stop_at: int = 0, resume: bool = False) -> None:
    mp.spawn(_train_entry, args=(_free_port(), str(run_dir), stop_at, resume), nprocs=WORLD, join=True)


@pytest.mark.slow
def test_a_two_process_run_stopped_and_resumed_equals_an_uninterrupted_one_and_its_knn_is_one_process(tmp_path):
    from vicreg.loaded_run import evaluate_run
    from vicreg.rundir import load_checkpoint, read_knn, read_metrics, read_summary

    _spawn_train(tmp_path / "full")
    _spawn_train(tmp_path / "part", stop_at=13)  # mid-epoch (21 steps an epoch), asked of rank 1 only
    # the request is agreed one step late (the vote never waits): every rank stops after step 14
    stopped = load_checkpoint(tmp_path / "part")
    assert stopped["step"] == 14 and len(stopped["rng"]["ranks"]) == 2
    _spawn_train(tmp_path / "part", resume=True)
    full, part = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    assert full["step"] == part["step"] == 42
    for key, value in full["model"].items():  # bit for bit
        assert torch.equal(value, part["model"][key]), key
    columns = ("step", "loss", "invariance", "variance", "covariance")
    assert all((read_metrics(tmp_path / "full")[c] == read_metrics(tmp_path / "part")[c]).all() for c in columns)
    assert len(read_metrics(tmp_path / "full")["step"]) == 42  # one row a step: rank 0 alone writes
    assert not (tmp_path / "full" / "run.lock").exists()
    # the k-NN the 2-process run logged is what one process evaluates on its checkpoint
    logged = read_summary(tmp_path / "full")["knn"]
    assert read_knn(tmp_path / "full")["knn@20"][-1] == pytest.approx(round(logged["20"], 2))
    report = evaluate_run(tmp_path / "full", device="cpu", ks=(20, 200), probe_epochs=1, raw_pixels=False,
                          log=lambda m: None)
    assert report["levels"]["representation"]["knn"] == {k: round(v, 2) for k, v in logged.items()}


def test_bad_world_sizes_are_one_line():
    from vicreg.config import ConfigError, build_config
    from vicreg.distributed import Dist
    from vicreg.training.setup import check_world

    cfg = build_config("demo", {"train.batch_size": 128})
    check_world(cfg, Dist(world=4))  # 32 each
    with pytest.raises(ConfigError, match=r"train.batch_size=128 is not valid with 3 processes: .*divide evenly"):
        check_world(cfg, Dist(world=3))
    with pytest.raises(ConfigError, match=r"each would get 1 images, and the variance needs at least 2"):
        check_world(cfg, Dist(world=128))


def test_a_run_directory_is_held_by_one_job(tmp_path):
    from vicreg.rundir import RunLock

    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire()
    with pytest.raises(ValueError, match=f"{tmp_path} is in use by another job \\(process {os.getpid()} on "):
        second.acquire()
    first.release()
    second.acquire()  # free again
    second.release()
    (tmp_path / "run.lock").write_text('{"host": "%s", "pid": 999999999}' % __import__("socket").gethostname())
    first.acquire()  # a lock whose process is gone is taken over
    assert first.held
    first.release()


RANK_SCRIPT = """
import os, sys, time
import torch
from vicreg.config import build_config
from vicreg.errors import JobStopped
from vicreg.training import train
torch.set_num_threads(1)
rank = int(os.environ["RANK"])
cfg = build_config("demo", {"train.epochs": 3, "train.batch_size": 64, "train.checkpoint_every": 1,
                            "train.progress": False, "model.expander": [64, 64]})
def die(step):
    if rank == 1 and step == 30:
        os._exit(3)  # rank 1 dies in epoch 2, after the checkpoint of epoch 1 (step 21)
start = time.time()
try:
    train(cfg, run_dir=sys.argv[1], on_step=die, echo=lambda m: None)
except JobStopped as e:
    print(f"{time.time() - start:.1f} {e}", flush=True)
    sys.exit(1)
"""


@pytest.mark.slow
def test_when_a_rank_dies_the_others_stop_with_the_resume_command_and_the_checkpoint_is_intact(tmp_path):
    import subprocess
    import sys

    from vicreg.rundir import load_checkpoint

    env = {**os.environ, "WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    run_dir = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(WORLD)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [1, 3]
    seconds, message = outputs[0].strip().split(" ", 1)
    assert float(seconds) < 120  # rank 0 did not hang on its dead peer
    assert message.startswith("rank 0: the job stopped (")
    assert f"the last checkpoint (step 21) is intact; resume with: torchrun --nproc-per-node 2 -m vicreg train " \
           f"--resume {run_dir}" in message
    assert load_checkpoint(run_dir)["step"] == 21 and not (run_dir / "run.lock").exists()


NAN_SCRIPT = """
import sys
import torch
import vicreg.step as T
torch.set_num_threads(1)
real_step, calls = T.Step.__call__, [0]
def nan_from_step_25(self, *args, **kwargs):  # the logged loss turns NaN at step 25 on every rank
    calls[0] += 1
    terms = real_step(self, *args, **kwargs)
    return terms * float("nan") if calls[0] >= 25 else terms
T.Step.__call__ = nan_from_step_25
from vicreg.cli import main
sys.exit(main(["train", "--preset", "demo", "--train.epochs", "3", "--train.batch_size", "64",
               "--train.checkpoint_every", "1", "--train.log_every", "1", "--train.progress", "false",
               "--model.expander", "[64, 64]", "--train.out_dir", sys.argv[1], "--train.name", "run"]))
"""


@pytest.mark.slow
def test_a_non_finite_loss_stops_every_rank_after_the_same_step_and_rank_0_alone_says_why(tmp_path):
    import subprocess
    import sys

    from vicreg.rundir import load_checkpoint, read_metrics

    env = {**os.environ, "WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen([sys.executable, "-c", NAN_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(WORLD)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 0]  # rank 1 exits 0: torchrun then waits for rank 0 to say why
    lines = [line for line in errors[0].splitlines() if line.startswith("vicreg:")]
    assert len(lines) == 1 and lines[0].startswith("vicreg: error: the loss became non-finite at step 25")
    assert "Traceback" not in errors[0] and "vicreg:" not in errors[1]  # rank 1 leaves the saying to rank 0
    run_dir = tmp_path / "run"
    assert load_checkpoint(run_dir)["step"] == 21  # epoch 1's checkpoint: intact, nothing NaN written over it
    assert read_metrics(run_dir)["step"].tolist() == list(range(1, 25))  # the rows before the NaN, once each
    assert not (run_dir / "run.lock").exists()
