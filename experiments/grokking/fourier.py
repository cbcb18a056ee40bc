"""Fourier analysis over Z_p: the embedding's key frequencies and each feature map's
spectrum."""

from __future__ import annotations

import math

import torch
from torch import Tensor

CHANCE = 3.0
"""A map is labelled with its dominant frequency when that frequency holds at least this many
times the share of power it would in white noise."""


def fourier_basis(p: int) -> Tensor:
    """[p, p] orthonormal rows: the constant, then cos and sin of frequencies 1 … p // 2."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows[:p])
    return basis / basis.norm(dim=1, keepdim=True)


def embedding_power(W_E: Tensor, p: int) -> Tensor:
    """[p // 2] power of the token embedding W_E[:p] at each frequency 1 … p // 2."""
    coef = fourier_basis(p) @ W_E[:p].double()  # [p, d]
    power = coef.pow(2).sum(1)
    return power[1::2] + power[2::2] if p % 2 else power[1:-1:2] + power[2::2]


def key_frequencies(power: Tensor) -> list[int]:
    """The frequencies an embedding concentrates on, from its power per frequency 1 … p // 2:
    of those holding at least twice the uniform share, the strongest down to the largest
    drop in power (Nanda et al. read the key frequencies off the same spectrum)."""
    share = power / power.sum()
    order = torch.argsort(share, descending=True)
    candidates = int((share >= 2 / len(share)).sum())
    top = share[order[: candidates + 1]]
    if candidates == 0:
        return []
    cut = int(torch.argmax(top[:-1] / top[1:].clamp_min(1e-30))) + 1
    return sorted(int(f) + 1 for f in order[:cut])


def map_spectrum(maps: Tensor) -> Tensor:
    """[f, p // 2 + 1] power of p × p maps per frequency (index 0: the cross terms).

    The 2-D DFT coefficient at (i, j) belongs to frequency k when its folded indices
    (min(i, p - i), likewise j) are (k, 0), (0, k) or (k, k): the terms in a, in b, and in
    a ± b that the network's trig identities use. Other coefficients mix two frequencies
    and are pooled at index 0; the constant is left out.
    """
    f, p, _ = maps.shape
    power = torch.fft.fft2(maps.double()).abs().pow(2)
    fold = torch.minimum(torch.arange(p), p - torch.arange(p))
    fi, fj = fold[:, None].expand(p, p), fold[None, :].expand(p, p)
    label = torch.where(fi == 0, fj, torch.where((fj == 0) | (fi == fj), fi, 0))
    label[0, 0] = -1  # the constant
    out = torch.zeros(f, p // 2 + 1, dtype=torch.float64)
    keep = label >= 0
    out.index_add_(1, label[keep], power[:, keep])
    return out


def label_spectrum(spectrum: Tensor, p: int) -> tuple[Tensor, Tensor, Tensor]:
    """From `map_spectrum`'s rows: the label, the dominant frequency and the share of the
    non-constant power it holds. The label is the dominant frequency, or 0 when it holds less
    than CHANCE times what it would in white noise (8 of the p² − 1 non-constant
    coefficients belong to each frequency)."""
    share, dominant = spectrum[:, 1:].max(1)
    dominant = dominant + 1
    share = share / spectrum.sum(1).clamp_min(1e-30)
    return torch.where(share >= CHANCE * 8 / (p * p - 1), dominant, 0), dominant, share


def folded_power(maps: Tensor) -> Tensor:
    """[f, p // 2 + 1, p // 2 + 1] 2-D Fourier power of p × p maps, folded so that index
    (i, j) pools the coefficients of frequencies ±i in a and ±j in b; the constant is 0."""
    f, p, _ = maps.shape
    power = torch.fft.fft2(maps.double()).abs().pow(2)
    power[:, 0, 0] = 0
    fold = torch.minimum(torch.arange(p), p - torch.arange(p))
    half = p // 2 + 1
    flat = (fold[:, None] * half + fold[None, :]).flatten()
    out = torch.zeros(f, half * half, dtype=torch.float64)
    out.index_add_(1, flat, power.flatten(1))
    return out.reshape(f, half, half)
