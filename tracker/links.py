"""What a chain of checkpoints keeps and hands out: lineage ids, lost lineages, and one
link per checkpoint added."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from torch import Tensor

from tracker.checkpoint import Checkpoint
from tracker.config import MatchConfig
from tracker.results import MatchResult
from tracker.sae import SAE

PARENT_SCHEMA = {"lineage": pl.Int64, "parent": pl.Int64, "kind": pl.Utf8, "step": pl.Int64}


class LineageIds:
    """Lineage ids, advanced one checkpoint at a time: a continuation keeps its parent's
    lineage; births, split children and merge results start new ones, and splits and merges
    record their parents. Live features are those that take part in `match`
    (`SAE.live` at the config's thresholds)."""

    def __init__(self, config: MatchConfig | None = None) -> None:
        self.config = config or MatchConfig()
        self.next_id = 0

    def _new(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _live(self, sae: SAE) -> list[int]:
        return (
            sae.live(self.config.min_frequency, self.config.min_activation)
            .nonzero()
            .flatten()
            .tolist()
        )

    def start(self, sae: SAE) -> dict[int, int]:
        return {feature: self._new() for feature in self._live(sae)}

    def advance(
        self,
        before: dict[int, int],
        result: MatchResult,
        sae: SAE,
        step: int,
        carried: dict[int, int] | None = None,
        events: pl.DataFrame | None = None,
    ) -> tuple[dict[int, int], list[dict[str, object]]]:
        """(feature -> lineage at this step, parent rows) after `result`; `carried` maps
        features that continue a lineage across a gap to that lineage, and `events` (default
        `result.events`) are the events as the chain reads them."""
        now: dict[int, int] = dict(carried or {})
        parents: list[dict[str, object]] = []
        for row in result.edges.filter(pl.col("kind") == "continuation").iter_rows(named=True):
            now[row["target"]] = before[row["source"]]
        for row in (result.events if events is None else events).iter_rows(named=True):
            for target in row["targets"]:
                now[target] = self._new()
                parents += [
                    {
                        "lineage": now[target],
                        "parent": before[source],
                        "kind": row["kind"],
                        "step": step,
                    }
                    for source in row["sources"]
                ]
        for feature in self._live(sae):  # only when a side had nothing live to match
            if feature not in now:
                now[feature] = self._new()
        return now, parents


@dataclass
class Lost:
    """A lineage whose feature the last SAE(s) missed while the activations still show it."""

    lineage: int
    seen: Checkpoint
    """The checkpoint where a SAE last had it."""
    feature: int
    z: Tensor
    """[n] its activations on its own checkpoint."""
    missed: int = 1
    """Checkpoints in a row without it so far."""
    died: bool = False
    """The last checkpoint's activations no longer showed it (a witnessed death, which the
    next checkpoint may still take back)."""


@dataclass
class Link:
    """One checkpoint added to a chain."""

    step: int
    ids: dict[int, int]
    """feature -> lineage id of every live feature of this checkpoint."""
    result: MatchResult | None = None
    """The match with the previous checkpoint (None for the first)."""
    edges: pl.DataFrame = field(default_factory=pl.DataFrame)
    """EDGE_SCHEMA plus prev_step: the pairwise edges, `missed` edges of lost features and
    continuations across a gap (whose prev_step is where the feature was last seen)."""
    events: pl.DataFrame = field(default_factory=pl.DataFrame)
    """EVENT_SCHEMA plus prev_step: the pairwise events, less births that continue a lost
    lineage, plus deaths of lost features."""
    parents: list[dict[str, object]] = field(default_factory=list)
    revised: pl.DataFrame | None = None
    """The previous link's events again, when adding this checkpoint confirmed some of its
    births (`MatchConfig.confirm`) or found again features whose deaths it had witnessed;
    that link's `events` are replaced by them."""
    checkpoint: Checkpoint | None = None
    """The checkpoint added (None for a link restored by `Chain.resume`)."""

    def take_back_deaths(self, ends: list[tuple[int, int]]) -> None:
        """Drop from `events` the deaths of features (last seen step, feature) in `ends`: a
        later checkpoint found them again (see `Chain._refind`)."""
        gone = set(ends)
        rows = self.events.iter_rows(named=True)
        kept = [
            e for e in rows if e["kind"] != "death" or (e["prev_step"], e["sources"][0]) not in gone
        ]
        self.events = pl.DataFrame(kept, schema=self.events.schema)
