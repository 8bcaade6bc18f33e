"""Planning in an environment: the model's action units, simulating plans in copies that render nothing (the
oracle's model) and the oracle's cost, the state baseline's features, the tasks' scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vicreg.config import PlanConfig
from vicreg.envs import collect, open_env
from vicreg.envs.action_units import action_units
from vicreg.envs.episodes import EpisodeFolder
from vicreg.envs.simulate import Simulator, simulate
from vicreg.envs.specs import spec_of
from vicreg.worldmodel.env_oracle import EnvOracle
from vicreg.worldmodel.env_tasks import EnvEpisodes, angle_between, pose_error
from vicreg.worldmodel.state_baseline import state_features

PUSHT = "gym_pusht/PushT-v0"
SPEC = spec_of(PUSHT)
META = {"env_id": PUSHT, "action_low": [0.0, 0.0], "action_high": [512.0, 512.0]}


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pusht")
    collect(PUSHT, folder, episodes=1, steps=10, workers=1, log=lambda _: None)
    return EpisodeFolder(folder).read(0)


@pytest.mark.parametrize("relative", [False, True])
def test_action_units_go_back_to_the_actions_the_environment_took(episode, relative):
    units = action_units(META, SPEC, relative)
    actions, states = episode.actions.astype(np.float64), episode.states[:-1]
    model = units.to_model(actions, states)
    # float32 units: |error| <= 512 px x 2^-24 x a few roundings
    np.testing.assert_allclose(units.to_env(model.astype(np.float64), states), actions, atol=1e-3)
    if relative:  # zero is "stay where you are"; 64 px is one unit
        np.testing.assert_allclose(units.to_env(np.zeros(2), states[0]), states[0, :2])
        np.testing.assert_allclose(units.to_model(states[0, :2] + [64.0, -32.0], states[0]), [1.0, -0.5])
    else:
        np.testing.assert_allclose(units.to_model(np.array([0.0, 256.0]), None), [-1.0, 0.0])


def test_relative_actions_need_an_agent_to_be_relative_to():
    with pytest.raises(ValueError, match="data.relative_actions=true needs an environment whose actions are an "
                                         "agent's target position"):
        action_units({**META, "env_id": "vicreg/Sprites-v0"}, spec_of("vicreg/Sprites-v0"), True)


def test_simulating_the_recorded_actions_from_the_first_state_gives_the_recorded_states(episode):
    env = open_env(PUSHT, physics_only=True)
    try:
        units = action_units(META, SPEC, True)
        plans = units.to_model(episode.actions, episode.states[:-1]).reshape(1, 5, 4)  # 5 steps of 2 actions
        out = simulate(env, episode.states[:1], plans.astype(np.float64), units, skip=2)
    finally:
        env.close()
    assert out.shape == (1, 5, 10)
    # pymunk is deterministic and the state holds the velocities: the same scene, to float64 rounding of 512 px
    np.testing.assert_allclose(out[0], episode.states[2::2], atol=1e-6)


def test_the_oracles_cost_is_the_pose_error_along_the_plan_and_its_workers_agree(episode):
    units = action_units(META, SPEC, True)
    plan = torch.from_numpy(units.to_model(episode.actions, episode.states[:-1]).reshape(1, 1, 5, 4)).double()
    still = torch.zeros_like(plan)  # the pusher stays where it is
    envs = EnvEpisodes(PUSHT, 1, 24, 2, units)
    goal = episode.states[-1:]
    try:
        envs.reset(episode.states[:1])
        with Simulator(PUSHT, workers=1) as one, Simulator(PUSHT, workers=2) as two:
            costs = []
            for sim in (one, two):
                oracle = EnvOracle(PlanConfig(oracle_samples=2, samples=2, elites=2), sim, 4)
                oracle.start(envs, goal)
                costs.append(oracle.cost()(torch.cat([plan, still], dim=1)))
    finally:
        envs.close()
    by_hand = pose_error(episode.states[2::2], goal, SPEC).mean()
    assert costs[0].shape == (1, 2)
    assert costs[0][0, 0].item() == pytest.approx(by_hand, rel=1e-5)  # float32 cost of a float64 error
    assert costs[0][0, 1] > costs[0][0, 0] or by_hand == 0
    torch.testing.assert_close(costs[0], costs[1], rtol=0, atol=0)  # the same simulation, whoever runs it


def test_pose_error_and_state_features_treat_angles_as_turns():
    assert angle_between(np.array([0.1]), np.array([0.1 + 4 * np.pi]))[0] == pytest.approx(0.0, abs=1e-12)
    assert angle_between(np.array([-3.0]), np.array([3.0]))[0] == pytest.approx(2 * np.pi - 6.0)
    state = np.array([10.0, 20.0, 100.0, 200.0, np.pi / 9, 0, 0, 0, 0, 0])
    goal = state.copy()
    goal[2] += 20.0  # at the distance threshold, the angle right: error 1
    assert pose_error(state, goal, SPEC) == pytest.approx(1.0)
    goal[4] += 2 * np.pi + np.pi / 9  # a whole turn and the angle threshold more: 1 + 1
    assert pose_error(state, goal, SPEC) == pytest.approx(2.0)
    f = state_features(torch.from_numpy(np.stack([state, goal])), SPEC)
    assert f.shape == (2, 6) and f.dtype == torch.float32
    expected = [10.0, 20.0, 100.0, 200.0, np.cos(np.pi / 9), np.sin(np.pi / 9)]
    torch.testing.assert_close(f[0], torch.tensor(expected, dtype=torch.float32))
    torch.testing.assert_close(f[1, 4:], torch.tensor([np.cos(2 * np.pi / 9), np.sin(2 * np.pi / 9)]).float())


def test_an_environment_without_a_renderless_copy_cannot_be_simulated():
    with pytest.raises(ValueError, match="the oracle cannot simulate it"):
        Simulator("vicreg/Sprites-v0")
