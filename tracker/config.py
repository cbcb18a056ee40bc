"""Typed, validated configuration for fitting sparse autoencoders."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"SAEConfig.{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class SAEConfig:
    """How to fit one sparse autoencoder to one checkpoint's activations [n, d]."""

    arch: str = "topk"
    """Architecture, a key of `tracker.sae.ARCHITECTURES`: "topk" (Gao et al. 2024, the default:
    L0 is set directly, no sparsity coefficient to tune) or "relu" (ReLU + L1)."""

    d_sae: int | None = None
    """Number of latents. None means `expansion * d`."""

    expansion: int = 8
    """Latents per input dimension when `d_sae` is None."""

    k: int = 32
    """TopK: active latents per sample. Must be smaller than `d_sae`."""

    k_aux: int | None = None
    """TopK: dead latents used by the AuxK loss. None means d // 2, as Gao et al. (2024, A.2)."""

    aux_coef: float = 1 / 32
    """TopK: weight of the AuxK loss; 1/32 is the value of Gao et al. (2024, A.2)."""

    dead_after: int | None = None
    """Samples a latent may go without firing before AuxK treats it as dead.
    None means one pass over the data (the data here are small probe sets, not 10M tokens)."""

    l1_coef: float = 0.1
    """ReLU: weight of the L1 penalty (weighted by decoder row norm) against the FVU loss, on
    inputs of unit mean squared norm. 0.1 recovers a planted dictionary with MMCS 0.99."""

    lr: float | None = None
    """Adam learning rate. None means 2e-4 / sqrt(d_sae / 2**14), the scaling of Gao et al."""

    batch_size: int = 4096
    """Samples per step (capped at n)."""

    steps: int = 1000
    """Optimiser steps."""

    seed: int = 0
    """Seeds initialisation and batch order: the same seed gives the same weights on CPU."""

    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N"."""

    normalize: bool = True
    """Scale each checkpoint's activations to unit mean squared norm before fitting, so that
    activation scale, which drifts a lot during training, does not leak into the features."""

    progress: bool = False
    """Show a progress bar while fitting."""

    def __post_init__(self) -> None:
        from tracker.sae.registry import ARCHITECTURES

        if self.arch not in ARCHITECTURES:
            raise ValueError(
                f"SAEConfig.arch must be one of {sorted(ARCHITECTURES)}, got {self.arch!r}"
            )
        for name in ("d_sae", "expansion", "k", "k_aux", "dead_after", "lr", "batch_size", "steps"):
            _positive(name, getattr(self, name))
        for name in ("aux_coef", "l1_coef"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"SAEConfig.{name} must be finite and >= 0, got {value!r}")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(
                f"SAEConfig.device must be one of {list(DEVICES)} or 'cuda:N', got {self.device!r}"
            )
        if self.d_sae is not None and self.arch == "topk" and self.k >= self.d_sae:
            raise ValueError(f"SAEConfig.k must be smaller than d_sae={self.d_sae}, got k={self.k}")

    def latents(self, d: int) -> int:
        """The number of latents for inputs of width `d`."""
        return self.d_sae if self.d_sae is not None else self.expansion * d

    def learning_rate(self, d_sae: int) -> float:
        # Gao et al. (2024) fit lr ∝ 1/sqrt(n_latents); 2e-4 at 2**14 latents is their anchor.
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(d_sae / 2**14)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
