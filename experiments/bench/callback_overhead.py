"""Training wall time with FeatureTracker over without it, measured in one run.

A small MLP trains for a few thousand steps; the tracker watches two layers on a probe set
of 1024 inputs with 20 log-spaced snapshots, in "defer" mode (snapshots only) by default or
`--fit background` (SAEs of 256 latents, k 8, 300 steps, fitted in a worker thread while
training runs at the callback's `share` of its threads' time). Runs with and without the
callback alternate, and the ratios of medians are printed: of the training loop (to the last
step) and, for background, of the whole `trainer.fit` (which waits for the queued fits at the
end unless `--at-end leave`), with how many checkpoints were fitted by then.

    python experiments/bench/callback_overhead.py [--steps 3000] [--repeats 3] [--fit background]
        [--threads N] [--share S] [--at-end wait|leave]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tracker import FeatureTracker
from tracker.reader import open_db


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


class LoopTimer(Callback):
    """When the last training step ended (before any callback's end-of-training work)."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.end = time.perf_counter()


def train(
    steps: int,
    root: Path | None,
    fit: str = "defer",
    threads: int | None = None,
    share: float | None = None,
    at_end: str = "wait",
) -> tuple[float, float]:
    """(training loop, whole fit) seconds."""
    seed_everything(0)
    x = torch.randn(8192, 64)
    data = DataLoader(TensorDataset(x, (x[:, :10]).argmax(1)), batch_size=64, shuffle=True)
    timer = LoopTimer()
    callbacks: list[Callback] = [timer]
    if root is not None:
        callbacks.append(
            FeatureTracker(
                layers=["net.1", "net.3"],
                probe=torch.randn(1024, 64),
                schedule="log:20",
                run="bench",
                root=root,
                fit=fit,  # type: ignore[arg-type]
                sae={"d_sae": 256, "k": 8, "steps": 300},
                threads=threads,
                at_end=at_end,  # type: ignore[arg-type]
                **({} if share is None else {"share": share}),
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
    return timer.end - start, time.perf_counter() - start


def fitted_layers(run_dir: Path) -> int:
    """Checkpoints (layer x step) a run's lineage holds."""
    db = run_dir / "lineage.duckdb"
    return len(open_db(db).sql("SELECT layer, step FROM checkpoints")) if db.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit", choices=["defer", "background"], default="defer")
    parser.add_argument(
        "--threads", type=int, default=None, help="the callback's threads (default: its own)"
    )
    parser.add_argument(
        "--share",
        type=float,
        default=None,
        help="background: the worker's share (default: its own)",
    )
    parser.add_argument(
        "--at-end", choices=["wait", "leave"], default="wait", help="background: see at_end"
    )
    args = parser.parse_args()
    plain, tracked = [], []
    with tempfile.TemporaryDirectory() as tmp:
        train(50, None), train(50, Path(tmp) / "warmup")  # imports, allocator, thread pool
        for i in range(args.repeats):
            plain.append(train(args.steps, None))
            run = Path(tmp) / f"run{i}"
            tracked.append(train(args.steps, run, args.fit, args.threads, args.share, args.at_end))
        n_files = len(list(Path(tmp).glob("run0/bench/activations/*/*.safetensors")))
        fitted = [fitted_layers(Path(tmp) / f"run{i}" / "bench") for i in range(args.repeats)]
    print(
        f"{args.steps} steps, 2 watched layers, 1024 probe inputs, {n_files} snapshot files, "
        f"fit={args.fit}, fitting threads {args.threads or 'default'}, "
        f"share {args.share or 'default'}, "
        f"at_end {args.at_end}"
    )
    if args.fit == "background":
        print(f"checkpoints (layer x step) in the lineage when trainer.fit returned: {fitted}")
    for i, what in enumerate(["training loop", "whole fit"] if args.fit != "defer" else ["fit"]):
        without = statistics.median(t[i] for t in plain)
        with_ = statistics.median(t[i] for t in tracked)
        runs = ", ".join(f"{t[i]:.2f}" for t in tracked)
        print(
            f"{what}: without {without:.2f} s, with {with_:.2f} s (runs: {runs}), "
            f"ratio {with_ / without:.3f}"
        )


if __name__ == "__main__":
    main()
