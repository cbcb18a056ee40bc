"""Background-fitting worker processes with a fault planted, for the tests (the worker runs
in its own interpreter, so a test's monkeypatch cannot reach it: `tracker.worker.SERVE`
points here instead)."""

import logging
import time

import duckdb

from tracker import worker
from tracker.pipeline import Analyzer
from tracker.store import Writer

log = logging.getLogger("tracker.worker_hooks")


def stuck(read_fd: int, write_fd: int) -> None:
    """Every fit hangs (until the worker is stopped), saying which step it is on."""

    def hang(self, step, acts):
        log.warning("stuck fitting step %d", step)
        time.sleep(3600)

    Analyzer.add = hang
    worker.serve(read_fd, write_fd)


def unrecordable(read_fd: int, write_fd: int) -> None:
    """Recording a failed fit fails too, as with a database another process has locked."""

    def locked(*args):
        raise duckdb.IOException("Could not set lock on file: Conflicting lock is held")

    Writer.write_failure = locked
    worker.serve(read_fd, write_fd)


def dies(read_fd: int, write_fd: int) -> None:
    """The worker process dies at once."""
    raise SystemExit(3)
