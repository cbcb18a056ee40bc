"""The grokking replay's configuration: the published setup, and a tiny one for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.common import ROOT, RunFiles, geometric

LAYERS = {"mlp": "mlp", "resid": "resid"}


PAPER = {"memorisation": 1_400, "circuit formation": 9_400, "cleanup": 14_000}
"""Nanda et al. (2023): where each phase ends, in steps, for p = 113."""


@dataclass(frozen=True)
class GrokConfig(RunFiles):
    p: int = 113
    train_fraction: float = 0.3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 10
    steps: int = 15_000
    seed: int = 0
    layer: str = "mlp"
    """"mlp": the ReLU hidden layer at `=` ([p², d_mlp]); "resid": the residual stream at `=`
    after the MLP ([p², d_model])."""
    log_snapshots: int = 14
    """Log-spaced snapshots over the whole run (step 0 and the last step included)..."""
    dense: tuple[int, int, int] = (6_000, 14_000, 17)
    """...plus this many evenly spaced ones from the first to the second step: circuit
    formation and the clean-up, where test accuracy jumps (at ~13k with seed 0, as in the
    paper; every 500 steps)."""
    eval_every: int = 100
    """Record the weights (and so every progress measure) this often."""
    d_sae: int = 256
    k: int = 8
    sae_steps: int = 300
    sae_batch: int = 2048
    fit: str = "defer"
    """SAEs after training (the tracker's `defer` mode). Fitting in the background shares
    the two cores with training, which changes float reductions in their last bits, and the
    step at which the network groks is sensitive to that: runs of one seed then differ."""
    run: str = "grokking"
    root: Path = field(default=ROOT / "data")

    def schedule(self) -> list[int]:
        """Step 0, `log_snapshots` geometric steps, the dense window, the last step."""
        logs = geometric(self.steps, self.log_snapshots)
        first, last, count = self.dense
        dense = {round(first + i * (last - first) / max(count - 1, 1)) for i in range(count)}
        return sorted({0, self.steps} | {s for s in logs | dense if 0 <= s <= self.steps})


TINY = dict(
    p=37,
    train_fraction=0.5,
    d_model=32,
    d_mlp=64,
    lr=1e-2,
    steps=1200,
    log_snapshots=6,
    dense=(200, 1000, 5),
    eval_every=50,
    d_sae=32,
    k=4,
    sae_steps=200,
    sae_batch=512,
)
"""A configuration small enough for the tests (~20 s): with seed 0 it memorises by step 150
and groks (test accuracy >= 95%) at step 1000."""
