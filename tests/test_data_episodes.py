"""vicreg.data.episodes: collected episodes as sequences (frame skip, grouped and scaled actions, splits, probes'
positions), and the Push-T world model from collection to roll-out errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vicreg.cli import main
from vicreg.config import ConfigError, DataConfig, build_config
from vicreg.data import load_dataset
from vicreg.data.episodes import episode_length, load_episode_sequences
from vicreg.envs import Episode, EpisodeFolder


def make_folder(root, env_id="some/Env-v0", episodes=4, steps=6, lengths=None, size=8):
    """A collection written by hand: frame t of episode i has the value 10 i + t, action t is (t, 2 t) in a box
    [0, 10] x [0, 20], state t is (i, t, 100 + t, 200 + t, 0.1 t)."""
    meta = {"env_id": env_id, "steps": steps, "policy": "random", "seed": 0, "frame_shape": [size, size, 3],
            "action_low": [0.0, 0.0], "action_high": [10.0, 20.0], "state_dim": 5}
    folder = EpisodeFolder.create(root, meta)
    for i in range(episodes):
        t = (lengths or {}).get(i, steps)
        frames = np.stack([np.full((size, size, 3), 10 * i + j, np.uint8) for j in range(t + 1)])
        actions = np.stack([[j, 2 * j] for j in range(t)]).astype(np.float32)
        states = np.stack([[i, j, 100 + j, 200 + j, 0.1 * j] for j in range(t + 1)]).astype(np.float64)
        folder.write(i, Episode(frames, actions, states))
    return folder


def test_frame_skip_keeps_every_kth_frame_and_joins_the_actions_between_scaled_to_the_box(tmp_path):
    make_folder(tmp_path / "c")
    cfg = DataConfig(dataset="episodes", data_dir=str(tmp_path / "c"), frame_skip=2, test_fraction=0.25)
    seq = load_episode_sequences(cfg, "train")
    assert seq.frames.shape == (3, 4, 3, 8, 8) and episode_length(cfg) == 4  # 6 steps // 2 + 1
    assert seq.frames[1, :, 0, 0, 0].tolist() == [10, 12, 14, 16]  # episode 1, frames 0 2 4 6
    # actions (t, 2t) in [0, 10] x [0, 20] -> (t / 5 - 1, t / 5 - 1); steps 0 and 1 become the first action
    want = torch.tensor([[-1.0, -1.0, -0.8, -0.8], [-0.6, -0.6, -0.4, -0.4], [-0.2, -0.2, 0.0, 0.0], [0.0] * 4])
    assert torch.allclose(seq.actions[0], want, atol=1e-6)  # float32 of exact decimals: within 1e-6
    assert seq.states.shape == (3, 4, 5) and seq.states[2, :, 1].tolist() == [0, 2, 4, 6]
    assert seq.positions is None  # an environment vicreg has no spec for: nothing to probe
    test = load_episode_sequences(cfg, "test")
    assert len(test) == 1 and test.frames[0, 0, 0, 0, 0] == 30  # the last episode


def test_frame_phases_start_sequences_at_every_offset_and_relative_actions_subtract_the_agent(tmp_path):
    make_folder(tmp_path / "c", env_id="gym_pusht/PushT-v0", steps=7)  # Push-T: the agent is state[0:2]
    cfg = DataConfig(dataset="episodes", data_dir=str(tmp_path / "c"), frame_skip=2, test_fraction=0.25,
                     frame_phases=True, relative_actions=True)
    seq = load_episode_sequences(cfg, "train")
    # (7 - 1) // 2 = 3 kept steps from frames 0 and 1 of each of the 3 training episodes: 6 sequences of 4 frames
    assert seq.frames.shape == (6, 4, 3, 8, 8) and episode_length(cfg) == 4
    assert seq.frames[2, :, 0, 0, 0].tolist() == [10, 12, 14, 16]  # episode 1 from frame 0
    assert seq.frames[3, :, 0, 0, 0].tolist() == [11, 13, 15, 17]  # ... and from frame 1
    assert seq.states[3, :, 1].tolist() == [1, 3, 5, 7]
    # action t, (t, 2t), taken where the agent is (i, t) = (1, t): (t - 1, t) / 64; steps 1 and 2 are one action
    torch.testing.assert_close(seq.actions[3, 0], torch.tensor([0.0, 1 / 64, 1 / 64, 2 / 64]))
    assert seq.actions[3, -1].abs().sum() == 0  # no action after the last frame
    test = load_episode_sequences(cfg, "test")
    assert test.frames.shape == (1, 4, 3, 8, 8)  # held-out episodes: from frame 0 only


def test_push_t_positions_are_the_pusher_and_the_block_and_short_episodes_are_left_out(tmp_path):
    make_folder(tmp_path / "c", env_id="gym_pusht/PushT-v0", episodes=5, lengths={1: 3})
    cfg = DataConfig(dataset="episodes", data_dir=str(tmp_path / "c"), image_size=4, test_fraction=0.2)
    lines = []
    seq = load_episode_sequences(cfg, "train", log=lines.append)
    assert len(seq) == 3 and lines == ["episodes: left out 1 train episode(s) that ended before 6 steps"]
    assert seq.frames.shape == (3, 7, 3, 4, 4) and seq.frames[1, 2, 0, 0, 0] == 22  # resized; episode 2
    assert seq.positions.shape == (3, 7, 2, 2)
    assert seq.positions[0, 3].tolist() == [[0.0, 3.0], [103.0, 203.0]]
    assert seq.velocities[0, 3].tolist() == [[0.0, 1.0], [1.0, 1.0]] and seq.velocities[0, -1].abs().sum() == 0


def test_episodes_as_an_image_dataset_and_their_config_errors(tmp_path):
    make_folder(tmp_path / "c")
    cfg = build_config("pusht", {"data.data_dir": str(tmp_path / "c"), "data.frame_skip": 1,
                                 "data.image_size": 8}).data
    with pytest.raises(ValueError, match="'some/Env-v0' has none: use data.relative_actions=false"):
        load_dataset(cfg, log=lambda _: None)  # the preset's actions are relative to Push-T's pusher
    cfg.relative_actions = False
    ds = load_dataset(cfg, log=lambda _: None)
    assert ds.train.images.shape == (3, 7 * 3, 8, 8)  # clips of 7 frames for temporal views
    assert len(ds.test) == 7 and (ds.test.labels == -1).all()
    with pytest.raises(ConfigError, match="dataset 'episodes' needs --data.data_dir"):
        build_config("pusht", {"data.data_dir": None})
    with pytest.raises(ConfigError, match="data.frame_skip=0 is not valid: must be >= 1"):
        build_config("pusht", {"data.data_dir": "x", "data.frame_skip": 0})
    with pytest.raises(ValueError, match="data.frame_skip=9 is larger than the episodes' 6 steps"):
        load_episode_sequences(DataConfig(dataset="episodes", data_dir=str(tmp_path / "c"), frame_skip=9), "train")


@pytest.mark.slow
def test_push_t_world_model_from_collection_to_rollout_errors(tmp_path, capsys):
    folder, runs = tmp_path / "pusht", tmp_path / "runs"
    assert main(["collect", "gym_pusht/PushT-v0", "--episodes", "12", "--steps", "30", "--out", str(folder)]) == 0
    assert main(["train", "--preset", "pusht", "--data.data_dir", str(folder), "--data.image_size", "24",
                 "--train.epochs", "2", "--train.batch_size", "4", "--train.out_dir", str(runs),
                 "--train.progress", "false", "--train.device", "cpu"]) == 0
    assert "no k-NN accuracy: the dataset has no class labels" in capsys.readouterr().out
    run = next(runs.iterdir())
    assert main(["train-predictor", str(run), "--predictor.epochs", "2", "--predictor.batch_size", "4",
                 "--device", "cpu"]) == 0
    assert "actions=10" in capsys.readouterr().out  # 5 skipped steps x 2-D pusher targets
    assert main(["eval-predictor", str(run), "--horizons", "1", "2", "--probe-frames", "20", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "predictor" in out and "position" in out and (run / "predictor" / "eval.json").exists()
    assert main(["plan", str(run), "--plan.episodes", "6", "--plan.goal_steps", "10", "--plan.samples", "8",
                 "--plan.elites", "2", "--plan.iterations", "1", "--plan.oracle_samples", "4", "--plan.workers", "1",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "planning in gym_pusht/PushT-v0: 6 tasks, goal 10 steps ahead" in out
    report = json.loads((run / "plan" / "plan.json").read_text())
    assert list(report["results"]) == ["world model", "pixels", "states", "oracle", "random", "replay"]
    assert {Path(p).name for p in report["figures"]} == {"tasks.png", "tasks.svg", "imagined.png", "imagined.svg"}
    assert all(Path(p).stat().st_size > 0 for p in report["figures"])
    # replaying the episode's own actions from its recorded state gets there: the protocol holds (pymunk is
    # deterministic; a reset cannot restore the pusher's velocity, so not to the pixel)
    assert report["results"]["replay"]["success_rate"] == 1.0
    assert main(["plan", str(run), "--plan.goal_steps", "7", "--device", "cpu"]) == 1
    assert "plan.goal_steps=7 is not a multiple of the run's data.frame_skip=5" in capsys.readouterr().err


def test_success_is_the_object_within_the_distance_and_angle_of_its_goal_pose():
    from vicreg.envs.specs import spec_of
    from vicreg.worldmodel.env_tasks import score_states

    goals = np.array([[0.0, 0.0, 100.0, 100.0, 0.1]] * 4)
    states = np.array([[3.0, 4.0, 112.0, 116.0, 0.1],  # 20 px away: not within 20
                       [0.0, 0.0, 112.0, 115.0, 0.1 + np.pi / 10],  # 19.2 px, 18 degrees: success
                       [0.0, 0.0, 100.0, 100.0, 0.1 + np.pi / 8],  # 22.5 degrees: too turned
                       [0.0, 0.0, 100.0, 100.0, 0.1 + 2 * np.pi - 0.01]])  # a full turn less 0.01 rad: success
    scores = score_states(states, goals, spec_of("gym_pusht/PushT-v0"))
    assert scores["success"].tolist() == [False, True, False, True]
    assert np.allclose(scores["object_distance"], [20.0, np.hypot(12, 15), 0.0, 0.0])
    assert np.allclose(scores["agent_distance"], [5.0, 0.0, 0.0, 0.0]) and np.isclose(scores["object_angle"][3], 0.01)
