"""vicreg.envs: Gymnasium environments (Push-T and our sprites), exploration, the episode folder and collect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vicreg.cli import main
from vicreg.envs import Episode, EpisodeFolder, collect, open_env
from vicreg.envs.collect import collect_episode
from vicreg.envs.episodes import COLLECTION

PUSHT = "gym_pusht/PushT-v0"
SPRITES = "vicreg/Sprites-v0"
QUIET = dict(log=lambda _: None)


def same(a: Episode, b: Episode) -> bool:
    return all(np.array_equal(x, y) for x, y in ((a.frames, b.frames), (a.actions, b.actions), (a.states, b.states)))


@pytest.mark.parametrize("env_id,error", [
    ("Nope-v0", "vicreg: error: unknown environment id 'Nope-v0' (gymnasium: "),
    ("CartPole-v1", "vicreg: error: environment 'CartPole-v1' has Discrete(2) actions: the world model plans "
                    "continuous actions"),
    ("Pendulum-v1", "vicreg: error: environment 'Pendulum-v1' has no image observation"),
])
def test_environments_the_world_model_cannot_use_are_refused_in_one_line(tmp_path, capsys, env_id, error):
    assert main(["collect", env_id, "--episodes", "1", "--steps", "2", "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(error) and err.count("\n") == 1
    assert not (tmp_path / "c").exists()  # nothing written


def test_an_unversioned_id_says_its_error_alone_without_gymnasiums_warning(tmp_path, capsys):
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # printed on stderr outside pytest, in colours
        warnings.simplefilter("always")
        assert main(["collect", "gym_pusht/PushT", "--episodes", "1", "--steps", "1", "--out", str(tmp_path)]) == 1
    assert [str(w.message) for w in caught if "versioned environment" in str(w.message)] == []
    assert capsys.readouterr().err.startswith("vicreg: error: environment 'gym_pusht/PushT' has no image observation")


def test_push_t_gives_frames_and_its_state_and_resets_to_a_given_state_velocities_included():
    env = open_env(PUSHT)
    try:
        frame, state = env.reset(seed=3)
        assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8 and state.shape == (10,)
        assert env.action_low.tolist() == [0, 0] and env.action_high.tolist() == [512, 512]
        target = np.array([100.0, 120.0, 300.0, 310.0, 0.5, 0, 0, 0, 0, 0])
        frame2, state2 = env.reset(seed=3, state=target)
        # the pose read back is the one given (gym-pusht turns the block about its centre of gravity after placing
        # it: vicreg.envs.specs.pusht_reset_state undoes that); float64 sines and one 0.01 s physics step from
        # rest: equal to 1e-9 of 512 pixels
        assert np.allclose(state2, target, rtol=0, atol=1e-9) and not np.array_equal(frame, frame2)
        for action in ([200.0, 200.0], [250.0, 300.0], [300.0, 320.0], [330.0, 330.0]):
            frame3, state3, done = env.step(np.array(action))
        assert np.abs(state3[5:]).max() > 1  # moving: the pusher (and maybe the block) has a velocity
        after = [env.step(np.array([360.0, 300.0]))[1] for _ in range(3)]
        frame4, state4 = env.reset(state=state3)  # a state read back from an episode puts it there again ...
        assert np.allclose(state4, state3, rtol=0, atol=1e-9) and np.array_equal(frame4, frame3) and not done
        again = [env.step(np.array([360.0, 300.0]))[1] for _ in range(3)]
        # ... moving as it was: the same steps follow to within pymunk's contact caches (not in a state)
        assert np.allclose(np.stack(again)[:, :5], np.stack(after)[:, :5], rtol=0, atol=1e-6)
    finally:
        env.close()


def test_an_episode_is_drawn_from_the_seed_and_its_index_alone():
    env = open_env(PUSHT, max_steps=12)
    try:
        a = collect_episode(env, 12, "waypoints", seed=5, index=2)
        b = collect_episode(env, 12, "random", seed=5, index=3)
        again = collect_episode(env, 12, "waypoints", seed=5, index=2)  # after another episode on the same env
    finally:
        env.close()
    assert same(a, again) and len(a) == 12 and a.frames.shape == (13, 96, 96, 3) and a.states.shape == (13, 10)
    assert not np.array_equal(a.actions, b.actions)
    assert (a.actions >= 0).all() and (a.actions <= 512).all()


def test_sprites_env_steps_the_training_datas_physics():
    from vicreg.data.sprites import push_and_move

    env = open_env(SPRITES, max_steps=10)
    try:
        ep = collect_episode(env, 10, "random", seed=0, index=0)
        cfg = env.env.unwrapped.cfg
    finally:
        env.close()
    assert ep.frames.shape == (11, cfg.canvas, cfg.canvas, 3) and ep.states.shape == (11, 4)
    limit = float(cfg.canvas - cfg.sprite_size)
    for t in range(10):
        p, v = (torch.tensor(ep.states[t, i:i + 2], dtype=torch.float32).view(1, 1, 2) for i in (0, 2))
        p, v = push_and_move(p, v, torch.tensor(ep.actions[t]).view(1, 2), limit, cfg.max_speed)
        assert np.array_equal(np.concatenate([p.view(2).numpy(), v.view(2).numpy()]).astype(np.float64),
                              ep.states[t + 1])
    assert (np.abs(ep.actions) <= cfg.push).all()
    x, y = np.round(ep.states[4, :2]).astype(int)  # the digit is drawn at its rounded position
    assert ep.frames[4, y:y + cfg.sprite_size, x:x + cfg.sprite_size].max() > 0


def test_collect_resumes_extends_and_gives_each_episode_whoever_collects_it(tmp_path):
    one = collect(PUSHT, tmp_path / "one", episodes=3, steps=8, workers=1, **QUIET)
    assert (one.written, one.skipped) == (3, 0)
    folder = EpisodeFolder(tmp_path / "one")
    assert folder.indices() == [0, 1, 2] and folder.meta["policy"] == "waypoints"
    first = [folder.read(i) for i in range(3)]
    folder.path(1).unlink()  # as if interrupted before episode 1 was written
    again = collect(PUSHT, tmp_path / "one", episodes=5, steps=8, workers=2, **QUIET)  # resume and extend
    assert (again.written, again.skipped) == (3, 2) and folder.indices() == [0, 1, 2, 3, 4]
    assert all(same(first[i], folder.read(i)) for i in range(3))
    other = collect(PUSHT, tmp_path / "two", episodes=5, steps=8, workers=2, **QUIET)
    assert all(same(folder.read(i), EpisodeFolder(other.folder).read(i)) for i in range(5))
    stats = json.loads((tmp_path / "one" / "stats.json").read_text())
    assert stats["episodes"] == 5 and stats["steps"] == 40 and 0 <= stats["object_moved_share"] <= 1


def test_a_folder_of_other_settings_is_refused_and_left_as_it_was(tmp_path, capsys):
    collect(PUSHT, tmp_path / "c", episodes=1, steps=4, **QUIET)
    before = sorted(p.name for p in (tmp_path / "c").rglob("*"))
    for argv, what in ((["--steps", "5"], "steps=4, not 5"), (["--seed", "1", "--steps", "4"], "seed=0, not 1"),
                       (["--steps", "4", "--policy", "random"], "policy='waypoints', not 'random'")):
        assert main(["collect", PUSHT, "--episodes", "2", "--out", str(tmp_path / "c"), *argv]) == 1
        err = capsys.readouterr().err
        assert what in err and err.count("\n") == 1
    assert main(["collect", SPRITES, "--episodes", "2", "--steps", "4", "--out", str(tmp_path / "c")]) == 1
    assert "env_id='gym_pusht/PushT-v0', not 'vicreg/Sprites-v0'" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["collect", PUSHT, "--episodes", "1", "--steps", "4", "--out", str(tmp_path / "busy")]) == 1
    assert "is not empty and holds no collection.json" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "c").rglob("*")) == before


def test_truncated_foreign_and_inconsistent_episode_files_are_named_in_one_line(tmp_path):
    collect(PUSHT, tmp_path / "c", episodes=1, steps=4, **QUIET)
    folder = EpisodeFolder(tmp_path / "c")
    path = folder.path(0)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=f"corrupt episode file {path}: "):
        folder.read(0)
    np.savez(path, frames=np.zeros((5, 96, 96, 3), np.uint8), actions=np.zeros((4, 2), np.float64),
             states=np.zeros((5, 10)))
    with pytest.raises(ValueError, match=r"actions must be float32 \(T, 2\)"):
        folder.read(0)
    np.savez(path, frames=np.zeros((5, 64, 64, 3), np.uint8), actions=np.zeros((4, 2), np.float32),
             states=np.zeros((5, 10)))
    with pytest.raises(ValueError, match=r"frames must be uint8 \(5, 96, 96, 3\)"):
        folder.read(0)
    np.savez(path, frames=np.zeros((5, 96, 96, 3), np.uint8), actions=np.full((4, 2), np.nan, np.float32),
             states=np.zeros((5, 10)))
    with pytest.raises(ValueError, match="non-finite actions or states"):
        folder.read(0)
    (tmp_path / "c" / COLLECTION).write_text("{not json")
    with pytest.raises(ValueError, match=f"corrupt {tmp_path / 'c' / COLLECTION}"):
        EpisodeFolder(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="is not a collection of episodes"):
        EpisodeFolder(tmp_path)


def test_the_moved_share_counts_steps_in_which_the_object_pose_changed(tmp_path):
    meta = {"env_id": "x", "steps": 4, "policy": "random", "seed": 0, "frame_shape": [2, 2, 3],
            "action_low": [0.0, 0.0], "action_high": [1.0, 1.0], "state_dim": 5}
    folder = EpisodeFolder.create(tmp_path / "f", meta)
    states = np.zeros((5, 5))
    states[1:, 2] = 1.0  # the object moves in step 0 -> 1 ...
    states[4, 4] = 0.5  # ... and turns in step 3 -> 4; the agent moving (entry 0) does not count
    states[2:, 0] = 7.0
    folder.write(0, Episode(np.zeros((5, 2, 2, 3), np.uint8), np.zeros((4, 2), np.float32), states))
    assert folder.stats(object_dims=(2, 3, 4), tolerance=1e-2) == {"episodes": 1, "steps": 4,
                                                                    "object_moved_share": 0.5}


def test_waypoints_move_the_block_more_often_than_random_targets(tmp_path):
    shares = {}
    for policy in ("random", "waypoints"):
        result = collect(PUSHT, tmp_path / policy, episodes=4, steps=40, policy=policy, **QUIET)
        shares[policy] = result.stats["object_moved_share"]
    assert shares["waypoints"] > shares["random"] + 0.05, shares


FAULTY = '''
import gymnasium
import numpy as np


class Broken(gymnasium.Env):
    """Frames and a Box action, and a step that fails on the third call."""
    observation_space = gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((8, 8, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        if self.t == 3:
            raise RuntimeError("the simulator broke\\nsecond line")
        return np.zeros((8, 8, 3), np.uint8), 0.0, False, False, {}


gymnasium.register("faultyenv/Broken-v0", entry_point=Broken)
'''


def test_a_failing_worker_stops_the_collection_in_one_line_and_leaves_no_half_written_file(tmp_path, monkeypatch):
    (tmp_path / "faultyenv.py").write_text(FAULTY)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get the parent's sys.path
    with pytest.raises(ValueError) as e:
        collect("faultyenv/Broken-v0", tmp_path / "c", episodes=4, steps=5, workers=2, **QUIET)
    assert str(e.value) == ("collection stopped: RuntimeError: the simulator broke; 0 episodes of this call were "
                            "written: run the same command again to resume")
    assert list((tmp_path / "c" / "episodes").iterdir()) == []  # no episode, and no temporary file left
