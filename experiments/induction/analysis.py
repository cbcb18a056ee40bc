"""What the replay reports: where the phase change is, by the model's own measures, and what
the lineage says around it (confident events per checkpoint in and out of it, and how many of
the features born there are copying or previous-token features)."""

from __future__ import annotations

from typing import Any

import polars as pl

from experiments.induction.config import LAYERS, InductionConfig
from experiments.induction.labels import IS_COPYING, IS_PREVIOUS
from tracker import MatchConfig
from tracker.reader import open_db


def phase_change(curves: pl.DataFrame) -> dict[str, Any] | None:
    """The steps over which the copying gain (first-copy loss minus repeat loss, in nats)
    rises from 10% to 90% of its largest value, and the step of its steepest rise; None
    when the gain never reaches 0.5 nats (no induction to speak of)."""
    wide = curves.pivot(on="name", index="step", values="value").sort("step")
    gain = (wide["first_copy_loss"] - wide["repeat_loss"]).to_list()
    steps = wide["step"].to_list()
    top = max(gain)
    if top < 0.5:
        return None
    onset = next(s for s, g in zip(steps, gain, strict=True) if g >= 0.1 * top)
    end = next(s for s, g in zip(steps, gain, strict=True) if g >= 0.9 * top)
    rises = [(gain[i + 1] - gain[i], steps[i + 1]) for i in range(len(gain) - 1)]
    return {"onset": onset, "end": end, "steepest": max(rises)[1], "gain": top}


def window(checkpoints: list[int], phase: dict[str, Any]) -> tuple[int, int]:
    """Checkpoint steps within one checkpoint of the phase change: from one before the last
    checkpoint at or before its onset to one after the first at or after its end."""
    before = max(i for i, s in enumerate(checkpoints) if s <= phase["onset"])
    after = min(
        (i for i, s in enumerate(checkpoints) if s >= phase["end"]), default=len(checkpoints) - 1
    )
    return checkpoints[max(before - 1, 0)], checkpoints[min(after + 1, len(checkpoints) - 1)]


def analyse(cfg: InductionConfig) -> dict[str, Any]:
    reader = open_db(cfg.db)
    curves = reader.metrics(cfg.run)
    measures = curves.filter(pl.col("name").is_in(["repeat_loss", "first_copy_loss"]))
    phase = phase_change(measures)
    shares = reader.table("induction_features", cfg.run)
    final = curves.filter(pl.col("step") == curves["step"].max())
    report: dict[str, Any] = {
        "phase": phase,
        "final": dict(zip(final["name"].to_list(), final["value"].to_list(), strict=True)),
        "layers": {},
    }
    confident = MatchConfig().min_confidence
    for layer in LAYERS:
        steps = reader.checkpoints(cfg.run, layer)["step"].to_list()
        events = reader.events(cfg.run, layer, min_confidence=confident)
        lo, hi = window(steps, phase) if phase else (-1, -1)
        inside = pl.col("step").is_between(lo, hi, closed="right")
        n_in = sum(lo < s <= hi for s in steps)
        per_kind = {
            kind: (
                events.filter((pl.col("kind") == kind) & inside).height,
                events.filter((pl.col("kind") == kind) & ~inside).height,
            )
            for kind in ("birth", "death", "split", "merge")
        }
        layer_shares = shares.filter(pl.col("layer") == layer)
        last = layer_shares.filter(pl.col("step") == max(steps)) if steps else layer_shares
        born = events.filter((pl.col("kind") == "birth") & inside).explode("targets")
        born_shares = born.join(
            layer_shares, left_on=["step", "targets"], right_on=["step", "feature"], how="left"
        )
        report["layers"][layer] = {
            "window": (lo, hi),
            "checkpoints_in": n_in,
            "checkpoints_out": len(steps) - 1 - n_in,
            "events": per_kind,
            "born_copying": born_shares.filter(IS_COPYING).height,
            "born_previous": born_shares.filter(IS_PREVIOUS).height,
            "born_in": born.height,
            "copying_final": last.filter(IS_COPYING).height,
            "previous_final": last.filter(IS_PREVIOUS).height,
            "live_final": last.height,
            "by_step": layer_shares.group_by("step")
            .agg(
                IS_COPYING.sum().alias("copying"),
                IS_PREVIOUS.sum().alias("previous"),
                pl.len().alias("live"),
            )
            .sort("step")
            .rows(),
        }
    return report
