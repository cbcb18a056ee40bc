"""Two runs side by side: which lineages both grow, and when.

Two runs of one model (two seeds, two learning rates) have their features in different
bases: a decoder cosine across runs means nothing. But when both ran the same probe inputs,
a feature of one and a feature of the other can be compared input by input: the correlation
of their activations over the probe set. At every step both runs checkpointed, their live
features are assigned one to one on that correlation (kept above a random dictionary's 99th
percentile and `MatchConfig.tau_match`), and the pairs are gathered per pair of lineages:
lineage 12 of run A and lineage 30 of run B stand for one feature from step 500 on; A first
had it at 292, B at 516.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl
from torch import Tensor

from tracker.assign import assign_dense
from tracker.calibration import chance_cosine
from tracker.comparison import activation_signal
from tracker.config import MatchConfig
from tracker.sae import SAE

PAIR_SCHEMA = {"step": pl.Int64, "lineage_a": pl.Int64, "lineage_b": pl.Int64, "corr": pl.Float64}


class Snapshot(NamedTuple):
    """One run's checkpoint: its SAE, its live features (feature, lineage) and its probe
    activations."""

    sae: SAE
    features: pl.DataFrame
    acts: Tensor


def pairs_at(step: int, a: Snapshot, b: Snapshot, config: MatchConfig) -> pl.DataFrame:
    """The one-to-one pairs of lineages whose features correlate over the probe set at
    `step`: step, lineage_a, lineage_b, corr."""
    if a.acts.shape[0] != b.acts.shape[0]:
        raise ValueError(
            f"step {step}: the runs' probe sets differ ({a.acts.shape[0]} and "
            f"{b.acts.shape[0]} rows); two runs are compared on the same probe inputs"
        )
    rows = [activation_signal(s.sae, s.features["feature"].to_list(), s.acts) for s in (a, b)]
    corr = rows[0] @ rows[1].T
    width = max(corr.shape[0], corr.shape[1], 1)
    chance = chance_cosine(min(a.acts.shape[0], 4096), width, config.chance_quantile)
    found = assign_dense(corr, max(config.tau_match, chance.quantile))
    lin_a, lin_b = (s.features["lineage"].to_numpy() for s in (a, b))
    return pl.DataFrame(
        {
            "step": np.full(len(found.prev), step),
            "lineage_a": lin_a[found.prev],
            "lineage_b": lin_b[found.next],
            "corr": corr[found.prev, found.next],
        },
        schema=PAIR_SCHEMA,
    )


def shared(pairs: pl.DataFrame, map_a: pl.DataFrame, map_b: pl.DataFrame) -> pl.DataFrame:
    """Per pair of lineages: the steps they were paired (first, last, how many), their mean
    correlation, and when each run first had its lineage (`map_a`, `map_b`: the readers'
    feature maps). Longest shared stories first."""
    first = {
        side: m.group_by("lineage").agg(pl.col("step").min().alias(f"first_{side}"))
        for side, m in (("a", map_a), ("b", map_b))
    }
    return (
        pairs.group_by("lineage_a", "lineage_b")
        .agg(
            pl.col("step").min().alias("shared_from"),
            pl.col("step").max().alias("shared_to"),
            pl.len().alias("steps"),
            pl.col("corr").mean().alias("mean_corr"),
        )
        .join(first["a"], left_on="lineage_a", right_on="lineage")
        .join(first["b"], left_on="lineage_b", right_on="lineage")
        .sort(["steps", "shared_from", "lineage_a"], descending=[True, False, False])
    )
