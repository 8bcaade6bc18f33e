"""The world model's environments: any Gymnasium environment with image observations and continuous actions.

``pixel_env``    opening an environment by id, checked, headless; frames, actions and its true state
``specs``        what vicreg knows of an environment beyond Gymnasium (Push-T's state, object, policy): data
``exploration``  the policies that collect episodes (uniform random; waypoints around the object)
``episodes``     collected episodes on disk: the folder's format, writing, reading back checked, statistics
``collect``      ``vicreg collect ENV_ID``: episodes by several worker processes, resumable and extendable
``sprites``      our sprite world as the Gymnasium environment ``vicreg/Sprites-v0``

Push-T comes with ``pip install "vicreg[envs]"`` (gym-pusht, id ``gym_pusht/PushT-v0``).
"""

from .collect import CollectResult, collect
from .episodes import Episode, EpisodeFolder
from .pixel_env import PixelEnv, open_env
from .specs import ENV_SPECS, EnvSpec

__all__ = ["CollectResult", "ENV_SPECS", "Episode", "EpisodeFolder", "EnvSpec", "PixelEnv", "collect", "open_env"]
