"""Synthetic activations with a planted dictionary: ground truth for tests and benchmarks."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Planted(NamedTuple):
    """Sparse non-negative combinations of known unit directions."""

    x_ND: Tensor
    """[n, d] the activations."""
    dictionary_TD: Tensor
    """[n_true, d] the true unit directions."""
    codes_NT: Tensor
    """[n, n_true] the true non-negative coefficients."""


def planted_sparse(
    n: int, d: int, n_true: int, active: float, *, noise: float = 0.0, seed: int = 0
) -> Planted:
    """`n` samples, each a sum of about `active` random true directions with coefficients
    uniform on [0.5, 1.5] (bounded away from zero so every firing is identifiable), plus
    isotropic Gaussian noise of standard deviation `noise` per dimension."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_true, d, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    fires = torch.rand(n, n_true, generator=g) < active / n_true
    codes = fires * (0.5 + torch.rand(n, n_true, generator=g))
    x = codes @ dictionary + noise * torch.randn(n, d, generator=g)
    return Planted(x, dictionary, codes)


def mean_max_cosine(learned_FD: Tensor, true_TD: Tensor) -> float:
    """MMCS: for each true direction the best cosine with any learned row, averaged."""
    learned = learned_FD / learned_FD.norm(dim=1, keepdim=True)
    true = true_TD / true_TD.norm(dim=1, keepdim=True)
    return float((true @ learned.t()).max(dim=1).values.mean())
