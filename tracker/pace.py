"""A share of one core for background fitting: the worker thread sleeps between SAE steps so
that its busy time stays within a share of the wall time, and training keeps the rest. The
same points let an interrupted run stop the fit under way within one SAE step."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class Stopped(BaseException):
    """Raised at a pause point once the pacer is stopped: the fit under way is abandoned
    (nothing of its checkpoint is written). A BaseException, so the handlers that record a
    failed fit and go on do not catch it."""


class Pacer:
    """Keeps the thread that installed it busy at most `share` of the wall time (1.0: no
    pauses). `share` may be changed from another thread (to 1.0 when training ends)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.stopped = False
        self._since = time.perf_counter()
        self._wake = threading.Event()
        """Set to cut a pause short: the thread is released or stopped."""

    def release(self) -> None:
        """Full speed from now on, a pause under way included (from any thread)."""
        self.share = 1.0
        self._wake.set()

    def stop(self) -> None:
        """Make the pause under way, or the next one, raise `Stopped` (from any thread)."""
        self.stopped = True
        self._wake.set()

    def pause(self) -> None:
        """Sleep for what the work since the last pause allows, then restart the clock."""
        if self.stopped:
            raise Stopped
        share = self.share
        if share < 1.0:
            self._wait((time.perf_counter() - self._since) * (1.0 - share) / share)
            if self.stopped:
                raise Stopped
        self._since = time.perf_counter()

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)


@contextmanager
def paced(pacer: Pacer) -> Iterator[Pacer]:
    """Install `pacer` for the calling thread: `pause()` there obeys it."""
    _local.pacer = pacer
    pacer._since = time.perf_counter()
    try:
        yield pacer
    finally:
        _local.pacer = None


def pause() -> None:
    """A point where background work may yield the cores: a no-op unless the calling thread
    runs under `paced`."""
    pacer = getattr(_local, "pacer", None)
    if pacer is not None:
        pacer.pause()
