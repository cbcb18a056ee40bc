"""Track confirmation (`MatchConfig.confirm`): an event the seed noise floor alone capped is
confirmed when another seed finds the lineage at the next checkpoint (a birth) or found it at
the one before (a death), as a multi-object tracker confirms a tentative track."""

from __future__ import annotations

import polars as pl

from tracker.checkpoint import Checkpoint
from tracker.config import MatchConfig
from tracker.links import Link
from tracker.witness import WITNESSED, event_confidence


class Confirmations:
    """What a chain remembers to confirm events: where each lineage was last stable."""

    def __init__(self, config: MatchConfig) -> None:
        self.config = config
        self.stable_at: dict[int, int] = {}
        """lineage -> the last step where another seed also found its feature."""
        self.before: dict[int, int] = {}
        """step -> the step of the checkpoint added before it."""

    def resume(self, step: int, stable_at: dict[int, int] | None, prev_step: int | None) -> None:
        """Continue after stored checkpoint `step` (added after `prev_step`)."""
        self.stable_at = dict(stable_at or {})
        self.before = {} if prev_step is None else {step: prev_step}

    def note_stable(self, cp: Checkpoint, ids: dict[int, int]) -> None:
        if cp.stable is not None:
            for feature, lineage in ids.items():
                if bool(cp.stable[feature]):
                    self.stable_at[lineage] = cp.step

    def _just_before(self, lineage: int, step: int) -> int | None:
        """The checkpoint before `step` when another seed found `lineage` there, else None
        (the mirror of a birth's confirmation: one checkpoint, not any time before)."""
        at = self.stable_at.get(lineage)
        return at if at is not None and at == self.before.get(step) else None

    def _confirmed(self, row: dict[str, object], at: int | None) -> dict[str, object] | None:
        """`row` confirmed at step `at`: a witnessed event the noise floor alone capped,
        raised to the confidence matching gave it; None when it is no such event or there
        is no `at`."""
        if (
            at is None
            or not self.config.confirm
            or row["seeds"] != 1
            or row["witness"] != WITNESSED
            or row["confirmed"] is not None
        ):
            return None
        conf = event_confidence(row["match_confidence"], WITNESSED, 2, self.config)  # type: ignore[arg-type]
        if conf <= row["confidence"]:  # type: ignore[operator]
            return None  # matching alone gave no more: nothing to confirm
        return row | {"confidence": conf, "confirmed": at}

    def death(self, row: dict[str, object], lineage: int, seen: int) -> dict[str, object]:
        """A death event `row` of `lineage`, last seen at step `seen`, confirmed if it can be."""
        return self._confirmed(row, self._just_before(lineage, seen)) or row

    def deaths(self, events: pl.DataFrame, before: dict[int, int]) -> pl.DataFrame:
        """Deaths of features whose lineage another seed found at the checkpoint before."""
        rows = list(events.iter_rows(named=True))
        for i, row in enumerate(rows):
            if row["kind"] == "death":
                rows[i] = self.death(row, before[row["sources"][0]], int(row["prev_step"]))
        return pl.DataFrame(rows, schema=events.schema)

    def births(self, last: Link | None, cp: Checkpoint) -> pl.DataFrame | None:
        """The previous link's events with its births confirmed where another seed finds
        the born lineage at `cp` (`last.events` replaced by them); None when none is."""
        if last is None or last.events.is_empty():
            return None
        rows = list(last.events.iter_rows(named=True))
        changed = False
        for i, row in enumerate(rows):
            born = last.ids.get(row["targets"][0]) if row["kind"] == "birth" else None
            if born is not None and self.stable_at.get(born) == cp.step:
                confirmed = self._confirmed(row, cp.step)
                if confirmed is not None:
                    rows[i], changed = confirmed, True
        if not changed:
            return None
        last.events = pl.DataFrame(rows, schema=last.events.schema)
        return last.events
