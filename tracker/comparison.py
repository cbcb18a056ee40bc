"""Two checkpoints' features side by side, on the signal their matching used.

`Reader.compare` gathers the two SAEs, their live features and (when the run directory still
holds them) the probe activations, and `compare` lays the similarity out for reading: rows
and columns ordered by the one-to-one assignment, best matches first on the diagonal, with a
random dictionary's chance level. The signal is the one `match` resolves for this width
(`resolve_signal`): decoder cosine, or in few dimensions, where every decoder cosine is near
chance, the correlation of the features' activations over the probe set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from tracker.calibration import Chance, activation_rows, chance_cosine, resolve_signal
from tracker.config import MatchConfig
from tracker.sae import SAE


class Comparison(NamedTuple):
    """Two checkpoints side by side (`Reader.compare`)."""

    sim: np.ndarray
    """[len(a_features), len(b_features)] similarity in assignment order."""
    a_features: list[int]
    b_features: list[int]
    best: np.ndarray
    """Each of a's features' best similarity to b (in a's frequency order)."""
    chance: Chance
    """Best-match similarity of a random dictionary of b's shape: mean and 99th percentile."""
    signal: str
    """"decoder" or "activation": what `sim` measures, as the run's matching did."""


def compare(
    saes: tuple[SAE, SAE],
    features: tuple[pl.DataFrame, pl.DataFrame],
    acts: tuple[Tensor | None, Tensor | None],
    config: MatchConfig,
    max_features: int = 512,
) -> Comparison:
    """`saes`, `features` (the stored features tables) and `acts` (probe activations, or
    None) of checkpoints a and b; the `max_features` most frequent live features of each."""
    ids = [
        f.sort("frequency", descending=True)["feature"].head(max_features).to_list()
        for f in features
    ]
    width = max(len(features[0]), len(features[1]), 1)  # all live features, as match saw
    d = saes[0].W_dec.shape[1]
    have_acts = acts[0] is not None and acts[1] is not None
    signal = resolve_signal(config, d, width, have_acts)
    if signal == "activation" and not have_acts:
        signal = "decoder"  # the run asked for activations, but its snapshots are gone
    A, B = (_rows(sae, f, a, signal) for sae, f, a in zip(saes, ids, acts, strict=True))
    sim = A @ B.T
    chance_d = d if signal == "decoder" else min(A.shape[1], 4096)
    chance = chance_cosine(chance_d, max(len(B), 1), config.chance_quantile)
    r, c = linear_sum_assignment(sim, maximize=True)
    order = np.argsort(-sim[r, c], kind="stable")
    r, c = r[order], c[order]
    row_order = np.concatenate([r, np.setdiff1d(np.arange(len(A)), r)])
    col_order = np.concatenate([c, np.setdiff1d(np.arange(len(B)), c)])
    return Comparison(
        sim[row_order][:, col_order],
        [ids[0][i] for i in row_order],
        [ids[1][j] for j in col_order],
        sim.max(axis=1) if sim.size else np.zeros(len(A)),
        chance,
        signal,
    )


def activation_signal(sae: SAE, ids: list[int], acts: Tensor) -> np.ndarray:
    """[len(ids), n] float64 unit rows of the features' centred activations over the probe
    set: their dot products are Pearson correlations (also across runs, `tracker.across`)."""
    with torch.no_grad():
        z = sae.latents(acts, columns=torch.tensor(ids, dtype=torch.long))
    return activation_rows(z.double().cpu()).numpy()


def _rows(sae: SAE, ids: list[int], acts: Tensor | None, signal: str) -> np.ndarray:
    """Unit rows whose dot products are the similarity: decoder directions, or centred
    activation columns over the probe set (Pearson correlation)."""
    if signal == "activation":
        assert acts is not None
        return activation_signal(sae, ids, acts)
    W = sae.W_dec.detach().float().cpu().numpy()[ids].astype(np.float64)
    return W / np.linalg.norm(W, axis=1, keepdims=True).clip(1e-12)
