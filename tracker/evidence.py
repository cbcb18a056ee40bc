"""Each event's evidence in words, as the viewer's tables show it."""

from __future__ import annotations

import polars as pl


def with_evidence(events: pl.DataFrame) -> pl.DataFrame:
    """`events` with an `evidence` column saying in words what witnessed each one: where
    the activations were checked (before a birth or split, after a death or merge), the
    feature's strength and pattern correlation there, the seeds (and where the lineage was
    confirmed) and the gap."""
    if events.is_empty() or "witness" not in events.columns:
        return events.with_columns(pl.lit(None, pl.Utf8).alias("evidence"))
    checked_at = (
        pl.when(pl.col("kind").is_in(["birth", "split"]))
        .then(pl.col("prev_step"))
        .otherwise(pl.col("step"))
    )
    said = (
        pl.when(pl.col("witness") == "absent")
        .then(pl.lit("activations agree: absent at step "))
        .otherwise(pl.lit("activations disagree: present at step "))
    )
    text = pl.concat_str(
        said,
        checked_at.cast(pl.Utf8),
        pl.lit(" (strength "),
        pl.col("presence").round(2).cast(pl.Utf8),
        pl.lit(", corr "),
        pl.col("presence_corr").round(2).cast(pl.Utf8),
        pl.when(pl.col("carried").is_not_nan())
        .then(pl.concat_str(pl.lit(", carried "), pl.col("carried").round(2).cast(pl.Utf8)))
        .otherwise(pl.lit("")),
        pl.lit(")"),
        pl.when(pl.col("seeds") == 2)
        .then(pl.lit("; stable across seeds"))
        .when(pl.col("seeds") == 1)
        .then(pl.lit("; not stable across seeds"))
        .otherwise(pl.lit("")),
        pl.when(pl.col("confirmed").is_not_null())
        .then(
            pl.concat_str(
                pl.lit(", its lineage stable at step "), pl.col("confirmed").cast(pl.Utf8)
            )
        )
        .otherwise(pl.lit("")),
        pl.when(pl.col("gap") > 0)
        .then(
            pl.concat_str(
                pl.lit("; across "), pl.col("gap").cast(pl.Utf8), pl.lit(" missed checkpoint(s)")
            )
        )
        .otherwise(pl.lit("")),
    )
    return events.with_columns(
        pl.when(pl.col("witness").is_null())
        .then(pl.lit("no activations to check"))
        .otherwise(text)
        .alias("evidence")
    )
