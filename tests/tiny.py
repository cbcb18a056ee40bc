"""Small shared fixtures: a tiny LightningModule with dropout and batch norm, a quiet
Trainer, and a small planted lineage run."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tracker.planted import PlantedConfig, PlantedRun, planted_run


def one_of_each(n: int, steps: tuple[int, ...] = (0, 10, 20), **overrides) -> PlantedRun:
    """d=32, 20 true features, one birth, death, split and merge at every transition."""
    cfg = dict(d=32, n_true=20, n=n, steps=steps, births=1, deaths=1, splits=1, merges=1, seed=0)
    return planted_run(PlantedConfig(**{**cfg, **overrides}))


class TinyNet(LightningModule):
    def __init__(self, d_in: int = 6, hidden: int = 8, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x).squeeze(-1), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def dataset(n: int = 64, d_in: int = 6, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    return TensorDataset(x, x.sum(1) + 0.1 * torch.randn(n, generator=g))


def loader(n: int = 64, d_in: int = 6) -> DataLoader:
    return DataLoader(dataset(n, d_in), batch_size=8, shuffle=True)


def trainer(root, **kwargs) -> Trainer:
    defaults = dict(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return Trainer(**{**defaults, **kwargs})
