"""Writing files so that readers and a crash never see half of one: a temporary file renamed over the target."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import first_line


def write_json(path: Path | str, obj: Any) -> None:
    """JSON to a temporary file, then renamed over ``path``: readers never see half a file."""
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))


def check_writable(folder: Path) -> None:
    """Raise ValueError (one line, naming the folder) unless a file can be written in ``folder``: said before a
    long computation whose result goes there, not after it."""
    probe = Path(folder) / f".vicreg-write-check-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write in {folder}: {e.strerror or e}") from None


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, flush it to disk and rename it over ``path``: readers and
    a crash never see half a file. When writing fails (a full disk, no permission) the temporary file is
    removed and an OSError names ``path``, in one line."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise OSError(f"could not write {path}: {reason} (nothing was left half-written)") from None


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save through :func:`atomic_write`: a crash never leaves a half-written checkpoint, a full disk
    no temporary file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
