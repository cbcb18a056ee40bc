"""The README's picture: the phase-change measures and the confident events on one step axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from experiments.common import FIGURES
from experiments.induction.config import LAYERS, InductionConfig
from experiments.induction.labels import COPYING, IS_PREVIOUS
from tracker import MatchConfig
from tracker.reader import open_db


def draw(cfg: InductionConfig, report: dict[str, Any], out: Path = FIGURES) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    reader = open_db(cfg.db)
    m = reader.metrics(cfg.run).pivot(on="name", index="step", values="value").sort("step")
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    top.plot(m["step"], m["first_copy_loss"], "C7-", label="first copy of a random span")
    top.plot(m["step"], m["repeat_loss"], "C0-", label="second copy (only copying helps)")
    top.set_ylabel("loss (nats)")
    top.legend(loc="lower left", fontsize=8)
    for layer in (0, 1):
        mid.plot(
            m["step"],
            m[f"prefix/L{layer}"],
            f"C{layer + 1}-",
            label=f"layer {layer}: prefix matching",
        )
        mid.plot(
            m["step"],
            m[f"previous/L{layer}"],
            f"C{layer + 1}:",
            label=f"layer {layer}: previous token",
        )
    mid.set_ylabel("best head's score")
    mid.legend(loc="upper left", fontsize=8)
    shares = reader.table("induction_features", cfg.run)
    confident = MatchConfig().min_confidence
    width = max(cfg.every // 5, 1)
    for i, layer in enumerate(LAYERS):
        events = reader.events(cfg.run, layer, min_confidence=confident)
        counts = events.group_by("step").len().sort("step")
        low.bar(
            [s + (i - 1) * width for s in counts["step"].to_list()],
            counts["len"].to_list(),
            width=width,
            color=f"C{i + 1}",
            label=f"{layer}: confident events",
        )
        kinds = (
            shares.filter(pl.col("layer") == layer)
            .group_by("step")
            .agg(
                (pl.col("repeat_share") >= COPYING).sum().alias("copying"),
                IS_PREVIOUS.sum().alias("previous-token"),
            )
            .sort("step")
        )
        for kind, style in (("copying", "--"), ("previous-token", ":")):
            if kinds[kind].sum():
                label = f"{layer}: {kind} features"
                low.plot(kinds["step"], kinds[kind], f"C{i + 1}{style}", label=label)
    low.set_ylabel("count")
    low.set_xlabel("training step")
    low.legend(loc="upper center", fontsize=7, ncol=3)
    low.set_ylim(top=low.get_ylim()[1] * 1.35)  # room for the legend above the bars
    phase = report["phase"]
    for ax in (top, mid, low):
        if phase:
            ax.axvspan(phase["onset"], phase["end"], color="0.9", zorder=0)
    top.set_title("Induction heads: the phase change and what the lineage records around it")
    fig.tight_layout()
    path = out / "induction_phase.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
