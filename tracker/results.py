"""What matching two checkpoints finds: edges and events, and their table schemas."""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from tracker.calibration import Chance

EDGE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.Int64,
    "target": pl.Int64,
    "cosine": pl.Float64,
    "act_corr": pl.Float64,
    "kind": pl.Utf8,
    "gap": pl.Int64,
}
EVENT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "kind": pl.Utf8,
    "sources": pl.List(pl.Int64),
    "targets": pl.List(pl.Int64),
    "confidence": pl.Float64,
    "match_confidence": pl.Float64,
    "score": pl.Float64,
    "witness": pl.Utf8,
    "presence": pl.Float64,
    "presence_corr": pl.Float64,
    "carried": pl.Float64,
    "gap": pl.Int64,
    "seeds": pl.Int64,
    "confirmed": pl.Int64,
}


class Edge(NamedTuple):
    """One edge found between two checkpoints, in live-row indices."""

    prev: int
    """Live row of the earlier side."""
    next: int | None
    """Live row of the later side; None for a `missed` edge."""
    kind: str
    corr: float | None = None
    """Activation correlation for a `missed` edge (the witness's), else computed at the end."""


class Event(NamedTuple):
    """One event found between two checkpoints, in live-row indices, with its evidence."""

    kind: str
    prev: list[int]
    next: list[int]
    confidence: float
    match_confidence: float
    score: float
    witness: str | None
    presence: float | None
    presence_corr: float | None
    carried: float | None
    seeds: int | None


class MatchResult(NamedTuple):
    """Edges and events between two checkpoints, with the calibration they were read at."""

    edges: pl.DataFrame
    """source, target (feature indices of each SAE), cosine, act_corr (null without
    activations), kind ("continuation", "split" or "merge")."""
    events: pl.DataFrame
    """kind (birth, death, split, merge), sources, targets, confidence (see
    `event_confidence`), match_confidence (what matching alone gave it, before the witness
    and the seeds), score (R² gain for split/merge, best cosine to the other side for
    birth/death), and the evidence: witness
    ("absent": the activations agree, "present": they contradict, null without
    activations), presence and presence_corr (the witness's strength and correlation: of a
    born feature in the earlier activations, of a dying one in the later, of the least
    present split child / merge parent), carried (how strongly the other checkpoint's
    activations carry that feature's pattern in any direction, as a share of its own: see
    `witness.carried`), gap (checkpoints skipped, see `lineage.Chain`),
    seeds (2 when every feature of the event is stable, found by most of the fitted seeds;
    else 1) and confirmed
    (set by `chain.Chain`: the step where another seed found the lineage of a feature this
    checkpoint's second seed did not)."""
    tau: float
    """The continuation threshold used: max(tau_match, chance quantile)."""
    chance: Chance
    note: str = ""
    """Why the result is empty, when it is."""
    signal: str = "decoder"
    """What features were matched on: "decoder" cosine or "activation" correlation."""
