"""One checkpoint's live features as matching sees them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from tracker.calibration import activation_rows
from tracker.config import MatchConfig
from tracker.sae import SAE
from tracker.witness import Codes


@dataclass(frozen=True)
class Side:
    """One checkpoint's live features."""

    sae: SAE
    acts: Tensor | None
    """Its checkpoint's probe activations [n, d], when given."""
    ids: np.ndarray
    """Feature index in its SAE of each live row."""
    W: Tensor
    """[F_live, d] unit decoder rows."""
    codes: Codes | None
    stable: np.ndarray | None
    S: Tensor
    """[F_live, m] unit rows compared by dot product: W itself, or with the activation signal
    the centred activation columns over the probe set (their dot product is the Pearson
    correlation; a feature constant on the probe set has a zero row)."""

    def on_activations(self) -> Side:
        if self.codes is None:
            raise ValueError("MatchConfig.signal='activation' needs acts_prev and acts_next")
        return replace(self, S=activation_rows(self.codes.z))

    def seeds(self, rows: list[int]) -> int | None:
        """2 when all of `rows` are stable (most seeds find them), else 1; None without a
        noise floor."""
        return None if self.stable is None else 1 + int(bool(self.stable[rows].all()))


def side(sae: SAE, name: str, cfg: MatchConfig, acts: Tensor | None, stable: Tensor | None) -> Side:
    """`sae`'s live features (`name` in errors), with their codes on `acts` and their
    stability when given."""
    W = sae.W_dec.detach().float().cpu()
    if not bool(torch.isfinite(W).all()):
        raise ValueError(f"{name}: the decoder holds NaN or Inf")
    ids = np.flatnonzero(sae.live(cfg.min_frequency, cfg.min_activation).numpy())
    W = W[torch.from_numpy(ids)]
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    codes = Codes.of(sae, acts, ids, name) if acts is not None else None
    stable_live = None
    if stable is not None:
        if stable.shape[0] != sae.d_sae:
            raise ValueError(
                f"{name}: stable mask has {stable.shape[0]} entries, the SAE {sae.d_sae} features"
            )
        stable_live = stable.cpu().numpy().astype(bool)[ids]
    return Side(sae, acts, ids, W, codes, stable_live, W)
