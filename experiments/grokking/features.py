"""Every live SAE feature as a p × p map over (a, b): its Fourier label, and the panels the
viewer's Feature page draws for it."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from experiments.grokking.config import LAYERS, GrokConfig
from experiments.grokking.fourier import folded_power, label_spectrum, map_spectrum
from tracker.activations import load_activation_file
from tracker.panels import Panel
from tracker.reader import open_db
from tracker.store import Writer

MAP = 1
"""The map's place among a feature's panels (after the note): the figures read it back."""


def feature_maps(cfg: GrokConfig, keys: list[int], writer: Writer) -> pl.DataFrame:
    """For every live SAE feature at every checkpoint: its Fourier label (returned), and its
    map, folded spectrum and power per frequency (written as panels, one checkpoint at a time:
    all maps at once would not fit in memory at p = 113)."""
    reader = open_db(cfg.db)
    p, layer = cfg.p, LAYERS[cfg.layer]
    folder = cfg.run_dir / "activations" / layer
    labels = []
    for step in reader.checkpoints(cfg.run, layer)["step"].to_list():
        features = reader.features(cfg.run, layer, step)
        if features.is_empty():
            continue
        sae = reader.sae(cfg.run, layer, step)
        x = load_activation_file(folder / f"{step}.safetensors").float()
        with torch.no_grad():
            acts = sae.encode(x).T.reshape(-1, p, p)  # [d_sae, a, b], raw units
        live = features["feature"].to_list()  # the table holds live features only
        spectrum = map_spectrum(acts[live])
        freq, dominant, share = label_spectrum(spectrum, p)
        folded = folded_power(acts[live])
        panels: dict[int | None, list[Panel]] = {}
        for i, feature in enumerate(live):
            row = {
                "step": step,
                "feature": feature,
                "frequency": int(freq[i]),
                "dominant": int(dominant[i]),
                "share": float(share[i]),
                "spectrum": (spectrum[i] / spectrum[i].sum().clamp_min(1e-30)).tolist(),
            }
            labels.append(row)
            panels[feature] = feature_panels(row, acts[feature], folded[i], keys)
        writer.write_panels(cfg.run, layer, step, panels)
    return pl.DataFrame(labels)


def feature_panels(
    label: dict[str, Any], grid: Tensor, folded: Tensor, keys: list[int]
) -> list[Panel]:
    """A note with the label, the map over (a, b), its folded 2-D spectrum (log10 share of
    power) and its power per frequency with the key frequencies solid."""
    named = (
        f"frequency **{label['frequency']}**"
        if label["frequency"]
        else f"no single frequency (strongest {label['dominant']})"
    )
    note = (
        f"{named}, {label['share']:.0%} of its non-constant Fourier power; the model's key "
        f"frequencies (from its embedding): {keys}."
    )
    share = folded / folded.sum().clamp_min(1e-30)
    spectrum = label["spectrum"]
    frequency = label["frequency"]
    short = (
        f"frequency {frequency}{' (key)' if frequency in keys else ''}"
        if frequency
        else "no single frequency"
    )
    return [
        Panel("note", text=note),
        Panel(
            "heatmap",
            title=f"Feature {label['feature']} over (a, b) at step {label['step']}",
            values=grid.double().numpy(),
            x="b",
            y="a",
            ticks=10,
            origin="bottom",
            half=True,
            encoding="uint8",
        ),
        Panel(
            "heatmap",
            title="2-D Fourier power (folded)",
            text="Colour: log10 of the share of the map's power.",
            values=torch.log10(share + 1e-6).numpy(),
            x="frequency in b",
            y="frequency in a",
            scheme="magma",
            ticks=5,
            origin="bottom",
            half=True,
            encoding="uint8",
        ),
        Panel(
            "bars",
            title="Power per frequency (terms in a, b and a ± b)",
            values=np.array([spectrum[1:]]),
            x="frequency",
            y="share of power",
            labels=tuple(str(k) for k in range(1, len(spectrum))),
            strong=tuple(k in keys for k in range(1, len(spectrum))),
        ),
        Panel("label", text=short),  # not drawn: it names the lineage wherever it is listed
    ]
