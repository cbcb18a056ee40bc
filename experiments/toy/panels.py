"""What the viewer's Feature page shows for a toy run: the model's WᵀW at the checkpoint, and
how the chosen SAE feature lines up with each true feature."""

from __future__ import annotations

import numpy as np
import polars as pl

from experiments.toy.config import LAYER, ToyConfig
from tracker.panels import Panel
from tracker.store import Writer


def checkpoint_panels(
    truth: pl.DataFrame, align: pl.DataFrame, min_align: float
) -> dict[int | None, list[Panel]]:
    """One checkpoint's panels from its rows of the truth and alignment tables; a feature is
    labelled with a true feature where their decoder cosine reaches `min_align`."""
    here = truth.sort("feature")
    n = here.height
    represented = tuple(here["represented"].to_list())
    panels: dict[int | None, list[Panel]] = {
        None: [
            Panel(
                "heatmap",
                title=f"WᵀW at step {here['step'][0]}",
                values=np.array(here["wtw"].to_list()),
                x="true feature j",
                y="true feature i",
                scheme="redblue",
                domain=(-1.0, 1.0),
                half=True,
            )
        ]
    }
    if align.is_empty():
        return panels
    for (feature,), rows in align.sort("true_feature").group_by("feature", maintain_order=True):
        best = rows.sort("cosine", descending=True).row(0, named=True)
        note = (
            f"Closest true feature: **x{best['true_feature']}** (decoder cosine "
            f"{best['cosine']:.2f}, activation correlation {best['act_corr']:.2f})."
        )
        bars = Panel(
            "bars",
            title=f"Feature {feature} against the truth",
            values=np.array([rows["cosine"].to_list(), rows["act_corr"].to_list()]),
            x="true feature",
            labels=tuple(str(i) for i in range(n)),
            series=("cosine", "act_corr"),
            strong=represented,
            domain=(-1.0, 1.0),
            half=True,
            text="Faded bars: true features the model does not represent at this step "
            "(‖W_i‖ < 0.5).",
        )
        name = f"x{best['true_feature']}"
        short = name if best["cosine"] >= min_align else f"nearest {name} ({best['cosine']:.2f})"
        panels[int(feature)] = [Panel("note", text=note), bars, Panel("label", text=short)]
    return panels


def publish(writer: Writer, cfg: ToyConfig, truth: pl.DataFrame, align: pl.DataFrame) -> None:
    """Every checkpoint's panels."""
    for (step,), rows in truth.group_by("step"):
        mine = align if align.is_empty() else align.filter(pl.col("step") == step)
        writer.write_panels(cfg.run, LAYER, int(step), checkpoint_panels(rows, mine, cfg.min_align))
