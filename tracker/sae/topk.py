"""TopK SAE (Gao et al. 2024): k largest pre-activations per sample, AuxK against dead latents."""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.sae.base import SAE, StepLoss
from tracker.sae.registry import register
from tracker.sae.sparse import ActivePattern, gather_preacts, select_topk, sparse_decode


@register("topk")
class TopKSAE(SAE):
    """z = ReLU(TopK_k(W_enc (x − b_dec) + b_enc)); x̂ = W_decᵀ z + b_dec."""

    @torch.no_grad()
    def preacts(self, x_BD: Tensor, out: Tensor | None = None) -> Tensor:
        """Dense pre-activations [B, d_sae], without a graph: the one dense matmul of a step.
        In bfloat16 on CUDA; on CPU written into `out` when given."""
        xc_BD = x_BD - self.b_dec
        if xc_BD.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return torch.addmm(self.b_enc, xc_BD, self.W_enc.t())
        return torch.addmm(self.b_enc, xc_BD, self.W_enc.t(), out=out)

    def encode_normalized(self, x_BD: Tensor) -> Tensor:
        pre_BF = self.preacts(x_BD).float()
        idx_BK = select_topk(pre_BF, self.config.k)
        z_BF = torch.zeros_like(pre_BF)
        return z_BF.scatter_(1, idx_BK, pre_BF.gather(1, idx_BK).relu())

    @torch.no_grad()
    def active_codes(self, x_BD: Tensor, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
        pre_BF = self.preacts(x_BD, out=out)
        idx_BK = select_topk(pre_BF, self.config.k)
        return pre_BF.gather(1, idx_BK).float().relu(), idx_BK

    def training_loss(self, x_BD: Tensor, dead_F: Tensor) -> StepLoss:
        cfg = self.config
        xc_BD = x_BD - self.b_dec
        pre_BF = self.preacts(x_BD, out=self.workspace(x_BD.shape[0], self.d_sae))
        pattern = ActivePattern.build(select_topk(pre_BF, cfg.k), self.d_sae)
        acts_BK = gather_preacts(xc_BD, self.W_enc, self.b_enc, pattern, pre_BF).relu()
        x_hat_BD = sparse_decode(acts_BK, pattern, self.W_dec) + self.b_dec

        total_variance = (x_BD - x_BD.mean(0)).pow(2).sum()
        fvu = (x_hat_BD - x_BD).pow(2).sum() / total_variance
        loss = fvu

        n_dead = int(dead_F.sum())
        if n_dead > 0 and cfg.aux_coef > 0:
            loss = loss + cfg.aux_coef * self._aux_loss(
                x_BD - x_hat_BD.detach(), xc_BD, pre_BF, dead_F, total_variance
            )

        fired_F = torch.zeros(self.d_sae, dtype=torch.bool, device=x_BD.device)
        fired_F[pattern.idx_BK[acts_BK.detach() > 0]] = True
        return StepLoss(loss, fvu.detach(), fired_F)

    def _aux_loss(
        self,
        residual_BD: Tensor,
        xc_BD: Tensor,
        pre_BF: Tensor,
        dead_F: Tensor,
        total_variance: Tensor,
    ) -> Tensor:
        """AuxK: rebuild the residual from the top k_aux dead latents, so they get gradient
        again (Gao et al. 2024, A.2). Scaled down when fewer than k_aux latents are dead."""
        dead_idx = dead_F.nonzero().squeeze(1)
        k_aux = min(self.config.k_aux or self.d // 2 or 1, dead_idx.numel())
        local_BK = select_topk(pre_BF[:, dead_idx], k_aux)
        pattern = ActivePattern.build(dead_idx[local_BK].sort(dim=1).values, self.d_sae)
        acts_BK = gather_preacts(xc_BD, self.W_enc, self.b_enc, pattern, pre_BF).relu()
        residual_hat_BD = sparse_decode(acts_BK, pattern, self.W_dec)
        scale = min(dead_idx.numel() / k_aux, 1.0)
        return scale * (residual_hat_BD - residual_BD).pow(2).sum() / total_variance
