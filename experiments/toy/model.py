"""The toy model of superposition and its data."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from experiments.toy.config import ToyConfig


def sparse_features(n_rows: int, n: int, sparsity: float, generator: torch.Generator) -> Tensor:
    """[n_rows, n]: each feature zero with probability `sparsity`, else uniform on [0, 1]."""
    x = torch.rand(n_rows, n, generator=generator)
    return x * (torch.rand(n_rows, n, generator=generator) >= sparsity)


class SparseFeatures(IterableDataset[Tensor]):
    """An endless stream of fresh batches, as the paper trains."""

    def __init__(self, cfg: ToyConfig) -> None:
        self.cfg = cfg

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.cfg.seed + 1)
        while True:
            yield sparse_features(self.cfg.batch_size, self.cfg.n, self.cfg.sparsity, g)


class ToyModel(L.LightningModule):
    """x' = ReLU(WᵀW x + b); `hidden` is the linear map h = W x (W = hidden.weight, [m, n])."""

    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden = nn.Linear(cfg.n, cfg.m, bias=False)
        nn.init.normal_(self.hidden.weight, std=cfg.init_std)
        self.b = nn.Parameter(torch.zeros(cfg.n))
        self.register_buffer("importance", cfg.importance ** torch.arange(cfg.n).float())

    @property
    def W(self) -> Tensor:
        return self.hidden.weight

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.hidden(x) @ self.W + self.b)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = (self.importance * (batch - self(batch)) ** 2).mean()
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.cfg.lr)


def train_plain(cfg: ToyConfig) -> Tensor:
    """The same model trained in a bare loop (no tracker): for the sparsity sweep."""
    torch.manual_seed(cfg.seed)
    model = ToyModel(cfg)
    opt = model.configure_optimizers()
    for x, _ in zip(SparseFeatures(cfg), range(cfg.steps), strict=False):
        loss = (model.importance * (x - model(x)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.W.detach().clone()
