"""run.lock: one job at a time trains in a run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path


class RunLock:
    """run.lock in a run directory while a job trains in it: a second job (another ``vicreg train`` or
    ``--resume`` of the same run) stops with one line naming the holder. A lock whose process is gone
    (on this host) is taken over."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "run.lock"
        self.held = False

    def acquire(self) -> None:
        import socket

        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise ValueError(f"{self.path.parent} is in use by another job (process {holder.get('pid')} on "
                                   f"{holder.get('host')}, see {self.path}); wait for it or delete the lock if "
                                   f"that job is gone") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
