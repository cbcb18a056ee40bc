"""Fitting snapshots as they are written: one step at a time, in the training loop (inline)
or in the background fitting process (`tracker.worker`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from tracker.checks import torch_threads
from tracker.config import MatchConfig, SAEConfig
from tracker.pipeline import DB_NAME, Analyzer, metrics_frame, read_snapshot, write_probe
from tracker.reader import Reader
from tracker.snapshots import RunDir, scan_activation_dir
from tracker.store import Writer

log = logging.getLogger(__name__)


def log_summaries(
    summaries: Sequence[tuple[str, int, dict[str, float]]], loggers: Sequence[Any]
) -> None:
    for layer, step, numbers in summaries:
        metrics = {f"tracker/{layer}/{name}": value for name, value in numbers.items()}
        for logger in loggers:
            logger.log_metrics(metrics, step=step)


def missing_steps(
    submitted: Sequence[int], layers: Iterable[str], done: set[tuple[str, int]]
) -> list[int]:
    wanted = {(layer, step) for step in submitted for layer in layers}
    return sorted({step for _, step in wanted - done})


def warn_missing(run: str, run_dir: RunDir, missing: Sequence[int]) -> None:
    if missing:
        log.warning(
            "tracker: %d checkpoint(s) of run %s are not in its lineage (steps %s; see the "
            "log above and the failures table); their snapshots are on disk: complete the "
            "lineage with `tracker fit %s`",
            len(missing),
            run,
            ", ".join(map(str, missing)),
            run_dir.path,
        )


class SnapshotFitter:
    """Feeds each written snapshot step of a run to one `Analyzer` per layer, at once.

    Inline fitting drives it from the training loop; background fitting drives it in a
    separate process (`tracker.worker`). Each step is read back from its file, so every mode
    fits exactly what `tracker fit` would.
    """

    def __init__(
        self,
        run_dir: RunDir,
        run: str,
        layers: list[str],
        sae: SAEConfig,
        match: MatchConfig,
        *,
        threads: int | None = None,
    ) -> None:
        self.run_dir, self.run = run_dir, run
        self.threads = threads
        """CPU threads for fitting (None: torch's setting), restored after each step."""
        self.writer = Writer(run_dir.path / DB_NAME)
        self.writer.write_run(
            run,
            {"sae": sae.to_dict(), "match": match.to_dict(), "source": str(run_dir.activations)},
        )
        write_probe(self.writer, run, run_dir)
        self.analyzers = {layer: Analyzer(self.writer, run, layer, sae, match) for layer in layers}
        self.submitted: list[int] = []
        self.done: set[tuple[str, int]] = set()
        """(layer, step) of every checkpoint written."""
        self.summaries: list[tuple[str, int, dict[str, float]]] = []
        """(layer, step, `pipeline.summary`) of each checkpoint written, for the logger."""
        self._resumed = False

    def log(self, loggers: Sequence[Any]) -> None:
        """Each checkpoint written since the last call, through `loggers` (a Lightning
        Trainer's), at its own step: `tracker/<layer>/<births|deaths|splits|merges|
        live_features|stable_share|fvu>`."""
        log_summaries(self.drain(), loggers)

    def drain(self) -> list[tuple[str, int, dict[str, float]]]:
        """The summaries of checkpoints written since the last call."""
        out, self.summaries = self.summaries, []
        return out

    def submit(self, step: int) -> None:
        self.submitted.append(step)
        with torch_threads(self.threads):
            self._process(step)

    def close(self, wait: bool = True) -> None:
        """Record the run's metrics, then warn about any checkpoint left unfitted, with the
        command that completes the lineage."""
        self.finish()
        warn_missing(self.run, self.run_dir, self.missing())

    def finish(self) -> None:
        self._record(lambda: self.writer.write_metrics(self.run, metrics_frame(self.run_dir)))

    def missing(self) -> list[int]:
        """Submitted steps of which some layer's checkpoint was not written."""
        return missing_steps(self.submitted, self.analyzers, self.done)

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
        self.finish()

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

    def _add(self, layer: str, step: int) -> None:
        try:
            numbers = self.analyzers[layer].add(step, read_snapshot(self.run_dir, layer, step))
            self.done.add((layer, step))
            self.summaries.append((layer, step, numbers))
        except Exception as err:  # a failed fit must not stop training
            log.exception("fitting layer %s at step %d failed", layer, step)
            error = f"{type(err).__name__}: {err}"
            self._record(partial(self.writer.write_failure, self.run, layer, step, error))
