"""Planning with the world model: the simulator episodes, the three planners on costs worked out by hand, the
costs and controllers, closed-loop control with the oracle, and ``vicreg plan`` end to end on a tiny run."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from torch import nn

from vicreg.cli import main
from vicreg.config import ConfigError, PlanConfig, PredictorConfig, VideoConfig, build_config, plan_config
from vicreg.data.sprites import generate_sprites
from vicreg.training import train
from vicreg.worldmodel import load_predictor, train_predictor
from vicreg.worldmodel.action_search import PLANNERS, plan
from vicreg.worldmodel.closed_loop import (
    OracleController,
    RandomController,
    open_loop_path,
    rollout_cost,
    run_episodes,
    simulator_cost,
)
from vicreg.worldmodel.env import SpriteEnv
from vicreg.worldmodel.pixel_baseline import pixel_embedding
from vicreg.worldmodel.plan_command import format_plan_table, plan_run

VIDEO = VideoConfig(sequences=4, test_sequences=4, length=12, canvas=32, sprite_size=12, distractors=3,
                    controlled=True, push_p=0.5)


def QUIET(_msg: str) -> None:
    """A log that prints nothing."""


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


def test_env_replays_the_training_data_push_for_push():
    # seed 2s + 1 draws the digits, positions and velocities of the test split of video.seed = s, in its order
    video = replace(VIDEO, distractors=0, seed=3)
    seq = generate_sprites(video, "test")
    env = SpriteEnv(video, episodes=video.test_sequences, seed=2 * video.seed + 1)
    assert torch.equal(env.sprites, seq.sprite_images) and torch.equal(env.p, seq.positions[:, 0])
    assert seq.actions[:, :-1].abs().sum(-1).gt(0).any()  # the data holds real pushes to replay
    for t in range(VIDEO.length):
        assert torch.equal(env.p, seq.positions[:, t])  # the same float32 operations in the same order
        assert torch.equal(env.observe(), seq.frames[:, t])
        env.step(seq.actions[:, t])


def test_env_episodes_are_seeded_and_goal_frames_show_the_sprite_at_its_goal():
    a, b, c = SpriteEnv(VIDEO, 5, seed=3), SpriteEnv(VIDEO, 5, seed=3), SpriteEnv(VIDEO, 5, seed=4)
    assert torch.equal(a.p, b.p) and torch.equal(a.goal, b.goal) and torch.equal(a.observe(), b.observe())
    assert not torch.equal(a.goal, c.goal)
    quiet = SpriteEnv(VIDEO, 5, seed=3, distractors=0)
    goal = quiet.goal_frames()
    corner = quiet.goal.round().long()
    for i in range(5):  # the sprite pasted at the goal's rounded corner, nothing else on the canvas
        x, y = corner[i].tolist()
        assert torch.equal(goal[i, :, y:y + 12, x:x + 12], quiet.sprites[i, 0])
        assert int(goal[i].sum()) == int(quiet.sprites[i, 0].sum())
    assert SpriteEnv(VIDEO, 5, seed=3).observe().eq(255).sum() > 0  # leaves on: white squares


def test_env_refuses_a_video_without_pushes():
    with pytest.raises(ValueError, match="controlled sprite"):
        SpriteEnv(replace(VIDEO, controlled=False), 2)


# --------------------------------------------------------------------------------------------
# Planners on a cost worked out by hand
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planners_find_the_minimum_of_a_quadratic_and_stay_in_the_box(name):
    # cost = squared distance of every push to a target; the target's last episode lies outside the box
    target = torch.tensor([[0.5, -0.3], [0.0, 0.8], [2.0, -2.0]])[:, None].expand(3, 4, 2)

    def cost(actions):
        return (actions - target[:, None]).pow(2).sum((2, 3))

    cfg = PlanConfig(planner=name, horizon=4, samples=200, iterations=6, elites=20, gd_lr=0.1)
    got = plan(cost, torch.zeros(3, 4, 2), 1.0, cfg, torch.Generator().manual_seed(0))
    assert got.shape == (3, 4, 2) and got.abs().max() <= 1.0
    assert torch.allclose(got[:2], target[:2], atol=0.15)  # inside the box: the target itself
    assert torch.allclose(got[2], torch.tensor([1.0, -1.0]).expand(4, 2), atol=0.15)  # outside: the nearest corner


def test_planners_are_deterministic_in_their_generator():
    def cost(actions):
        return actions.sum((2, 3))

    cfg = PlanConfig(horizon=3, samples=16, iterations=2, elites=4)
    first = plan(cost, torch.zeros(2, 3, 2), 1.0, cfg, torch.Generator().manual_seed(5))
    again = plan(cost, torch.zeros(2, 3, 2), 1.0, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)


# --------------------------------------------------------------------------------------------
# Costs and controllers
# --------------------------------------------------------------------------------------------


class Adder(nn.Module):
    """A toy predictor: next embedding = last embedding + the last frame's push (E = A = 2)."""

    context, action_dim, dim, width = 2, 2, 2, 1

    def forward(self, context, actions):
        return context[:, -1] + actions[:, -1]


def test_rollout_cost_rolls_every_candidate_out_and_averages_the_distance_to_the_goal():
    context = torch.tensor([[[9.0, 9.0], [1.0, 2.0]]])  # (N=1, k=2, E=2); only the last frame matters here
    past = torch.tensor([[[0.5, 0.5]]])  # (1, k-1, A)
    goal = torch.tensor([[2.0, 2.0]])
    actions = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # (N=1, S=2, H=2, A=2)
    cost = rollout_cost(Adder(), context, past, goal)(actions)
    # candidate 0: (2, 2) then (2, 3): distances^2 / E = 0 and 0.5, mean 0.25
    # candidate 1: (1, 2) twice: 0.5 each, mean 0.5
    assert torch.allclose(cost, torch.tensor([[0.25, 0.5]]))


class Weighted(nn.Module):
    """A toy predictor that reads every push of its context: next = last + sum_i w_i a_i (k = 3, E = A = 2)."""

    context, action_dim, dim, width = 3, 2, 2, 1

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([100.0, 10.0, 1.0]))

    def forward(self, context, actions):
        return context[:, -1] + (self.w[:, None] * actions).sum(1)


def test_the_model_controller_feeds_the_observed_pushes_before_the_candidates():
    from vicreg.worldmodel.closed_loop import ModelController
    from vicreg.worldmodel.predictor import EmbeddingNorm

    model = Weighted()
    norm = EmbeddingNorm(torch.zeros(2), torch.ones(2))
    ctrl = ModelController(lambda f: f.float().flatten(1), model, norm, PlanConfig(horizon=2), 1.0,
                           torch.device("cpu"))
    frame = torch.tensor([[[[0, 0]]]], dtype=torch.uint8)  # (N=1, C=1, 1, 2): the "embedding" is the pixels
    ctrl.start(None, torch.tensor([[[[5, 5]]]], dtype=torch.uint8))
    ctrl.observe(torch.tensor([[[[9, 9]]]], dtype=torch.uint8), None)  # falls out of the 3-frame context
    ctrl.observe(frame, torch.tensor([[0.9, 0.9]]))  # falls out: only the 2 pushes between the last 3 frames stay
    ctrl.observe(frame, torch.tensor([[0.01, 0.0]]))
    ctrl.observe(frame, torch.tensor([[0.02, 0.0]]))
    candidate = torch.tensor([[[[0.03, 0.0], [0.04, 0.0]]]])  # (N=1, S=1, H=2, A=2)
    # step 1: pushes (0.01, 0.02, 0.03) -> x = 100*0.01 + 10*0.02 + 0.03 = 1.23
    # step 2: pushes (0.02, 0.03, 0.04) -> x = 1.23 + 2 + 0.3 + 0.04 = 3.57; y stays 0
    # cost: mean over the 2 steps of ((x - 5)^2 + 25) / 2
    expected = (((1.23 - 5) ** 2 + 25) / 2 + ((3.57 - 5) ** 2 + 25) / 2) / 2
    assert float(ctrl.cost()(candidate).detach()) == pytest.approx(expected, rel=1e-5)  # float32 sums of ~30
    model.train()
    ctrl.plan()  # planning leaves the caller's model as it was
    assert model.training and model.w.requires_grad


def test_simulator_cost_is_the_mean_squared_distance_along_the_open_loop_path():
    env = SpriteEnv(VIDEO, 3, seed=1)
    actions = (torch.rand(3, 5, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    path = open_loop_path(env.p, env.v, actions, env)  # (3, 6, 2)
    expected = (path[:, 1:] - env.goal[:, None]).pow(2).sum(-1).mean(1)
    got = simulator_cost(env.p, env.v, env.goal, env)(actions[:, None])[:, 0]
    # the same float32 operations in another batch shape: equal up to a few ulps of values ~100-400 px^2
    assert torch.allclose(got, expected, rtol=1e-5)


def test_the_oracle_reaches_nearly_every_goal_and_random_pushes_rarely_do():
    cfg = PlanConfig(episodes=16, steps=20, horizon=8, samples=64, iterations=3, elites=8)
    oracle = run_episodes(SpriteEnv(VIDEO, 16, seed=0), OracleController(cfg, 1.0, 2, torch.device("cpu")), cfg, 2)
    random = run_episodes(SpriteEnv(VIDEO, 16, seed=0), RandomController(cfg, 1.0), cfg, 2)
    assert oracle.path.shape == (16, 21, 2) and oracle.planned.shape == (16, 9, 2)
    final = (oracle.path[:, -1] - SpriteEnv(VIDEO, 16, seed=0).goal).norm(dim=-1)  # the same episodes' goals
    assert torch.equal(oracle.success, final <= cfg.success_distance)
    assert oracle.summary()["success_rate"] >= 14 / 16
    assert random.summary()["success_rate"] <= 6 / 16
    assert oracle.final_distance.mean() < random.final_distance.mean() / 3
    assert len(oracle.plan_seconds) == 20 and oracle.summary()["episodes"] == 16
    assert oracle.summary()["plan_calls"] == 19  # the first call (warm-up) left out of the timing
    assert oracle.first_frames.shape == oracle.goal_frames.shape == (16, 1, 32, 32)


def test_pixel_embedding_pools_the_frame_by_two():
    frames = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    frames[0, 0, :2, :2] = 255
    assert torch.equal(pixel_embedding(frames), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


# --------------------------------------------------------------------------------------------
# Configuration and the command
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("planner", "rrt", "plan.planner"), ("samples", 1, "plan.samples"), ("elites", 500, "plan.elites"),
    ("elites", 1, "plan.elites"),
    ("replan_every", 9, "plan.replan_every"), ("success_distance", 0, "plan.success_distance"),
])
def test_plan_config_refuses_bad_values_in_one_line(field, value, message):
    with pytest.raises(ConfigError, match=message) as e:
        plan_config({field: value})
    assert "\n" not in str(e.value)


def _tiny_run(path, preset="sprites-control"):
    over = {"data.video.sequences": 24, "data.video.test_sequences": 8, "data.video.length": 8,
            "data.video.canvas": 16, "data.video.sprite_size": 6, "data.video.distractors": 2,
            "train.epochs": 1, "train.batch_size": 8, "train.knn_every": 0, "train.progress": False,
            "train.diagnostics_samples": 64, "train.knn_k": [5, 20], "model.head_widths": [16],
            "model.embedding_dim": 8, "model.expander": [32, 32], "train.device": "cpu"}
    train(build_config(preset, over), run_dir=path, echo=QUIET)
    return path


@pytest.fixture(scope="module")
def planned_run(tmp_path_factory):
    run_dir = _tiny_run(tmp_path_factory.mktemp("plan") / "enc")
    train_predictor(run_dir, PredictorConfig(epochs=2, context=2, width=16, batch_size=32), device="cpu", log=QUIET)
    return run_dir


def test_plan_run_compares_every_method_with_leaves_on_and_off_and_draws_the_pictures(planned_run):
    cfg = PlanConfig(episodes=4, steps=3, horizon=2, samples=8, iterations=1, elites=2, device="cpu")
    report = plan_run(planned_run, cfg, horizons=(1, 2), log=QUIET)
    assert set(report["results"]) == {"leaves on", "leaves off"}
    for table in report["results"].values():
        assert set(table) == {"world model", "pixels", "oracle", "random"}
        for r in table.values():
            assert r["episodes"] == 4 and 0 <= r["success_rate"] <= 1 and r["mean_final_distance"] >= 0
    assert set(report["success_by_horizon"]) == {"1", "2"}
    assert json.loads((planned_run / "plan/plan.json").read_text())["results"] == report["results"]
    assert (planned_run / "plan/config.yaml").exists() and (planned_run / "plan/pixel_predictor.pt").exists()
    assert {p.rsplit("/", 1)[1] for p in report["figures"]} == {"trajectories.png", "success_horizon.png"}
    assert "world model, leaves on" in format_plan_table(report)
    # the random baseline ignores the model: the same pushes, so the same distances, whatever the leaves
    on, off = report["results"]["leaves on"]["random"], report["results"]["leaves off"]["random"]
    assert on["mean_final_distance"] == off["mean_final_distance"]
    from vicreg.plots import plot_run

    names = {p.name for p in plot_run(planned_run, formats=("png",))}
    assert {"plan_success.png", "success_horizon.png", "loss.png"} <= names


def test_plan_command_prints_the_table_and_refuses_runs_it_cannot_plan_with(planned_run, tmp_path, capsys):
    assert main(["plan", str(planned_run), "--methods", "world model", "random", "--plan.episodes", "2",
                 "--plan.steps", "2", "--plan.horizon", "2", "--plan.samples", "4", "--plan.elites", "2",
                 "--plan.iterations", "1", "--plan.device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "world model, leaves on" in out and "random, leaves off" in out and "plan.json" in out
    assert main(["plan", str(planned_run), "--plan.horizon", "0"]) == 2
    assert "plan.horizon" in capsys.readouterr().err
    uncontrolled = _tiny_run(tmp_path / "still", preset="sprites")
    assert main(["plan", str(uncontrolled)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sprites-control" in err
    assert f"({uncontrolled / 'config.yaml'}: data.dataset=sprites, data.video.controlled=false)" in err


def test_a_damaged_pixel_baseline_cache_is_said_and_trained_again(planned_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(planned_run, run, ignore=shutil.ignore_patterns("*.png", "*.svg", "tb"))
    cache = run / "plan" / "pixel_predictor.pt"
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(b"\x89PNG\r\n\x1a\n not a predictor")
    said: list[str] = []
    cfg = PlanConfig(episodes=2, steps=2, horizon=2, samples=4, iterations=1, elites=2, device="cpu")
    plan_run(run, cfg, methods=["pixels"], log=said.append)
    assert any(line.startswith(f"{cache} cannot be used ({cache} is not a readable checkpoint (truncated") and
               line.endswith("): training it again") for line in said), said
    assert load_predictor(cache).dim == 64  # 16 x 16 frames pooled by 2


def test_plan_pushes_plans_from_the_last_frames_toward_a_goal_frame(planned_run):
    from vicreg import load_world_model, plan_pushes

    world = load_world_model(planned_run, "cpu")
    env = SpriteEnv(world.run.cfg.data.video, 3, seed=7)
    goal = env.goal_frames()
    frames = [env.observe()]
    env.step(torch.zeros(3, 2))
    frames.append(env.observe())  # context 2: two frames, one (zero) push between them
    cfg = PlanConfig(horizon=3, samples=8, iterations=2, elites=2)
    batch = plan_pushes(world, torch.stack(frames, 1), torch.zeros(3, 1, 2), goal, cfg)
    assert batch.shape == (3, 3, 2) and batch.abs().max() <= world.run.cfg.data.video.push
    one = plan_pushes(world, torch.stack(frames, 1)[0], torch.zeros(1, 2), goal[0], cfg)
    assert one.shape == (3, 2)
    assert torch.equal(one, plan_pushes(world, torch.stack(frames, 1)[0], torch.zeros(1, 2), goal[0], cfg))
    with pytest.raises(ValueError, match="the last 2 frames"):
        plan_pushes(world, torch.stack(frames, 1)[0, :1], torch.zeros(0, 2), goal[0], cfg)
