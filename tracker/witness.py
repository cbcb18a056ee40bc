"""Activation witnesses on the shared probe set: basis-free evidence beside decoder cosine.

Two checkpoints see the same probe inputs in the same order, so a feature's activations over
the probe set can be compared across checkpoints directly, whatever its decoder direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tracker.checks import as_activations
from tracker.sae import SAE

CHUNK = 1024


@dataclass(frozen=True)
class Codes:
    """Activations [n, F_live] of an SAE's live features on the probe set."""

    z: Tensor

    @classmethod
    @torch.no_grad()
    def of(cls, sae: SAE, acts: object, ids: np.ndarray, name: str) -> Codes:
        x = as_activations(acts, name=f"activations for {name}", min_samples=2)
        if x.shape[1] != sae.d:
            raise ValueError(f"activations for {name} must be [n, {sae.d}], got {tuple(x.shape)}")
        return cls(sae.latents(x, columns=torch.from_numpy(ids)))


def act_corr(a: Codes, b: Codes, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pearson correlation over the probe set of a's column p and b's column q, per pair;
    NaN where a feature is constant on the probe set."""
    out = np.full(len(pairs), np.nan)
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        za = a.z[:, [p for p, _ in chunk]]
        zb = b.z[:, [q for _, q in chunk]]
        za = za - za.mean(0)
        zb = zb - zb.mean(0)
        denom = za.norm(dim=0) * zb.norm(dim=0)
        corr = (za * zb).sum(0) / denom
        out[start : start + len(chunk)] = torch.where(denom > 0, corr, torch.nan).numpy()
    return out


def containment(inner: Codes, rows: Sequence[int], outer: Codes, row: int) -> np.ndarray:
    """For each of `rows` in `inner`: the share of its activation mass that falls on probe
    inputs where `outer`'s feature `row` fires (1.0 for a feature that never fires).

    Mass, not a count of firings: a TopK latent with a spare slot fires weakly on foreign
    inputs, and those small activations should not outvote where it really lives.
    """
    z_inner = inner.z[:, list(rows)]
    fires_outer = (outer.z[:, row] > 0).unsqueeze(1)
    total = z_inner.sum(0)
    inside = (z_inner * fires_outer).sum(0)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), 1.0).numpy()
