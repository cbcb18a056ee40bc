"""Calibration: what cosine chance gives, and which features another seed finds too.

In few dimensions two random directions are already close: the best match of a random unit
vector among 2048 random ones scores 0.30 on average in d = 128 (0.38 at the 99th
percentile) and 0.98 in d = 5. Every cosine
threshold is therefore read against the same statistic for a random dictionary of the same
shape. And two SAEs fitted with different seeds do not learn the same dictionary: a feature
that no other seed finds is not evidence of anything.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor

from tracker.config import MatchConfig

SAMPLE_ROWS = 1024


class Chance(NamedTuple):
    """Best-match cosine of random unit vectors against a random dictionary."""

    mean: float
    quantile: float
    """The configured upper quantile: a cosine below it is no better than chance."""


@lru_cache(maxsize=64)
def chance_cosine(d: int, n_features: int, quantile: float = 0.99, seed: int = 0) -> Chance:
    """Best-match cosine of up to 1024 random unit vectors among `n_features` random ones."""
    if n_features < 1 or d < 1:
        return Chance(0.0, 0.0)
    g = torch.Generator().manual_seed(seed)
    probes = torch.randn(SAMPLE_ROWS, d, generator=g)
    probes /= probes.norm(dim=1, keepdim=True)
    best = torch.full((SAMPLE_ROWS,), -1.0)
    for start in range(0, n_features, 4096):
        block = torch.randn(min(4096, n_features - start), d, generator=g)
        block /= block.norm(dim=1, keepdim=True)
        best = torch.maximum(best, (probes @ block.t()).max(dim=1).values)
    return Chance(float(best.mean()), float(best.quantile(quantile)))


def cross_seed_stable(W_FD: Tensor, W_other_GD: Tensor, tau: float) -> Tensor:
    """Bool [F]: whether each unit row of W has a row of the other seed's dictionary at
    cosine >= tau."""
    if W_other_GD.shape[0] == 0:
        return torch.zeros(W_FD.shape[0], dtype=torch.bool)
    best = torch.full((W_FD.shape[0],), -1.0)
    for start in range(0, W_other_GD.shape[0], 4096):
        block = W_other_GD[start : start + 4096]
        best = torch.maximum(best, (W_FD @ block.t()).max(dim=1).values)
    return best >= tau


def activation_rows(z_NF: Tensor) -> Tensor:
    """[F, n] unit rows of centred activation columns: their dot products are Pearson
    correlations over the probe set (a feature constant on it gets a zero row)."""
    z = z_NF - z_NF.mean(0)
    return (z / z.norm(dim=0).clamp_min(1e-12)).t().contiguous()


def resolve_signal(cfg: MatchConfig, d: int, n_features: int, have_acts: bool) -> str:
    """ "decoder" or "activation" for `cfg.signal` at this width (see MatchConfig.signal)."""
    if cfg.signal != "auto":
        return cfg.signal
    low_d = chance_cosine(d, max(n_features, 1), cfg.chance_quantile).quantile > cfg.tau_match
    return "activation" if low_d and have_acts else "decoder"
