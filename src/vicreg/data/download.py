"""Where datasets are looked for on disk, and downloads through torchvision that fail with one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import DataConfig
from ..errors import DownloadFailed, first_line
from .dataset import Log

DEFAULT_ROOT = "~/.cache/vicreg/data"  # torchvision downloads land here when no data_dir is given
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": []}  # distribution packages


def candidate_dirs(cfg: DataConfig, *subdirs: str) -> list[Path]:
    """data_dir (or the default cache when there is none), then each of its sub-folders."""
    root = Path(cfg.data_dir if cfg.data_dir is not None else DEFAULT_ROOT).expanduser()
    return [root] + [root / s for s in subdirs]


def download_root(cfg: DataConfig) -> Path:
    root = Path(cfg.data_dir if cfg.data_dir is not None else DEFAULT_ROOT).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def tv_download(name: str, factory: Callable[[str], object], root: Path, log: Log) -> None:
    """Run a torchvision dataset constructor with download=True; failures become one clear line
    (:class:`~vicreg.errors.DownloadFailed`, an OSError)."""
    log(f"{name}: not found locally, downloading with torchvision into {root}")
    try:
        factory(str(root))
    except Exception as e:  # network errors, checksum mismatches, full disk...
        first = first_line(e, None)
        raise DownloadFailed(f"downloading {name} into {root} failed ({type(e).__name__}: {first}); download it "
                           f"elsewhere and pass --data.data_dir, or see the vicreg.data docstring") from e
