"""Fitting snapshots while training runs: inline, or in a background worker thread."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from tracker.checkpoint import Checkpoint
from tracker.checks import torch_threads
from tracker.config import MatchConfig, SAEConfig
from tracker.pace import Pacer, Stopped, paced
from tracker.pipeline import (
    DB_NAME,
    Analyzer,
    Executor,
    metrics_frame,
    read_snapshot,
    write_probe,
)
from tracker.reader import Reader
from tracker.remote import RayFits
from tracker.snapshots import RunDir, scan_activation_dir
from tracker.store import Writer

log = logging.getLogger(__name__)

_STOP = -1
STOP_SECONDS = 5.0
"""How long an interrupted run waits for the fit under way."""


class SnapshotFitter:
    """Feeds each written snapshot step of a run to one `Analyzer` per layer.

    Inline, `submit` does the work at once. In the background a worker thread takes steps
    from a bounded queue; `submit` never waits: once the queue is full, later steps wait in
    order in memory (the snapshots are on disk) and are fitted when training ends. Each step
    is read back from its file, so every mode fits exactly what `tracker fit` would.
    """

    def __init__(
        self,
        run_dir: RunDir,
        run: str,
        layers: list[str],
        sae: SAEConfig,
        match: MatchConfig,
        *,
        background: bool,
        queue_size: int = 64,
        threads: int | None = None,
        share: float = 1.0,
        executor: Executor = "local",
        address: str | None = None,
    ) -> None:
        self.run_dir, self.run = run_dir, run
        self.pacer = Pacer(share)
        """In the background: the worker's share of one core's time while training runs
        (it sleeps between SAE steps); 1.0 from training's end on."""
        self.threads = threads
        """CPU threads for fitting (None: torch's setting); in the background, the worker
        thread's own count, so training's is untouched."""
        self.writer = Writer(run_dir.path / DB_NAME)
        self.writer.write_run(
            run,
            {"sae": sae.to_dict(), "match": match.to_dict(), "source": str(run_dir.activations)},
        )
        write_probe(self.writer, run, run_dir)
        self.analyzers = {layer: Analyzer(self.writer, run, layer, sae, match) for layer in layers}
        self.failures = 0
        self.submitted: list[int] = []
        self.done: set[tuple[str, int]] = set()
        """(layer, step) of every checkpoint written."""
        self.summaries: queue.SimpleQueue[tuple[str, int, dict[str, float]]] = queue.SimpleQueue()
        """(layer, step, `pipeline.summary`) of each checkpoint written, for the logger."""
        self._resumed = False
        self._stopping = False
        self._finished = threading.Event()
        """Set when the worker ends. Waited on instead of Thread.join: a Ctrl-C that lands
        inside join() can leave the thread marked as ended while it still runs."""
        self._queue: queue.Queue[int] | None = None
        self._waiting: list[int] = []
        self._worker: threading.Thread | None = None
        self._fits: RayFits | None = None
        """executor="ray" (background only): the worker thread submits Ray fits."""
        if executor == "ray":
            self._fits = RayFits(sae, match, address=address)
        if background:
            self._queue = queue.Queue(maxsize=queue_size)
            self._worker = threading.Thread(target=self._work, name="tracker-fit", daemon=True)
            self._worker.start()

    def log(self, loggers: Sequence[Any]) -> None:
        """Each checkpoint written since the last call, through `loggers` (a Lightning
        Trainer's), at its own step: `tracker/<layer>/<births|deaths|splits|merges|
        live_features|stable_share|fvu>`."""
        for layer, step, numbers in self.drain():
            metrics = {f"tracker/{layer}/{name}": value for name, value in numbers.items()}
            for logger in loggers:
                logger.log_metrics(metrics, step=step)

    def drain(self) -> list[tuple[str, int, dict[str, float]]]:
        """The summaries of checkpoints written since the last call (thread-safe)."""
        out = []
        while True:
            try:
                out.append(self.summaries.get_nowait())
            except queue.Empty:
                return out

    def submit(self, step: int) -> None:
        self.submitted.append(step)
        if self._queue is None:
            with torch_threads(self.threads):
                self._process(step)
            return
        if not self._waiting:
            try:
                self._queue.put_nowait(step)
                return
            except queue.Full:
                log.warning(
                    "fit queue full at step %d: later snapshots wait for training's end", step
                )
        self._waiting.append(step)

    def close(self, wait: bool = True) -> None:
        """Finish every submitted step (training is over, so waiting is fine), then warn
        about any checkpoint left unfitted, with the command that completes the lineage.
        With wait=False (training was interrupted: Ctrl-C, an error) the steps not yet
        started are left on disk for `tracker fit`, and the fit under way stops at its next
        SAE step, unwritten (matching and writing, which have no such point, are given a few
        seconds before the worker, a daemon thread, is left to end with the process)."""
        self.pacer.release()  # training is over: the cores are fitting's
        if self._queue is not None and self._worker is not None:
            if wait:
                for step in [*self._waiting, _STOP]:
                    self._put(step)
                while not self._finished.wait(timeout=0.5):  # in slices: Ctrl-C is heard
                    pass
            else:
                self._stopping = True
                self.pacer.stop()  # the fit under way ends at its next SAE step
                self._put(_STOP)
                if not self._finished.wait(timeout=STOP_SECONDS):
                    log.warning(
                        "tracker: a fit was still running when training stopped; it is left "
                        "to end with the process (its checkpoint is written whole or not at all)"
                    )
            self._waiting = []
            self._queue = None
            if not self._finished.is_set():  # the fit it was left to: never touch its file
                self._warn_missing()
                return
        if self._fits is not None:
            self._fits.close()
        self._record(lambda: self.writer.write_metrics(self.run, metrics_frame(self.run_dir)))
        self._record(lambda: self.writer.finish_run(self.run))
        self._warn_missing()

    def missing(self) -> list[int]:
        """Submitted steps of which some layer's checkpoint was not written."""
        wanted = {(layer, step) for step in self.submitted for layer in self.analyzers}
        return sorted({step for _, step in wanted - self.done})

    def _warn_missing(self) -> None:
        missing = self.missing()
        if missing:
            log.warning(
                "tracker: %d checkpoint(s) of run %s are not in its lineage (steps %s; see the "
                "log above and the failures table); their snapshots are on disk: complete the "
                "lineage with `tracker fit %s`",
                len(missing),
                self.run,
                ", ".join(map(str, missing)),
                self.run_dir.path,
            )

    def _put(self, step: int) -> bool:
        """Queue a step for the worker; False when the worker is gone (so never blocks on a
        dead one)."""
        assert self._queue is not None and self._worker is not None
        while not self._finished.is_set():
            try:
                self._queue.put(step, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            if self.threads is not None:
                torch.set_num_threads(self.threads)  # this thread's count only
            with paced(self.pacer):
                if self._fits is None:
                    self._work_through()
                else:
                    self._work_through_ray()
        except Stopped:
            log.info("tracker: the fit under way was stopped; its snapshot is left on disk")
        finally:
            self._finished.set()

    def _work_through(self) -> None:
        queue = self._queue  # its own reference: close() may let go of it before the end
        assert queue is not None
        while (step := queue.get()) != _STOP:
            if self._stopping:  # interrupted: what is left is for `tracker fit`
                continue
            try:
                self._process(step)
            except Exception:  # the worker outlives any step: training must never wait on it
                self.failures += 1
                log.exception("fitting step %d failed", step)

    def _work_through_ray(self) -> None:
        """Ray mode: submit the fits of every step queued, then take them in order, taking
        in the steps queued meanwhile (so later snapshots' fits run while one is matched)."""
        fits, steps = self._fits, self._queue
        assert fits is not None and steps is not None
        ended = False

        def pull(block: bool) -> None:
            nonlocal ended
            if self._stopping:  # interrupted: leave the fits in flight (close cancels them)
                raise Stopped
            while not ended:
                try:
                    step = steps.get(block=block)
                except queue.Empty:
                    return
                block = False
                ended = step == _STOP
                if not ended and not self._stopping:
                    try:
                        self._submit_ray(step)
                    except Exception:  # as in-process: the worker outlives any step
                        self.failures += 1
                        log.exception("submitting step %d to Ray failed", step)

        while not self._stopping and (len(fits) or not ended):
            if not len(fits):
                pull(block=True)
                continue
            layer, step, fitted = fits.take(poll=lambda: pull(block=False))
            if not self._stopping:
                self._add(layer, step, fitted)
            if not self._stopping and layer == list(self.analyzers)[-1]:
                self._record(
                    lambda: self.writer.write_metrics(self.run, metrics_frame(self.run_dir))
                )

    def _submit_ray(self, step: int) -> None:
        assert self._fits is not None
        if not self._resumed:  # a resumed run's holes are fitted here first, in order
            self._resumed = True
            self._catch_up(step)
        for layer, analyzer in self.analyzers.items():
            prev = analyzer.chain.prev
            path = self.run_dir.activation_path(layer, step)
            self._fits.add(layer, step, path, None if prev is None else prev.sae)

    def _record(self, write: Callable[[], None]) -> None:
        """A write of a record (failure, metrics) whose own failure is logged, not raised."""
        try:
            write()
        except Exception:
            log.exception("tracker: could not write to %s", self.writer.path)

    def _process(self, step: int) -> None:
        if not self._resumed:
            self._resumed = True
            self._catch_up(step)
        for layer in self.analyzers:
            self._add(layer, step)
        if not self._stopping:  # once interrupted, the main thread has the last word
            self._record(lambda: self.writer.write_metrics(self.run, metrics_frame(self.run_dir)))

    def _catch_up(self, step: int) -> None:
        """Before the first step: go on from what the store holds, first fitting (in order)
        every snapshot on disk before `step` that is not in it, as a crashed run leaves
        them. From the first such hole on, the checkpoints are fitted again, so the lineage
        has no seam."""
        stored = set(
            Reader(self.writer.path)
            .sql("SELECT layer, step FROM checkpoints WHERE run = ?", [self.run])
            .iter_rows()
        )
        snapshots = scan_activation_dir(self.run_dir.activations)  # `step` is there at least
        for layer, analyzer in self.analyzers.items():
            on_disk = sorted(s for s in snapshots.get(layer, {}) if s < step)
            holes = [s for s in on_disk if (layer, s) not in stored]
            start = holes[0] if holes else step
            analyzer.resume(start, partial(read_snapshot, self.run_dir, layer))
            if holes:
                log.warning(
                    "tracker: layer %s: fitting %d snapshot(s) on disk the lineage lacks "
                    "(steps %s) before step %d",
                    layer,
                    len(holes),
                    ", ".join(map(str, holes)),
                    step,
                )
            for earlier in (s for s in on_disk if s >= start):
                self.submitted.append(earlier)
                self._add(layer, earlier)

    def _add(self, layer: str, step: int, fitted: Checkpoint | str | None = None) -> None:
        """Fit (or take `fitted`: a Ray fit, or the error that ended it), chain and write
        one checkpoint; a failure is logged and recorded."""
        try:
            if isinstance(fitted, str):
                raise RuntimeError(f"the fit failed on Ray: {fitted}")
            acts = read_snapshot(self.run_dir, layer, step)
            numbers = self.analyzers[layer].add(step, acts, fitted)
            self.done.add((layer, step))
            self.summaries.put((layer, step, numbers))
        except Exception as err:  # a failed fit must not stop training
            self.failures += 1
            log.exception("fitting layer %s at step %d failed", layer, step)
            error = f"{type(err).__name__}: {err}"
            self._record(partial(self.writer.write_failure, self.run, layer, step, error))
