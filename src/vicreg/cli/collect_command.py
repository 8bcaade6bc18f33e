"""``vicreg collect ENV_ID``: episodes of a Gymnasium environment into a folder the world model trains on."""

from __future__ import annotations

from ..config.checks import MAX_WORKERS, SEED_LIMIT
from .options import at_least


def add_collect_command(sub) -> None:
    from ..envs.exploration import POLICIES

    cp = sub.add_parser("collect", help="collect episodes of a Gymnasium environment (frames, actions, states)",
                        description="Run ENV_ID (any Gymnasium id whose observation is an RGB image, or a dict "
                        "holding one, and whose actions are a Box; Push-T: gym_pusht/PushT-v0, with pip install "
                        "'vicreg[envs]') under an exploration policy and write each episode's frames, actions and "
                        "true state (where the environment exposes it) to OUT/episodes/. Resumes an interrupted "
                        "collection, and extends a folder when called again with more --episodes and the same "
                        "settings. Prints the share of steps in which the pushed object moved.")
    cp.add_argument("env_id", metavar="ENV_ID")
    cp.add_argument("--episodes", type=at_least(1), required=True, help="episodes the folder should hold")
    cp.add_argument("--steps", type=at_least(1), required=True, help="actions per episode (fewer where it ends)")
    cp.add_argument("--out", required=True, metavar="DIR", help="the collection folder")
    cp.add_argument("--policy", choices=POLICIES, default=None,
                    help="exploration policy (default: the environment's, waypoints for Push-T, else random)")
    cp.add_argument("--seed", type=at_least(0, SEED_LIMIT), default=0,
                    help="episode i is drawn from (seed, i) (default 0)")
    cp.add_argument("--workers", type=at_least(1, MAX_WORKERS), default=1,
                    help="processes collecting at once (default 1)")
    cp.set_defaults(handler=collect_command)


def collect_command(args) -> int:
    from ..envs import collect

    collect(args.env_id, args.out, args.episodes, args.steps, policy=args.policy, seed=args.seed,
            workers=args.workers)
    return 0
