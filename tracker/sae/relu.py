"""ReLU SAE with an L1 penalty weighted by decoder row norm (Anthropic, "Towards
Monosemanticity", 2023; the norm weighting from their April 2024 update)."""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.sae.base import SAE, StepLoss
from tracker.sae.registry import register


@register("relu")
class ReLUSAE(SAE):
    """z = ReLU(W_enc (x − b_dec) + b_enc); loss = FVU + l1_coef · mean_b Σ_f z_bf ‖W_dec,f‖."""

    def encode_normalized(self, x_BD: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x_BD - self.b_dec, self.W_enc.t()).relu()

    def training_loss(self, x_BD: Tensor, dead_F: Tensor) -> StepLoss:
        z_BF = self.encode_normalized(x_BD)
        x_hat_BD = z_BF @ self.W_dec + self.b_dec
        total_variance = (x_BD - x_BD.mean(0)).pow(2).sum()
        fvu = (x_hat_BD - x_BD).pow(2).sum() / total_variance
        # Weighting by the decoder norm keeps the penalty honest: without it a latent could
        # shrink its value and grow its decoder row to dodge the L1 between renormalisations.
        l1 = (z_BF * self.W_dec.norm(dim=1)).sum(dim=1).mean()
        loss = fvu + self.config.l1_coef * l1
        return StepLoss(loss, fvu.detach(), (z_BF.detach() > 0).any(dim=0))
