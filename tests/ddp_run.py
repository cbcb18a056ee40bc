"""Run by tests/test_ddp.py: a 2-process CPU DDP training run with FeatureTracker.

Lightning's "ddp" strategy starts the second process by running this script again.
Usage: python tests/ddp_run.py ROOT
"""

import sys
from pathlib import Path

import torch
from lightning.pytorch import seed_everything
from tiny import TinyNet, dataset, loader, trainer

from tracker import FeatureTracker


def main(root: Path) -> None:
    seed_everything(0)
    model = TinyNet(dropout=0.0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    probe = dataset(21, seed=1).tensors[0]  # 21 rows: the shards are uneven (11 + 10)
    tracker = FeatureTracker(
        layers=["body.0"], probe=probe, schedule=[0, 2], run="ddp", root=root, probe_batch_size=4
    )
    fit = trainer(root, max_steps=4, strategy="ddp", devices=2, callbacks=[tracker])
    fit.fit(model, loader())
    if fit.is_global_zero:
        torch.save(
            {"initial": initial, "final": model.state_dict(), "probe": probe}, root / "states.pt"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
