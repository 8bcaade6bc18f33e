"""Job control of a training run: the divergence policy, the resume command and the messages of a stopped job."""

from pathlib import Path

import pytest
import torch

from vicreg.distributed import Dist
from vicreg.errors import JobStopped
from vicreg.rundir import MetricsWriter, read_metrics
from vicreg.training.control import DivergenceGuard, lost_peer, resume_command, saved_message, stopped_message


def _writer(run_dir: Path, keep_until_step: int = 0, factor: float = 5.0) -> tuple[MetricsWriter, DivergenceGuard]:
    guard = DivergenceGuard(factor)
    writer = MetricsWriter(run_dir, keep_until_step=keep_until_step, tensorboard=False, check=guard)
    guard.seen(read_metrics(run_dir))
    return writer, guard


def test_a_non_finite_loss_stops_with_the_step_named(tmp_path):
    writer, _ = _writer(tmp_path)
    writer.add(7, 1, 0.1, torch.tensor([float("nan"), 1.0, 2.0, 3.0]))
    with pytest.raises(FloatingPointError, match="non-finite at step 7"):
        writer.flush(images_per_s=1.0)


def test_a_loss_blow_up_is_caught_before_it_is_written(tmp_path):
    writer, _ = _writer(tmp_path)
    for step, loss in enumerate([34.0, 30.0, 40.0, 149.0], start=1):  # 149 < 5 x 30
        writer.add(step, 1, 0.1, torch.tensor([loss, 1.0, 1.0, 1.0]))
    writer.flush(images_per_s=1.0)
    writer.add(5, 1, 0.1, torch.tensor([331.0, 1.0, 1.0, 1.0]))
    with pytest.raises(FloatingPointError, match=r"the loss blew up at step 5: 331, over train.divergence_factor=5 "
                                                 r"x the lowest so far \(30 at step 2\)"):
        writer.flush(images_per_s=1.0)
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2, 3, 4]
    _, again = _writer(tmp_path, keep_until_step=4)
    assert again.lowest == (30.0, 2) and again.first == 34.0  # a resumed run keeps its bases


def test_a_loss_falling_towards_zero_and_wobbling_is_no_blow_up(tmp_path):
    """The invariance-only experiment's loss goes to ~1e-3; 6x its lowest is still far below where it started."""
    writer, _ = _writer(tmp_path)
    for step, loss in enumerate([1.0, 0.01, 0.001, 0.006, 0.9], start=1):
        writer.add(step, 1, 0.1, torch.tensor([loss, 1.0, 1.0, 1.0]))
    writer.flush(images_per_s=1.0)
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2, 3, 4, 5]


def test_factor_0_turns_the_blow_up_check_off_but_not_the_non_finite_one():
    guard = DivergenceGuard(0.0)
    for step, loss in enumerate([1.0, 0.5, 1e9], start=1):
        guard(step, [loss, 1.0, 1.0, 1.0])
    with pytest.raises(FloatingPointError, match="non-finite at step 4"):
        guard(4, [float("inf"), 1.0, 1.0, 1.0])


def test_the_messages_of_a_stopped_job_name_its_checkpoint_and_the_command(tmp_path):
    assert resume_command(1, tmp_path) == f"vicreg train --resume {tmp_path}"
    assert resume_command(4, tmp_path) == f"torchrun --nproc-per-node 4 -m vicreg train --resume {tmp_path}"
    assert saved_message(tmp_path, 1) == (f"No checkpoint was written yet (vicreg train --resume {tmp_path} starts "
                                          f"the run again from step 0)")
    torch.save({"step": 42}, tmp_path / "checkpoint.pt")  # all that the messages read of a checkpoint
    assert saved_message(tmp_path, 2) == (f"The last checkpoint (step 42), saved before it, is intact: resume with "
                                          f"torchrun --nproc-per-node 2 -m vicreg train --resume {tmp_path}")
    message = stopped_message(RuntimeError("gloo: connection closed by peer\nmore"), Dist(rank=1, world=2), tmp_path)
    assert message == (f"rank 1: the job stopped (RuntimeError: gloo: connection closed by peer); another process "
                       f"probably died, see its log. In {tmp_path} the last checkpoint (step 42) is intact; resume "
                       f"with: torchrun --nproc-per-node 2 -m vicreg train --resume {tmp_path}")


def test_a_lost_peer_is_told_from_other_errors():
    assert lost_peer(RuntimeError("[gloo] Connection reset by peer")) and lost_peer(JobStopped("SIGTERM"))
    assert lost_peer(RuntimeError("NCCL watchdog timed out"))
    assert not lost_peer(RuntimeError("CUDA out of memory")) and not lost_peer(ValueError("bad value"))
