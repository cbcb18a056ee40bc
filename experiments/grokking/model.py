"""Modular addition and the one-layer transformer of Nanda et al. (2023)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from experiments.grokking.config import GrokConfig


def split(cfg: GrokConfig) -> tuple[Tensor, Tensor]:
    """All p² pairs (row a·p + b) and a boolean mask of the training pairs."""
    p = cfg.p
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(cfg.seed))
    train = torch.zeros(p * p, dtype=torch.bool)
    train[order[: int(cfg.train_fraction * p * p)]] = True
    return pairs, train


class FullBatch(IterableDataset[tuple[Tensor, Tensor]]):
    """The whole training set as one batch, forever: full-batch gradient descent."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.x, self.y


class Transformer(L.LightningModule):
    """One layer, no layer norm, read out at `=`, initialised like Nanda et al.'s code.

    Only the `=` position reaches the logits in one layer, and its query is the same for
    every input, so `forward` computes just that path: keys, values and their output
    projection per token (p rows, not p² inputs), then attention, MLP and unembedding at `=`.
    `forward_sequence` is the textbook three-position forward; the tests check they agree.
    The hooks: `mlp` (ReLU output, [n, d_mlp]) and `resid` (residual after the MLP, [n, d]).
    """

    def __init__(self, cfg: GrokConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p, d, h, m = cfg.p, cfg.d_model, cfg.n_heads, cfg.d_mlp
        self.d_head = d // h
        g = torch.Generator().manual_seed(cfg.seed)

        def param(*shape: int, fan_in: int = d) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) / math.sqrt(fan_in))

        self.W_E = param(p + 1, d)  # token p is `=`
        self.W_pos = param(3, d)
        self.W_Q = param(h, d, self.d_head)
        self.W_K = param(h, d, self.d_head)
        self.W_V = param(h, d, self.d_head)
        self.W_O = param(h, self.d_head, d)
        self.W_in = param(d, m)
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_out = param(m, d)
        self.b_out = nn.Parameter(torch.zeros(d))
        self.W_U = param(d, p + 1, fan_in=p + 1)  # the paper's code unembeds to p + 1 tokens
        self.mlp = nn.ReLU()
        self.resid = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Logits [n, p + 1] (the last is `=`, never the answer) for pairs x [n, 2] of (a, b)."""
        p = self.cfg.p
        a, b = x[:, 0], x[:, 1]
        eq = self.W_E[p] + self.W_pos[2]  # the `=` token at position 2
        q_HE = torch.einsum("d,hde->he", eq, self.W_Q) / math.sqrt(self.d_head)
        tokens = torch.stack([self.W_E[:p] + self.W_pos[0], self.W_E[:p] + self.W_pos[1]])
        rows = torch.cat([tokens.reshape(2 * p, -1), eq[None]])  # [2p + 1, d]
        score_RH = torch.einsum("rd,hde,he->rh", rows, self.W_K, q_HE)
        out_RHD = torch.einsum("rd,hde,hef->rhf", rows, self.W_V, self.W_O)
        pick = torch.stack([a, p + b, torch.full_like(a, 2 * p)], 1)  # [n, 3] rows
        # F.embedding rather than indexing: its CPU backward sums rows in a fixed order, where
        # indexing's scatter-add is not deterministic on more than one thread.
        attn_NHS = F.embedding(pick, score_RH).transpose(1, 2).softmax(-1)
        out_NHD = F.embedding(pick, out_RHD.flatten(1)).unflatten(-1, out_RHD.shape[1:])
        mid_ND = eq + (attn_NHS[..., None] * out_NHD.transpose(1, 2)).sum((1, 2))
        hidden = self.mlp(mid_ND @ self.W_in + self.b_in)
        post = self.resid(mid_ND + hidden @ self.W_out + self.b_out)
        return post @ self.W_U

    def forward_sequence(self, x: Tensor) -> Tensor:
        """The same logits from a plain causal transformer over all three positions."""
        p = self.cfg.p
        tokens = torch.cat([x, torch.full_like(x[:, :1], p)], 1)
        res = self.W_E[tokens] + self.W_pos  # [n, 3, d]
        q = torch.einsum("nsd,hde->nhse", res, self.W_Q)
        k = torch.einsum("nsd,hde->nhse", res, self.W_K)
        v = torch.einsum("nsd,hde->nhse", res, self.W_V)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(3, 3, dtype=torch.bool).triu(1)
        pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
        res = res + torch.einsum("nhse,hed->nsd", pattern @ v, self.W_O)
        res = res + F.relu(res @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return res[:, -1] @ self.W_U

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        # float64 cross-entropy, as the paper's code: float32 loses the tiny late losses.
        loss = F.cross_entropy(logits.double(), y)
        self.log("train_loss", loss.float(), prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opt = torch.optim.AdamW(
            self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas
        )
        warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / cfg.warmup, 1.0))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": warm, "interval": "step"}}
