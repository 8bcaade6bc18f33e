"""Closed-loop control toward a goal frame: the costs a planner minimises, the controllers that plan from what
they observe, and the loop that executes their pushes in the simulator.

Costs (functions of candidate pushes (N, S, H, A) -> (N, S)):

- :func:`rollout_cost`: the predictor rolls every candidate out from the last k embeddings (one batched
  roll-out of N x S sequences per call); the cost is the mean over the H predicted embeddings of their squared
  distance to the goal frame's embedding (standardised units, averaged over dims). Being near the goal early
  and staying there is cheapest.
- :func:`simulator_cost`: the same, with the simulator's true physics from the true state and the distance in
  pixels to the goal position (the oracle's cost: the ceiling for a planner).

Controllers see the frames the simulator produced (an oracle sees the true state instead) and return a plan
of H pushes; :func:`run_episodes` executes the first ``replan_every`` of them and asks again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import PlanConfig, config_to_dict, plan_config
from ..data.sprites import push_and_move
from .action_search import Cost, plan
from .env import SpriteEnv
from .predictor import EmbeddingNorm

__all__ = ["Outcome", "roll_out", "rollout_cost", "simulator_cost", "PlanningController", "ModelController",
           "OracleController", "RandomController", "run_episodes", "open_loop_path", "frozen"]

Encode = Callable[[Tensor], Tensor]  # uint8 frames (N, C, H, W) -> embeddings (N, E) on the model's device


def roll_out(model: nn.Module, context: Tensor, actions: Tensor) -> Tensor:
    """The predictor's roll-out: standardised embeddings (M, k, E) of the last k frames and the actions (M, k - 1 + H,
    A) (the k - 1 between them, then H ahead) -> the H predicted embeddings (M, H, E), each fed back as context."""
    k = context.shape[1]
    preds = []
    for j in range(actions.shape[1] - k + 1):
        pred = model(context, actions[:, j:j + k])
        preds.append(pred)
        context = torch.cat([context[:, 1:], pred[:, None]], dim=1)
    return torch.stack(preds, 1)


def rollout_cost(model: nn.Module, context: Tensor, past: Tensor, goal: Tensor) -> Cost:
    """Cost of candidate pushes under the predictor. context: standardised embeddings (N, k, E) of the last k
    frames; past: the k - 1 pushes between them (N, k - 1, A); goal: the goal's standardised embedding (N, E)."""
    n, k, e = context.shape

    def cost(actions: Tensor) -> Tensor:
        _, s, h, a = actions.shape
        ctx = context[:, None].expand(n, s, k, e).reshape(n * s, k, e)
        acts = torch.cat([past[:, None].expand(n, s, k - 1, a), actions], dim=2).reshape(n * s, k - 1 + h, a)
        preds = roll_out(model, ctx, acts)  # (N S, H, E)
        return (preds - goal.repeat_interleave(s, 0)[:, None]).pow(2).mean(-1).mean(-1).view(n, s)

    return cost


def simulator_cost(p: Tensor, v: Tensor, goal: Tensor, env: SpriteEnv) -> Cost:
    """Cost of candidate pushes under the true physics from positions and velocities (N, K, 2): the mean over
    the H steps of the squared pixel distance of sprite 0 to ``goal`` (N, 2)."""
    def cost(actions: Tensor) -> Tensor:
        n, s = actions.shape[:2]
        path = open_loop_path(p[:, None].expand(n, s, *p.shape[1:]), v[:, None].expand(n, s, *v.shape[1:]),
                              actions, env)  # (N, S, H + 1, 2)
        return (path[:, :, 1:] - goal[:, None, None].to(actions.device)).pow(2).sum(-1).mean(-1)

    return cost


def open_loop_path(p: Tensor, v: Tensor, actions: Tensor, env: SpriteEnv) -> Tensor:
    """Sprite 0's positions (..., H + 1, 2) if pushes (..., H, 2) were executed blind from positions and
    velocities (..., K, 2): where a plan would take it. On the device of ``actions``."""
    p, v = p.to(actions.device), v.to(actions.device)
    path = [p[..., 0, :]]
    for j in range(actions.shape[-2]):
        p, v = push_and_move(p, v, actions[..., j, :], env.limit, env.cfg.max_speed)
        path.append(p[..., 0, :])
    return torch.stack(path, dim=-2)


class PlanningController:
    """What every planning controller shares: its settings, the previous plan (shifted: the warm start) and a
    generator on its device."""

    def __init__(self, cfg: PlanConfig, bound: float, action_dim: int, device: torch.device):
        self.cfg, self.bound, self.action_dim, self.device = cfg, bound, action_dim, device
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.mean: Tensor | None = None

    def search(self, cost: Cost, n: int) -> Tensor:
        if self.mean is None:
            self.mean = torch.zeros(n, self.cfg.horizon, self.action_dim, device=self.device)
        actions = plan(cost, self.mean, self.bound, self.cfg, self.generator)
        shift = self.cfg.replan_every  # the pushes executed before the next plan (<= horizon: plan_config)
        self.mean = torch.cat([actions[:, shift:], actions.new_zeros(n, shift, self.action_dim)], dim=1)
        return actions.detach().cpu()


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients into the weights inside (gradient descent differentiates the pushes only);
    the model's mode and its parameters' flags are restored on exit."""
    was_training, flags = model.training, [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        model.train(was_training)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class ModelController(PlanningController):
    """Plans with a predictor over embeddings given by ``encode`` (a VICReg encoder, or pixels). Leaves the
    caller's model and norm as they were."""

    def __init__(self, encode: Encode, model: nn.Module, norm: EmbeddingNorm, cfg: PlanConfig, bound: float,
                 device: torch.device):
        super().__init__(cfg, bound, model.action_dim, device)
        self.encode, self.model, self.k = encode, model, model.context
        self.norm = EmbeddingNorm(norm.mean.to(device), norm.std.to(device))

    def start(self, env: SpriteEnv | None, goal_frames: Tensor) -> None:
        self.goal = self.norm(self.encode(goal_frames))
        self.embeddings: list[Tensor] = []
        self.actions: list[Tensor] = []
        self.mean = None

    def observe(self, frame: Tensor, action: Tensor | None) -> None:
        """Keep the last k embeddings and the k - 1 pushes between them."""
        self.embeddings = [*self.embeddings, self.norm(self.encode(frame))][-self.k:]
        if action is not None and self.k > 1:
            self.actions = [*self.actions, action.to(self.device)][-(self.k - 1):]

    def cost(self) -> Cost:
        """The cost of candidate pushes from what was observed: the last k embeddings, the k - 1 pushes
        between them, the goal."""
        n = self.goal.shape[0]
        past = torch.stack(self.actions, 1) if self.k > 1 else self.goal.new_zeros(n, 0, self.action_dim)
        return rollout_cost(self.model, torch.stack(self.embeddings, 1), past, self.goal)

    def plan(self) -> Tensor:
        with frozen(self.model):
            return self.search(self.cost(), self.goal.shape[0])

    @torch.no_grad()
    def imagine(self, actions: Tensor) -> Tensor:
        """What the predictor expects of pushes (n, H, A) for the first n episodes, from what was observed:
        standardised embeddings (n, H, E)."""
        n, actions = actions.shape[0], actions.to(self.device)
        past = torch.stack(self.actions, 1)[:n] if self.k > 1 else actions.new_zeros(n, 0, self.action_dim)
        with frozen(self.model):
            return roll_out(self.model, torch.stack(self.embeddings, 1)[:n], torch.cat([past, actions], 1))


class OracleController(PlanningController):
    """Plans with the simulator's true physics from the true state: the ceiling for a planner."""

    def start(self, env: SpriteEnv, goal_frames: Tensor) -> None:
        self.env, self.mean = env, None

    def observe(self, frame: Tensor, action: Tensor | None) -> None:
        pass

    def plan(self) -> Tensor:
        env = self.env
        return self.search(simulator_cost(env.p, env.v, env.goal, env), len(env))


class RandomController:
    """Pushes drawn uniformly from the box: the floor."""

    def __init__(self, cfg: PlanConfig, bound: float, action_dim: int = 2):
        self.cfg, self.bound, self.action_dim = cfg, bound, action_dim
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def start(self, env: SpriteEnv, goal_frames: Tensor) -> None:
        self.n = len(env)

    def observe(self, frame: Tensor, action: Tensor | None) -> None:
        pass

    def plan(self) -> Tensor:
        u = torch.rand((self.n, self.cfg.horizon, self.action_dim), generator=self.generator)
        return (2 * u - 1) * self.bound


@dataclass
class Outcome:
    """One controller on one set of episodes. path: sprite 0's positions (N, steps + 1, 2) from the first
    planned step on; planned: where the first plan would have taken it, executed blind (N, horizon + 1, 2);
    goal: the goal positions (N, 2); first_frames, goal_frames: what the controller saw at its first plan and
    as the goal, uint8 (N, C, H, W); plan_seconds: the wall time of every planning call (all episodes at once)."""

    final_distance: Tensor
    success: Tensor
    path: Tensor
    planned: Tensor
    goal: Tensor
    first_frames: Tensor
    goal_frames: Tensor
    plan_seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        """Success rate, final distances, and the seconds of one planning call for all episodes at once (the
        first call, which carries one-off warm-up such as CUDA's, left out when there are more)."""
        n = len(self.success)
        calls = self.plan_seconds[1:] if len(self.plan_seconds) > 1 else self.plan_seconds
        per_call = sum(calls) / max(len(calls), 1)
        return {"episodes": n, "success_rate": float(self.success.float().mean()),
                "mean_final_distance": float(self.final_distance.mean()),
                "median_final_distance": float(self.final_distance.median()),
                "plan_seconds": per_call, "plan_ms_per_episode": 1000 * per_call / n, "plan_calls": len(calls)}


def run_episodes(env: SpriteEnv, controller, cfg: PlanConfig, context: int,
                 progress: Callable[[int], None] | None = None) -> Outcome:
    """Execute ``controller`` closed loop on every episode of ``env`` at once: it sees the goal frame and
    ``context`` frames of the sprite moving without pushes, then plans, the first ``cfg.replan_every`` pushes
    are executed, it sees the frames they produced, and plans again, for ``cfg.steps`` pushes in all. An
    episode succeeds when sprite 0 ends within ``cfg.success_distance`` pixels of its goal position."""
    cfg = plan_config(config_to_dict(cfg))  # validated: settings built in Python skip the command line's checks
    goal_frames = env.goal_frames()
    controller.start(env, goal_frames)
    frame = env.observe()
    controller.observe(frame, None)
    zeros = torch.zeros(len(env), 2)
    for _ in range(context - 1):
        env.step(zeros)
        frame = env.observe()
        controller.observe(frame, zeros)
    first_frames = frame
    path, planned, seconds = [env.p[:, 0].clone()], None, []
    actions = zeros[:, None]
    for t in range(cfg.steps):
        if t % cfg.replan_every == 0:
            t0 = time.perf_counter()
            actions = controller.plan()
            seconds.append(time.perf_counter() - t0)
            if planned is None:
                planned = open_loop_path(env.p, env.v, actions, env)
        a = actions[:, t % cfg.replan_every]
        env.step(a)
        controller.observe(env.observe(), a)
        path.append(env.p[:, 0].clone())
        if progress is not None:
            progress(1)
    distance = env.distance()
    return Outcome(distance, distance <= cfg.success_distance, torch.stack(path, 1), planned, env.goal.clone(),
                   first_frames, goal_frames, seconds)
