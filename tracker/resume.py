"""Resuming a chain from the store: a training run resumed from a Lightning checkpoint goes
on matching where the stored lineage stopped, as if it had never stopped."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import torch
from torch import Tensor

from tracker.chain import Chain
from tracker.checkpoint import Checkpoint
from tracker.checks import as_activations
from tracker.links import Lost
from tracker.reader import Reader
from tracker.results import EVENT_SCHEMA


class StoredRun:
    """One (run, layer) of a lineage store, with its snapshots' activations (`load_acts`)."""

    def __init__(
        self, reader: Reader, run: str, layer: str, load_acts: Callable[[int], Tensor]
    ) -> None:
        self.reader, self.run, self.layer, self.load_acts = reader, run, layer, load_acts

    def resume(self, chain: Chain, before: int) -> None:
        """Continue from the last stored checkpoint before step `before` (a resumed training
        run): its SAE, lineage ids and stable features from the store, its activations from
        `load_acts(step)`, the features its SAEs had lost (still followed across the gap) and
        the checkpoints a late birth may be dated back to; new lineage ids continue after
        the largest stored one."""
        reader = self.reader
        stored = reader.checkpoints(self.run, self.layer).filter(pl.col("step") < before)
        if stored.is_empty():
            return
        steps = stored["step"].to_list()
        last = steps[-1]
        prev = self.stored(last)
        features = reader.features(self.run, self.layer, last)
        ids = dict(zip(features["feature"].to_list(), features["lineage"].to_list(), strict=True))
        sql = "FROM features WHERE run = ? AND layer = ? AND step <= ?"
        where = [self.run, self.layer, last]
        # Ids go on from the checkpoint resumed, not from later ones about to be replaced.
        top = reader.sql(
            f"SELECT max(lineage) AS m FROM (SELECT lineage {sql} UNION ALL SELECT lineage "
            "FROM lineages WHERE run = ? AND layer = ? AND step <= ?)",
            where * 2,
        )["m"][0]
        stable_at = reader.sql(
            f"SELECT lineage, max(step) AS step {sql} AND stable GROUP BY lineage", where
        )
        events = reader.events(self.run, self.layer, last)
        schema = {**EVENT_SCHEMA, "prev_step": pl.Int64}
        window = steps[-1 - chain.config.max_gap : -1] if chain.config.max_gap else []
        older = {step: self.stored(step) for step in window}
        chain.resume(
            prev,
            ids,
            int(top) + 1 if top is not None else 0,
            dict(zip(stable_at["lineage"].to_list(), stable_at["step"].to_list(), strict=True)),
            events.select([pl.col(c).cast(t) for c, t in schema.items()]),
            stored["prev_step"][-1],
            lost=self.lost(last, older),
            history=list(older.values()),
            dead=self.dead(last, older) if chain.config.max_gap else [],
        )

    def stored(self, step: int) -> Checkpoint:
        """A stored checkpoint: its SAE and stable features from the store, its activations
        from `load_acts`."""
        sae = self.reader.sae(self.run, self.layer, step)
        features = self.reader.features(self.run, self.layer, step)
        stable = torch.zeros(sae.d_sae, dtype=torch.bool)
        stable[features.filter(pl.col("stable"))["feature"].to_list()] = True
        share = self.reader.checkpoints(self.run, self.layer).filter(pl.col("step") == step)
        return Checkpoint(step, sae, as_activations(self.load_acts(step)), stable,
                          share["stable_share"][0])  # fmt: skip

    def lost(self, last: int, older: dict[int, Checkpoint]) -> list[Lost]:
        """The features lost at `last` (its `missed` edges): where each was last seen, and
        for how many checkpoints it has been missed."""
        missed = self.reader.sql(
            "SELECT e.prev_step, e.source, e.gap, f.lineage FROM edges e JOIN features f ON "
            "f.run = e.run AND f.layer = e.layer AND f.step = e.prev_step AND f.feature = "
            "e.source WHERE e.run = ? AND e.layer = ? AND e.step = ? AND e.kind = 'missed'",
            [self.run, self.layer, last],
        )
        return self._followed(missed, older, died=False)

    def dead(self, last: int, older: dict[int, Checkpoint]) -> list[Lost]:
        """The features whose death `last` witnessed (the next checkpoint may find them
        again): where each was last seen, and the checkpoints missed since."""
        deaths = self.reader.sql(
            "SELECT e.prev_step, e.sources[1] AS feature, e.gap, f.lineage FROM events e JOIN "
            "features f ON f.run = e.run AND f.layer = e.layer AND f.step = e.prev_step AND "
            "f.feature = e.sources[1] WHERE e.run = ? AND e.layer = ? AND e.step = ? AND "
            "e.kind = 'death' AND e.witness = 'absent' ORDER BY e.prev_step, feature",
            [self.run, self.layer, last],
        )
        return self._followed(deaths, older, died=True)

    def _followed(self, rows: pl.DataFrame, older: dict[int, Checkpoint], died: bool) -> list[Lost]:
        """Lineages followed past where they were last seen, from rows (seen step, feature,
        gap, lineage): missed `gap` checkpoints so far, or one more where `last` witnessed
        their death (which the next checkpoint may take back)."""
        followed = []
        for seen_step, feature, gap, lineage in rows.iter_rows():
            seen = older.get(seen_step) or self.stored(seen_step)
            z = seen.sae.latents(seen.acts, columns=torch.tensor([feature]))[:, 0]
            followed.append(Lost(lineage, seen, feature, z, missed=gap + died, died=died))
        return followed
