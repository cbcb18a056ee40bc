"""Choose the SAE's size by measurement: the widest dictionary that stays reproducible.

Events are only as good as the dictionaries they compare. A dictionary too wide for its
activations splits features differently at every seed, and the seed noise floor then caps
every event (measured on a 128-wide transformer layer: 8x expansion with k = 32 gave a stable
share of 0.0-0.001; 64-128 latents with k = 4 gave 0.86-0.90). `suggest` fits a small sweep
of (d_sae, k) on one checkpoint's activations, with two seeds each, and reports FVU, L0 and
the stable share (the share of live features a second seed also finds) per size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import polars as pl
from torch import Tensor

from tracker.checkpoint import fit_checkpoint
from tracker.checks import as_activations
from tracker.config import MatchConfig, SAEConfig

log = logging.getLogger(__name__)

REPRODUCIBLE = 0.6
"""Least stable share called reproducible: where most events can reach full confidence."""
EXPANSIONS = (1, 2, 4, 8)
KS = (4, 16)


def sweep_sizes(d: int) -> list[tuple[int, int]]:
    """(d_sae, k) pairs for inputs of width d: d_sae of 1, 2, 4 and 8 times d, each with
    k of 4 and 16 where k is below d_sae."""
    return [(e * d, k) for e in EXPANSIONS for k in KS if k < e * d]


def suggest(
    acts: Tensor,
    sizes: Sequence[tuple[int, int]] | None = None,
    sae: SAEConfig | None = None,
    match: MatchConfig | None = None,
) -> pl.DataFrame:
    """One row per (d_sae, k): fvu, l0, live features, stable_share, and `recommended` on the
    widest reproducible size (stable share >= REPRODUCIBLE; the lowest FVU among the
    widest). `sae` gives the other fields (steps, batch size, seed; seeds is set to 2)."""
    x = as_activations(acts, name="activations")
    base = replace(sae or SAEConfig(steps=300), seeds=2, progress=False)
    match = match or MatchConfig()
    rows = []
    for d_sae, k in sizes or sweep_sizes(x.shape[1]):
        cp = fit_checkpoint(0, x, replace(base, d_sae=d_sae, k=k), match)
        metrics = cp.sae.metrics
        assert metrics is not None
        live = int(cp.sae.live(match.min_frequency, match.min_activation).sum())
        rows.append(
            {
                "d_sae": d_sae,
                "k": k,
                "fvu": metrics.fvu,
                "l0": metrics.l0,
                "live": live,
                "stable_share": cp.stable_share if cp.stable_share is not None else 0.0,
            }
        )
        log.info("d_sae %d k %d: %s", d_sae, k, rows[-1])
    table = pl.DataFrame(rows)
    good = table.filter(pl.col("stable_share") >= REPRODUCIBLE)
    if good.is_empty():
        return table.with_columns(pl.lit(False).alias("recommended"))
    d_sae, k = good.sort(["d_sae", "fvu"], descending=[True, False]).select("d_sae", "k").row(0)
    return table.with_columns(
        ((pl.col("d_sae") == d_sae) & (pl.col("k") == k)).alias("recommended")
    )
