"""The README's picture: the phase-change measures and the confident events on one step axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.common import FIGURES
from experiments.induction.config import LAYERS, InductionConfig
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
        by_step = report["layers"][layer]["by_step"]  # (step, copying, previous, live)
        steps = [row[0] for row in by_step]
        for column, kind, style in ((1, "copying", "--"), (2, "previous-token", ":")):
            counts_of_kind = [row[column] for row in by_step]
            if any(counts_of_kind):
                label = f"{layer}: {kind} features"
                low.plot(steps, counts_of_kind, f"C{i + 1}{style}", label=label)
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
