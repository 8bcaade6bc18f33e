"""Collected episodes on disk: a folder that training reads one episode at a time, that an interrupted collection
resumes and that a second collection extends.

    DIR/collection.json          format, environment id, steps per episode, policy, seed, frame shape, action box,
                                 state size (null: the environment exposes no state)
    DIR/episodes/000000.npz      one episode (numpy .npz, zip-deflated), written whole or not at all:
                                   frames   uint8   (T + 1, H, W, 3)  the frame before every action, and the last
                                   actions  float32 (T, A)            the action taken after frames[t]
                                   states   float64 (T + 1, S)        the true state at every frame (if exposed)
                                 T is the collection's steps, fewer where the environment ended the episode early
    DIR/stats.json               what the folder holds: episodes, steps, share of steps in which the object moved

Episode ``i`` is made from the seed sequence (collection seed, i), so it is the same whoever collects it and
whenever: collecting 100 episodes, then 200, gives the 200 that one collection would give.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..rundir.atomic import atomic_write, write_json

__all__ = ["COLLECTION", "FORMAT", "Episode", "EpisodeFolder", "scale_actions", "unscale_actions"]

COLLECTION = "collection.json"
STATS = "stats.json"
EPISODES = "episodes"
FORMAT = 1
SETTINGS = ("env_id", "steps", "policy", "seed")  # what a second collection into a folder must repeat


def scale_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actions in the environment's box [low, high] -> [-1, 1]: the units the predictor and the planners use."""
    return (actions - low) / (high - low) * 2 - 1


def unscale_actions(scaled: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The inverse of :func:`scale_actions`: [-1, 1] -> the environment's box."""
    return (scaled + 1) / 2 * (high - low) + low


class Episode:
    """One episode's arrays (see the module docstring); ``states`` is None where the environment has none."""

    def __init__(self, frames: np.ndarray, actions: np.ndarray, states: np.ndarray | None):
        self.frames, self.actions, self.states = frames, actions, states

    def __len__(self) -> int:
        return len(self.actions)


class EpisodeFolder:
    """A folder of collected episodes: its settings (``meta``), which episodes it holds, and each one read back."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.meta = self._read_meta()

    def _read_meta(self) -> dict:
        path = self.root / COLLECTION
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} is not a collection of episodes: no {COLLECTION} "
                                    f"(make one with vicreg collect ENV_ID --out {self.root})")
        try:
            meta = json.loads(path.read_text())
        except (ValueError, OSError) as e:
            raise ValueError(f"corrupt {path}: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not all(k in meta for k in SETTINGS):
            raise ValueError(f"corrupt {path}: expected format {FORMAT} with {', '.join(SETTINGS)}")
        return meta

    @staticmethod
    def create(root: Path | str, meta: dict) -> EpisodeFolder:
        """The folder for a collection with ``meta`` (made, or an existing one checked to hold the same kind of
        episodes). A folder of another environment or other settings is refused in one line, before anything
        is written."""
        root = Path(root)
        if (root / COLLECTION).is_file():
            folder = EpisodeFolder(root)
            for key in (*SETTINGS, "frame_shape", "action_low", "action_high", "state_dim"):
                if folder.meta.get(key) != meta.get(key):
                    raise ValueError(f"{root} holds episodes with {key}={folder.meta.get(key)!r}, not "
                                     f"{meta.get(key)!r} ({root / COLLECTION}): collect into another --out, or "
                                     f"repeat the folder's settings to extend it")
            return folder
        if root.exists() and not root.is_dir():
            raise ValueError(f"--out {root} is a file, not a folder")
        if root.is_dir() and any(root.iterdir()):
            raise ValueError(f"{root} is not empty and holds no {COLLECTION}: collect into a new or empty folder")
        (root / EPISODES).mkdir(parents=True, exist_ok=True)
        write_json(root / COLLECTION, {"format": FORMAT, **meta})
        return EpisodeFolder(root)

    def path(self, index: int) -> Path:
        return self.root / EPISODES / f"{index:06d}.npz"

    def indices(self) -> list[int]:
        """The episodes the folder holds (a file written whole is there; a half-written one never is)."""
        return sorted(int(p.stem) for p in (self.root / EPISODES).glob("*.npz") if p.stem.isdigit())

    def write(self, index: int, episode: Episode) -> None:
        arrays = {"frames": episode.frames, "actions": episode.actions}
        if episode.states is not None:
            arrays["states"] = episode.states

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)  # a Push-T episode: 2.8 MB in 57 kB (33 ms)

        atomic_write(self.path(index), save)

    def read(self, index: int, states_only: bool = False) -> Episode:
        """Episode ``index``, checked against the folder's settings: a truncated, foreign or inconsistent file is
        a ValueError naming it, in one line. ``states_only`` reads only the actions and states (statistics)."""
        path = self.path(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                names = ("actions", "states") if states_only else ("frames", "actions", "states")
                arrays = {k: data[k] for k in names if k in data.files}
        except FileNotFoundError:
            raise FileNotFoundError(f"no episode {index} in {self.root}: {path} does not exist") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"corrupt episode file {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        return self._checked(path, arrays, states_only)

    def _checked(self, path: Path, arrays: dict, states_only: bool) -> Episode:
        m = self.meta
        actions, states, frames = arrays.get("actions"), arrays.get("states"), arrays.get("frames")

        def bad(what: str) -> ValueError:
            return ValueError(f"corrupt episode file {path}: {what}")

        if actions is None or actions.dtype != np.float32 or actions.ndim != 2 or \
                actions.shape[1] != len(m["action_low"]) or not 1 <= len(actions) <= m["steps"]:
            raise bad(f"actions must be float32 (T, {len(m['action_low'])}) with 1 <= T <= {m['steps']}")
        t = len(actions)
        if m["state_dim"] is not None and (states is None or states.shape != (t + 1, m["state_dim"])):
            raise bad(f"states must be ({t + 1}, {m['state_dim']}) for {t} actions")
        if not np.isfinite(actions).all() or (states is not None and not np.isfinite(states).all()):
            raise bad("non-finite actions or states")
        if not states_only and (frames is None or frames.dtype != np.uint8 or
                                frames.shape != (t + 1, *m["frame_shape"])):
            raise bad(f"frames must be uint8 ({t + 1}, {', '.join(map(str, m['frame_shape']))}) for {t} actions")
        return Episode(frames, actions, states)

    def stats(self, object_dims: tuple[int, ...], tolerance: float) -> dict:
        """Episodes, steps and, where states name the object, the share of steps in which it moved."""
        steps = moved = 0
        for i in self.indices():
            ep = self.read(i, states_only=True)
            steps += len(ep)
            if ep.states is not None and object_dims:
                change = np.abs(np.diff(ep.states[:, list(object_dims)], axis=0)).max(axis=1)
                moved += int((change > tolerance).sum())
        share = moved / steps if steps and object_dims and self.meta["state_dim"] else None
        out = {"episodes": len(self.indices()), "steps": steps, "object_moved_share": share}
        write_json(self.root / STATS, out)
        return out
