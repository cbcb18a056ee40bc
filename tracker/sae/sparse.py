"""Sparse kernels for TopK SAEs: work proportional to the k active latents, not to d_sae.

Only the encoder's pre-activations need the dense `[B, d] @ [d, d_sae]` matmul. Everything
else in a TopK step touches k latents per row, so it is written as CSR sparse-dense products:
the decode (`Z @ W_dec`), the decoder gradient (`Zᵀ @ grad`), the latent gradient (an SDDMM,
`grad @ W_decᵀ` sampled at the active entries) and the encoder gradient (`Gᵀ @ x`).
The transposed CSR structure is built once per step and shared by both backward products:
letting torch transpose a CSR matrix instead costs 3x more than the product itself here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

# CSR matmuls are "beta" in torch but long stable on CPU and CUDA; the warning says nothing
# a user can act on.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def select_topk(pre_BF: Tensor, k: int) -> Tensor:
    """Indices [B, k] of the k largest entries of each row, sorted ascending for CSR."""
    indices_BK = pre_BF.topk(k, dim=1, sorted=False).indices
    return indices_BK.sort(dim=1).values


@dataclass(frozen=True)
class ActivePattern:
    """Which k latents are active in each of B rows, in both CSR orientations (the
    transposed one built on first use: only a backward pass reads it, and the pass that ends
    every fit spent 5% of its time building it for nothing)."""

    idx_BK: Tensor
    """Active latent indices, sorted within each row."""
    d_sae: int
    crow: Tensor
    """[B + 1] row pointers of the [B, d_sae] matrix (k entries per row)."""

    @classmethod
    def build(cls, idx_BK: Tensor, d_sae: int) -> ActivePattern:
        n_rows, k = idx_BK.shape
        crow = torch.arange(0, n_rows * k + 1, k, device=idx_BK.device, dtype=torch.int64)
        return cls(idx_BK, d_sae, crow)

    @cached_property
    def _transposed(self) -> tuple[Tensor, Tensor, Tensor]:
        flat = self.idx_BK.reshape(-1)
        perm = flat.argsort(stable=True)
        t_crow = torch.zeros(self.d_sae + 1, dtype=torch.int64, device=flat.device)
        t_crow[1:] = torch.bincount(flat, minlength=self.d_sae).cumsum(0)
        return t_crow, perm // self.idx_BK.shape[1], perm

    @property
    def t_crow(self) -> Tensor:
        """[d_sae + 1] row pointers of the transposed [d_sae, B] matrix."""
        return self._transposed[0]

    @property
    def t_col(self) -> Tensor:
        """[B·k] sample index of each entry of the transposed matrix, latent-major."""
        return self._transposed[1]

    @property
    def t_perm(self) -> Tensor:
        """[B·k] where each latent-major entry sits in the row-major value order."""
        return self._transposed[2]

    def rows(self, values_BK: Tensor) -> Tensor:
        """The [B, d_sae] CSR matrix with `values_BK[b, j]` at column `idx_BK[b, j]`."""
        return torch.sparse_csr_tensor(
            self.crow,
            self.idx_BK.reshape(-1),
            values_BK.reshape(-1),
            size=(self.idx_BK.shape[0], self.d_sae),
            check_invariants=False,
        )

    def cols(self, values_BK: Tensor) -> Tensor:
        """The transpose of `rows(values_BK)`, as a [d_sae, B] CSR matrix."""
        return torch.sparse_csr_tensor(
            self.t_crow,
            self.t_col,
            values_BK.reshape(-1)[self.t_perm],
            size=(self.d_sae, self.idx_BK.shape[0]),
            check_invariants=False,
        )


class _GatherPreacts(torch.autograd.Function):
    """pre[b, j] = (W_enc x[b])[idx[b, j]] + b_enc[idx[b, j]], read from a precomputed dense pre.

    The forward reuses the dense pre-activations (computed once, without a graph); the backward
    is sparse: the gradient reaches only the k selected encoder rows of each sample.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x_BD: Tensor,
        W_enc_FD: Tensor,
        b_enc_F: Tensor,
        pattern: ActivePattern,
        pre_BF: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(x_BD, W_enc_FD)
        ctx.pattern = pattern  # type: ignore[attr-defined]
        return pre_BF.gather(1, pattern.idx_BK).to(W_enc_FD.dtype)

    @staticmethod
    def backward(ctx: Any, grad_BK: Tensor) -> tuple[Tensor | None, ...]:
        x_BD, W_enc_FD = ctx.saved_tensors
        pattern: ActivePattern = ctx.pattern
        grad_BK = grad_BK.contiguous()
        grad_x = pattern.rows(grad_BK) @ W_enc_FD if ctx.needs_input_grad[0] else None
        grad_W = pattern.cols(grad_BK) @ x_BD if ctx.needs_input_grad[1] else None
        grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = grad_BK.new_zeros(pattern.d_sae).index_add_(
                0, pattern.idx_BK.reshape(-1), grad_BK.reshape(-1)
            )
        return grad_x, grad_W, grad_b, None, None


class _SparseDecode(torch.autograd.Function):
    """out[b] = Σ_j acts[b, j] · W_dec[idx[b, j]], with sparse forward and backward."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, acts_BK: Tensor, pattern: ActivePattern, W_dec_FD: Tensor
    ) -> Tensor:
        acts_BK = acts_BK.contiguous()
        ctx.save_for_backward(acts_BK, W_dec_FD)
        ctx.pattern = pattern  # type: ignore[attr-defined]
        return pattern.rows(acts_BK) @ W_dec_FD

    @staticmethod
    def backward(ctx: Any, grad_BD: Tensor) -> tuple[Tensor | None, ...]:
        acts_BK, W_dec_FD = ctx.saved_tensors
        pattern: ActivePattern = ctx.pattern
        grad_BD = grad_BD.contiguous()
        grad_acts = grad_W = None
        if ctx.needs_input_grad[0]:
            # SDDMM: grad · W_dec[idx] only at the active entries, never the dense [B, d_sae].
            mask = pattern.rows(torch.zeros_like(acts_BK))
            sampled = torch.sparse.sampled_addmm(mask, grad_BD, W_dec_FD.t(), beta=0.0)
            grad_acts = sampled.values().view_as(acts_BK)
        if ctx.needs_input_grad[2]:
            grad_W = pattern.cols(acts_BK) @ grad_BD
        return grad_acts, None, grad_W


def gather_preacts(
    x_BD: Tensor, W_enc_FD: Tensor, b_enc_F: Tensor, pattern: ActivePattern, pre_BF: Tensor
) -> Tensor:
    """Differentiable selected pre-activations [B, k] of inputs `x_BD` (see `_GatherPreacts`)."""
    out: Tensor = _GatherPreacts.apply(x_BD, W_enc_FD, b_enc_F, pattern, pre_BF)
    return out


def sparse_decode(acts_BK: Tensor, pattern: ActivePattern, W_dec_FD: Tensor) -> Tensor:
    """Differentiable `Σ_j acts[b, j] W_dec[idx[b, j]]` [B, d] (see `_SparseDecode`)."""
    out: Tensor = _SparseDecode.apply(acts_BK, pattern, W_dec_FD)
    return out
