"""Background fitting in a process of its own, at the lowest scheduling priority.

A fitting thread inside the training process shares its interpreter lock: on 2 CPU cores a
thread fitting SAEs non-stop made a small model's training loop 3.9x slower, and the same
fits in a separate process at nice 19 cost it 1.02x (measured in one run). So the callback
starts `python -m tracker.worker` (a fresh interpreter: nothing of the user's script is
re-run, as multiprocessing's spawn would), sends it each snapshot step over a pipe, and
gets back each checkpoint written (for the trainer's loggers), the worker's log records
(re-emitted in the training process, so they reach the user's logging), and a last word.
The worker writes the run's DuckDB file; the training process never opens it meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch

from tracker.config import MatchConfig, SAEConfig
from tracker.fitter import SnapshotFitter, log_summaries, missing_steps, warn_missing
from tracker.snapshots import RunDir

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0
"""How long an interrupted run waits for the fit under way before stopping the worker."""
SERVE = "tracker.worker:serve"
"""What the worker process runs (`module:function`; tests point it at a wrapper)."""


@dataclass(frozen=True)
class WorkerSpec:
    run_dir: str
    run: str
    layers: list[str]
    sae: SAEConfig
    match: MatchConfig
    threads: int | None
    log_level: int


class BackgroundFitter:
    """The training process's side: `submit` never waits (steps beyond `queue_size` not yet
    fitted wait in order in memory, their snapshots on disk), `log` hands fitted checkpoints
    to the loggers, `close` waits for the queue or (wait=False) stops the worker within
    seconds, leaving what is unfitted for `tracker fit`."""

    def __init__(
        self,
        run_dir: RunDir,
        run: str,
        layers: list[str],
        sae: SAEConfig,
        match: MatchConfig,
        *,
        queue_size: int = 64,
        threads: int | None = None,
    ) -> None:
        self.run_dir, self.run, self.layers = run_dir, run, layers
        self.queue_size = queue_size
        self.submitted: list[int] = []
        self.done: set[tuple[str, int]] = set()
        self.worker_threads: int | None = None
        """The CPU threads the worker reported it fits with."""
        self._summaries: list[tuple[str, int, dict[str, float]]] = []
        self._waiting: list[int] = []
        self._in_flight = 0
        self._ended = False
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        module, function = SERVE.split(":")
        code = f"from {module} import {function}; {function}({to_worker_r}, {from_worker_w})"
        self._process = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(to_worker_r, from_worker_w),
            env=env,
            start_new_session=True,  # the terminal's Ctrl-C is for training, which stops it
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._send = Connection(to_worker_w, readable=False)
        self._recv = Connection(from_worker_r, writable=False)
        level = logging.getLogger("tracker").getEffectiveLevel()
        self._message(WorkerSpec(str(run_dir.path), run, layers, sae, match, threads, level))

    def submit(self, step: int) -> None:
        self.submitted.append(step)
        self._pump()
        if self._waiting or self._in_flight >= self.queue_size:
            if not self._waiting:
                log.warning(
                    "fit queue full at step %d: later snapshots wait for training's end", step
                )
            self._waiting.append(step)
            return
        self._in_flight += self._message(step)

    def log(self, loggers: Sequence[Any]) -> None:
        """Each checkpoint written since the last call, through `loggers`, at its step."""
        log_summaries(self.drain(), loggers)

    def drain(self) -> list[tuple[str, int, dict[str, float]]]:
        self._pump()
        out, self._summaries = self._summaries, []
        return out

    def close(self, wait: bool = True) -> None:
        """wait=True: fit every submitted step, then let the worker end. wait=False (Ctrl-C,
        an error, or at_end="leave"): no new step is started; the fit under way gets a few
        seconds, then the worker is stopped (a checkpoint is written whole or not at all)."""
        if wait:
            for step in self._waiting:
                self._message(step)
            self._waiting = []
            self._message(None)
            while not self._ended:  # in slices: Ctrl-C is heard
                self._pump(timeout=0.5)
        else:
            self._message("abandon")
            deadline = time.monotonic() + STOP_SECONDS
            while not self._ended and time.monotonic() < deadline:
                self._pump(timeout=0.1)
            if not self._ended:
                log.warning(
                    "tracker: a fit was still running when training stopped; its worker is "
                    "stopped (its checkpoint is written whole or not at all)"
                )
        self._stop_process()
        warn_missing(self.run, self.run_dir, self.missing())

    def missing(self) -> list[int]:
        return missing_steps(self.submitted, self.layers, self.done)

    def _message(self, message: object) -> bool:
        """Send to the worker; False when it is gone (never blocks on a dead one)."""
        try:
            self._send.send(message)
            return True
        except (BrokenPipeError, OSError):
            self._ended = True
            return False

    def _pump(self, timeout: float = 0.0) -> None:
        """Take in what the worker said, waiting up to `timeout` for the first word."""
        try:
            while not self._ended and self._recv.poll(timeout):
                timeout = 0.0
                self._take(self._recv.recv())
        except (EOFError, OSError):  # the worker is gone
            self._ended = True

    def _take(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            self.worker_threads = message[1]
        elif kind == "log":
            record = message[1]
            logging.getLogger(record.name).handle(record)
        elif kind == "done":
            _, layer, step, numbers = message
            self.done.add((layer, step))
            self._summaries.append((layer, step, numbers))
        elif kind == "step":
            self._in_flight -= 1
            if self._waiting and self._in_flight < self.queue_size:
                self._in_flight += self._message(self._waiting.pop(0))
        elif kind == "end":
            self._ended = True

    def _stop_process(self) -> None:
        if self._process.poll() is None and not self._ended:
            self._process.terminate()
        try:
            self._process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._pump()
        self._send.close()
        self._recv.close()


class _Forward(logging.handlers.QueueHandler):
    """Sends each log record to the training process instead of printing it here."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.connection = connection

    def enqueue(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):  # the training process is gone: nobody to tell
            self.connection.send(("log", record))


def serve(read_fd: int, write_fd: int) -> None:
    """The worker process: fit each step it is sent, in order, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    with contextlib.suppress(AttributeError, OSError):  # not on every system
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # fit on cycles training leaves idle
    steps = Connection(read_fd, writable=False)
    out = Connection(write_fd, readable=False)
    spec: WorkerSpec = steps.recv()
    logging.getLogger().addHandler(_Forward(out))
    logging.getLogger().setLevel(spec.log_level)
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    out.send(("ready", torch.get_num_threads()))
    try:
        fitter = SnapshotFitter(RunDir(spec.run_dir), spec.run, spec.layers, spec.sae, spec.match)
        pending: deque[object] = deque()
        while True:
            while not pending or steps.poll(0):  # all that was sent; block when idle
                pending.append(steps.recv())
            if "abandon" in pending:  # interrupted: what is left is for `tracker fit`
                break
            step = pending.popleft()
            if step is None:  # training ended: everything sent is fitted
                fitter.finish()
                break
            try:
                fitter.submit(int(step))  # type: ignore[call-overload]
            except Exception:  # the worker outlives any step: training must never wait on it
                log.exception("fitting step %s failed", step)
            for layer, at, numbers in fitter.drain():
                out.send(("done", layer, at, numbers))
            out.send(("step", step))
        out.send(("end",))
    except (EOFError, OSError):  # the training process is gone
        return
    except Exception:
        log.exception("tracker: the fitting process stopped")
        out.send(("end",))
