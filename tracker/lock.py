"""One writer per run: a lock file in the run directory naming the process that writes it.

Two trainings given the same run name would otherwise interleave their snapshots and match a
lineage across the seam. The lock is taken before anything is written and dropped when
training ends; a lock left by a process that no longer runs (a crash, a kill) is taken over
with a warning, so a resumed run needs nothing done by hand.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".writer.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """The lock of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path, run: str) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.run = run
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise RuntimeError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now().isoformat(timespec="seconds"),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(me)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RuntimeError(f"could not take the lock {self.path} of run {self.run!r}")

    def _take_over_if_stale(self, me: dict[str, object]) -> None:
        try:
            other = json.loads(self.path.read_text())
            pid, host = int(other["pid"]), str(other["host"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("tracker: replacing the unreadable lock file %s", self.path)
            self.path.unlink(missing_ok=True)
            return
        if host == me["host"] and pid == me["pid"]:  # this process: a second fit in it
            self.path.unlink(missing_ok=True)
            return
        if host != me["host"] or _alive(pid):
            where = f"process {pid} on {host}" + (
                f" (since {other['since']})" if "since" in other else ""
            )
            raise RuntimeError(
                f"run {self.run!r} is being written by {where}: give this run another name, "
                f"or stop that process (if it is gone, delete {self.path})"
            )
        log.warning(
            "tracker: taking over the lock of run %r from process %d, which no longer runs",
            self.run,
            pid,
        )
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
