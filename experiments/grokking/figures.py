"""The README's pictures: curves with events on one step axis, and a grid of feature maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from experiments.common import FIGURES
from experiments.grokking.config import LAYERS, PAPER, GrokConfig
from experiments.grokking.features import MAP
from tracker.reader import open_db


def draw(cfg: GrokConfig, report: dict[str, Any], out: Path = FIGURES) -> list[Path]:
    """Curves and event counts on one step axis, and a grid of feature maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    reader = open_db(cfg.db)
    metrics = reader.metrics(cfg.run).pivot(on="name", index="step", values="value").sort("step")
    events = reader.events(cfg.run, LAYERS[cfg.layer])
    counts = (
        events.filter(pl.col("kind").is_in(["birth", "death"]))
        .with_columns(
            pl.when(pl.col("kind") == "birth")
            .then(pl.col("targets").list.len())
            .otherwise(pl.col("sources").list.len())
            .cast(pl.Int64)
            .alias("n")
        )
        .group_by("step", "kind")
        .agg(
            pl.col("n").sum().alias("all"),
            pl.col("n").filter(pl.col("confidence") >= 0.5).sum().alias("confident"),
        )
    )
    b = report["bounds"]
    fig, (top, mid, low) = plt.subplots(
        3, 1, figsize=(9, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 2]}
    )
    for name, style in [
        ("train_loss", "C0-"),
        ("test_loss", "C1-"),
        ("restricted_loss", "C2--"),
        ("excluded_loss", "C3--"),
    ]:
        top.plot(metrics["step"], metrics[name], style, label=name.replace("_", " "), lw=1.2)
    top.set_yscale("log")
    top.set_ylabel("loss")
    top.legend(loc="lower left", fontsize=8, ncol=2)
    mid.plot(metrics["step"], metrics["train_acc"], "C0-", label="train accuracy")
    mid.plot(metrics["step"], metrics["test_acc"], "C1-", label="test accuracy")
    live = report["live"]
    mid.plot(
        live["step"],
        live["on_key"] / live["live"],
        "C2.-",
        label="SAE features on a key frequency",
    )
    mid.axhline(report["chance"], color="C2", lw=0.8, ls=":", label="... by chance")
    mid.plot(live["step"], live["stable"] / live["live"], "C7.-", label="... stable across seeds")
    mid.set_ylabel("share")
    mid.legend(loc="center right", fontsize=7)
    width = max(cfg.steps / 150, 1)
    for kind, sign, colour in [("birth", 1, "C2"), ("death", -1, "C3")]:
        rows = counts.filter(pl.col("kind") == kind).sort("step")
        low.bar(
            rows["step"],
            sign * rows["all"],
            width=width,
            color=colour,
            alpha=0.35,
            label=f"{kind}s",
        )
        low.bar(
            rows["step"],
            sign * rows["confident"],
            width=width,
            color=colour,
            label=f"confident {kind}s",
        )
    low.axhline(0, color="k", lw=0.5)
    low.set_ylabel("births ↑  deaths ↓")
    low.set_yscale("symlog", linthresh=10)
    low.set_xlabel("training step")
    low.legend(loc="upper left", fontsize=8)
    for ax in (top, mid, low):
        if b["cleanup_start"] is not None and b["cleanup_end"] is not None:
            ax.axvspan(b["cleanup_start"], b["cleanup_end"], color="C4", alpha=0.08)
        for name, step in [
            ("memorisation ends", b["memorisation_end"]),
            ("clean-up", b["cleanup_start"]),
            ("grokked", b["grokked"]),
        ]:
            if step is not None:
                ax.axvline(step, color="k", lw=0.8, ls=":")
                if ax is mid:
                    ax.text(step, 0.3, f" {name}", fontsize=7, rotation=90, va="bottom")
        if cfg.p == 113:
            for step in PAPER.values():
                ax.axvline(step, color="grey", lw=0.8, ls="--", alpha=0.5)
    top.set_title(
        f"Grokking a + b mod {cfg.p}: dotted = this run's phases (clean-up shaded), "
        "dashed grey = the paper's"
    )
    fig.tight_layout()
    curves = out / "grokking_curves.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    labels = reader.table("grok_features", cfg.run)
    chosen = pick_maps(labels, report)
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.8))
    for ax, (step, feature) in zip(axes.flat, chosen, strict=False):
        image = reader.panels(cfg.run, LAYERS[cfg.layer], step, feature)[MAP].values
        info = labels.filter((pl.col("step") == step) & (pl.col("feature") == feature)).row(
            0, named=True
        )
        ax.imshow(image, cmap="viridis", origin="lower")
        tag = f"freq {info['frequency']}" if info["frequency"] else "mixed"
        ax.set_title(f"step {step}, feature {feature}: {tag} ({info['share']:.0%})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.suptitle(
        "SAE features as p × p maps (a up, b right): top row after memorisation, bottom row "
        f"at the end (key frequencies {report['keys']})",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=1.8)
    grid = out / "grokking_maps.png"
    fig.savefig(grid, dpi=110)
    plt.close(fig)
    return [curves, grid]


def pick_maps(labels: pl.DataFrame, report: dict[str, Any]) -> list[tuple[int, int]]:
    """Four features where memorisation ends, the least Fourier-like (lowest share), and four
    of the last checkpoint, the most Fourier-like of each key frequency first."""
    steps = report["steps"]
    memorised = report["bounds"]["memorisation_end"]
    early = min((s for s in steps if s >= memorised), default=steps[0])
    chosen = [
        (early, int(f))
        for f in labels.filter(pl.col("step") == early).sort("share")["feature"].head(4)
    ]
    last = labels.filter(pl.col("step") == steps[-1]).sort("share", descending=True)
    late: list[int] = []
    for k in report["keys"]:
        hit = last.filter(pl.col("frequency") == k)["feature"].head(1).to_list()
        late += hit
    late += [f for f in last["feature"].to_list() if f not in late]
    return chosen + [(steps[-1], int(f)) for f in late[:4]]
