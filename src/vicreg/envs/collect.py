"""``vicreg collect ENV_ID``: episodes of an environment under an exploration policy, into a folder
(:mod:`vicreg.envs.episodes`), by several worker processes at once, resuming what an interrupted collection left.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .episodes import Episode, EpisodeFolder
from .exploration import make_policy
from .pixel_env import PixelEnv, open_env
from .specs import spec_of

__all__ = ["CollectResult", "collect", "collect_episode"]


@dataclass
class CollectResult:
    folder: Path
    written: int  # episodes written by this call
    skipped: int  # episodes the folder held already
    seconds: float
    stats: dict  # of the whole folder: episodes, steps, object_moved_share


def episode_rng(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """The environment's reset seed and the policy's generator of episode ``index``: from (seed, index) alone."""
    seq = np.random.SeedSequence([seed, index])
    env_seed, policy_seq = seq.spawn(2)
    return int(env_seed.generate_state(1)[0]), np.random.default_rng(policy_seq)


def collect_episode(env: PixelEnv, steps: int, policy_name: str, seed: int, index: int) -> Episode:
    """One episode: reset with the episode's seed, then up to ``steps`` actions of the policy."""
    env_seed, rng = episode_rng(seed, index)
    policy = make_policy(policy_name, env.spec, env.action_low, env.action_high, rng)
    frame, state = env.reset(seed=env_seed)
    frames, states, actions = [frame], [state], []
    for _ in range(steps):
        action = policy(state)
        frame, state, done = env.step(action)
        frames.append(frame)
        states.append(state)
        actions.append(action)
        if done:
            break
    return Episode(np.stack(frames), np.stack(actions).astype(np.float32),
                   None if states[0] is None else np.stack(states))


def _collect_into(env_id: str, folder: EpisodeFolder, indices, steps: int, policy: str, seed: int,
                  done: Callable[[int], None]) -> None:
    """Collect and write the episodes ``indices`` with one environment; ``done(i)`` after each one is written."""
    env = open_env(env_id, max_steps=steps)
    try:
        for i in indices:
            folder.write(i, collect_episode(env, steps, policy, seed, i))
            done(i)
    finally:
        env.close()


def _worker(env_id: str, root: str, indices: list[int], steps: int, policy: str, seed: int, queue) -> None:
    """A worker process: :func:`_collect_into`, reporting each episode written, or the error in one line, on
    ``queue``."""
    try:
        _collect_into(env_id, EpisodeFolder(root), indices, steps, policy, seed, lambda i: queue.put(("done", i)))
    except Exception as e:  # said by the parent, in one line; what was written stays
        queue.put(("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))


def _meta(env: PixelEnv, steps: int, policy: str, seed: int) -> dict:
    probe_frame, probe_state = env.reset(seed=0)
    return {"env_id": env.env_id, "steps": steps, "policy": policy, "seed": seed,
            "frame_shape": list(probe_frame.shape), "action_low": env.action_low.tolist(),
            "action_high": env.action_high.tolist(), "state_dim": None if probe_state is None else len(probe_state)}


def collect(env_id: str, out: Path | str, episodes: int, steps: int, policy: str | None = None, seed: int = 0,
            workers: int = 1, log: Callable[[str], None] = print) -> CollectResult:
    """Make ``out`` hold episodes 0 .. episodes-1 of ``env_id`` (those it holds already are kept), ``workers``
    processes collecting at once; returns what was done and the folder's statistics."""
    if episodes < 1 or steps < 1 or workers < 1:
        raise ValueError(f"--episodes {episodes}, --steps {steps}, --workers {workers}: each must be >= 1")
    env = open_env(env_id, max_steps=steps)  # checks the id, the observations and the actions, in one line
    try:
        policy = policy or env.spec.policy
        make_policy(policy, env.spec, env.action_low, env.action_high, np.random.default_rng(0))  # a bad one: here
        folder = EpisodeFolder.create(out, _meta(env, steps, policy, seed))
    finally:
        env.close()
    have = set(folder.indices())
    todo = [i for i in range(episodes) if i not in have]
    start = time.perf_counter()
    log(f"collecting {len(todo)} episodes of {env_id} x {steps} steps ({policy} policy, seed {seed}) into "
        f"{folder.root} with {min(workers, max(1, len(todo)))} worker(s); {len(have)} there already")
    if todo:
        _run_workers(env_id, folder, todo, steps, policy, seed, workers)
    seconds = time.perf_counter() - start
    spec = spec_of(env_id)
    stats = folder.stats(spec.object_dims, spec.moved_tolerance)
    moved = stats["object_moved_share"]
    new_steps = sum(len(folder.read(i, states_only=True)) for i in todo)
    log(f"{folder.root}: {stats['episodes']} episodes, {stats['steps']} steps"
        + (f", the object moved in {100 * moved:.1f} % of the steps" if moved is not None else "")
        + f"; this call: {len(todo)} episodes, {new_steps} steps in {seconds:.1f} s"
        + (f" ({new_steps / seconds:.0f} steps/s)" if new_steps and seconds > 0 else ""))
    return CollectResult(folder.root, len(todo), len(have), seconds, stats)


def _run_workers(env_id: str, folder: EpisodeFolder, todo: list[int], steps: int, policy: str, seed: int,
                 workers: int) -> None:
    """Episodes ``todo`` split over ``workers`` processes (one: this process), with a progress bar; a worker that
    fails stops the collection with its error (what was written stays and is resumed). Workers are spawned, not
    forked: a process forked after PyTorch ran a parallel operation (the sprite environment does) can hang in its
    thread pool."""
    from tqdm.auto import tqdm

    workers = min(workers, len(todo))
    if workers == 1:  # in this process: no start-up, and a failure is raised where it happens
        with tqdm(total=len(todo), desc="episodes", unit="ep", leave=False) as bar:
            _collect_into(env_id, folder, todo, steps, policy, seed, lambda _: bar.update(1))
        return
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(env_id, str(folder.root), todo[w::workers], steps, policy, seed,
                                                queue), daemon=True) for w in range(workers)]
    for p in procs:
        p.start()
    done = 0
    try:
        with tqdm(total=len(todo), desc="episodes", unit="ep", leave=False) as bar:
            while done < len(todo):
                try:
                    kind, what = queue.get(timeout=1.0)
                except queue_module.Empty:  # nothing for a second: has a worker died without a word?
                    if any(p.exitcode not in (None, 0) for p in procs):
                        kind, what = "error", "a worker process died"
                    else:
                        continue
                if kind == "error":
                    raise ValueError(f"collection stopped: {what}; {done} episodes of this call were written: "
                                     f"run the same command again to resume")
                done += 1
                bar.update(1)
    finally:
        for p in procs:
            if p.is_alive() and done < len(todo):
                p.kill()
            p.join()
