"""What each SAE feature reads, from its activations on the probe set: how much of it falls on
second copies of repeated spans (copying), and how much the identity of the current token
and of the previous one explain (a previous-token feature carries the token before)."""

from __future__ import annotations

import polars as pl
import torch
from torch import Tensor

from experiments.induction.config import LAYERS, InductionConfig
from experiments.textlm import ALPHABET
from tracker.activations import load_activation_file
from tracker.panels import Panel
from tracker.reader import open_db
from tracker.store import Writer

COPYING = 0.5
"""A feature whose activation falls on second copies of repeated spans at least this much is
a copying feature (chance is the share of such tokens in the probe, 0.19)."""
PREVIOUS = 0.5
"""A feature whose activation the previous token's identity explains at least this much
(and more than the current token's) is a previous-token feature."""
IS_COPYING = pl.col("repeat_share") >= COPYING
"""Rows of the labels table that are copying features."""
IS_PREVIOUS = (pl.col("previous_r2") >= PREVIOUS) & (pl.col("previous_r2") > pl.col("token_r2"))
"""Rows of the labels table that are previous-token features."""


def token_r2(z: Tensor, token: Tensor) -> Tensor:
    """[F] the share of each feature's variance over the rows of z [n, F] that the row's token
    (ids [n]) explains: between-token over total sum of squares (eta squared; with 96 tokens
    and thousands of rows a feature unrelated to tokens scores about 96 / n)."""
    z = z.double()
    n, f = z.shape
    counts = torch.bincount(token, minlength=len(ALPHABET)).double()
    sums = torch.zeros(len(ALPHABET), f, dtype=torch.float64).index_add_(0, token, z)
    between = (sums**2 / counts.clamp_min(1)[:, None]).sum(0) - z.sum(0) ** 2 / n
    total = ((z - z.mean(0)) ** 2).sum(0)
    return (between / total.clamp_min(1e-30)).clamp(0, 1)


def note(share: float, chance: float, previous: float, current: float) -> str:
    kinds = [
        "a copying feature" if share >= COPYING else "",
        "a previous-token feature" if previous >= PREVIOUS and previous > current else "",
    ]
    named = " and ".join(k for k in kinds if k) or "neither a copying nor a previous-token feature"
    return (
        f"{share:.0%} of its activation falls on the second copy of a repeated random span "
        f"({chance:.0%} of the probe's tokens); the previous token's identity explains "
        f"{previous:.0%} of its variance, the current token's {current:.0%}: {named}."
    )


def feature_labels(
    cfg: InductionConfig, tokens: Tensor, second: Tensor, writer: Writer
) -> pl.DataFrame:
    """Every live feature's labels at every checkpoint of both layers, stored as a note panel
    for the viewer and returned as a table. Rows at position 0 (no previous token) are left
    out of the token measures."""
    reader = open_db(cfg.db)
    mask = second.reshape(-1)
    chance = float(mask.float().mean())
    current = tokens.reshape(-1)
    previous = torch.cat([tokens[:, :1], tokens[:, :-1]], dim=1).reshape(-1)
    later = (torch.arange(tokens.shape[1]) > 0).repeat(tokens.shape[0])
    rows = []
    for layer in LAYERS:
        folder = cfg.run_dir / "activations" / layer
        for step in reader.checkpoints(cfg.run, layer)["step"].to_list():
            live = reader.features(cfg.run, layer, step)["feature"].to_list()
            if not live:
                continue
            with torch.no_grad():
                x = load_activation_file(folder / f"{step}.safetensors").float()
                z = reader.sae(cfg.run, layer, step).encode(x)[:, live]
            shares = (z[mask].sum(0) / z.sum(0).clamp_min(1e-12)).tolist()
            prev_r2 = token_r2(z[later], previous[later]).tolist()
            cur_r2 = token_r2(z[later], current[later]).tolist()
            panels: dict[int | None, list[Panel]] = {}
            for i, feature in enumerate(live):
                rows.append((layer, step, feature, shares[i], prev_r2[i], cur_r2[i]))
                panels[feature] = [
                    Panel("note", text=note(shares[i], chance, prev_r2[i], cur_r2[i]))
                ]
            writer.write_panels(cfg.run, layer, step, panels)
    schema = ["layer", "step", "feature", "repeat_share", "previous_r2", "token_r2"]
    return pl.DataFrame(rows, schema=schema, orient="row")
