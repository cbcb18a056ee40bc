"""Training wall time with FeatureTracker over without it, measured in one run.

A small MLP trains for a few thousand steps; the tracker watches two layers on a probe set
of 1024 inputs with 20 log-spaced snapshots in "defer" mode (snapshots only). Runs with and
without the callback alternate, and the ratio of medians is printed.

    python experiments/bench/callback_overhead.py [--steps 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tracker import FeatureTracker


class MLP(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def train(steps: int, root: Path | None) -> float:
    seed_everything(0)
    x = torch.randn(8192, 64)
    data = DataLoader(TensorDataset(x, (x[:, :10]).argmax(1)), batch_size=64, shuffle=True)
    callbacks = []
    if root is not None:
        callbacks.append(
            FeatureTracker(
                modules=["net.1", "net.3"],
                probe=torch.randn(1024, 64),
                schedule="log:20",
                run="bench",
                root=root,
                fit="defer",
            )
        )
    trainer = Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    start = time.perf_counter()
    trainer.fit(MLP(), data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plain, tracked = [], []
    with tempfile.TemporaryDirectory() as tmp:
        train(50, None), train(50, Path(tmp) / "warmup")  # imports, allocator, thread pool
        for i in range(args.repeats):
            plain.append(train(args.steps, None))
            tracked.append(train(args.steps, Path(tmp) / f"run{i}"))
        n_files = len(list(Path(tmp).glob("run0/bench/activations/*/*.safetensors")))
    without, with_ = statistics.median(plain), statistics.median(tracked)
    print(f"{args.steps} steps, 2 watched layers, 1024 probe inputs, {n_files} snapshot files")
    print(f"without callback  {without:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in plain)})")
    print(f"with callback     {with_:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in tracked)})")
    print(f"ratio with/without: {with_ / without:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
