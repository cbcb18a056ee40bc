"""The toy replay's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.common import RunFiles

LAYER = "hidden"
SWEEP = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)


@dataclass(frozen=True)
class ToyConfig(RunFiles):
    n: int = 20
    m: int = 5
    sparsity: float = 0.9
    importance: float = 0.7
    steps: int = 5000
    batch_size: int = 1024
    lr: float = 1e-3
    init_std: float = 0.01
    n_probe: int = 4096
    probe_seed: int = 10_000
    """The probe inputs' own seed, the same for every training seed: two seeds' runs see the
    same inputs, so the viewer's Two runs page can pair their features."""
    snapshots: int = 16
    """Log-spaced snapshots (step 0 and the last step included)."""
    sae_steps: int = 500
    sae_init: str = "random"
    d_sae: int = 20
    k: int = 1
    """Active SAE latents per input: at S = 0.9 most inputs hold at most one represented
    feature; wider k lets latents share a feature and blur its birth (measured: recall 0.6)."""
    represented: float = 0.5
    """A true feature is represented once its column norm ‖W_i‖ reaches this, and stops
    being so when it falls below half of it (hysteresis: norms wobble around a threshold)."""
    min_activation: float = 0.25
    min_frequency: float = 0.03
    """Latents firing on under 3% of the probe set are not features of this model: a true
    feature fires on 10% of inputs (1 - S), and a 20-latent k = 1 SAE gives latents of their
    own to pairs of true features, which co-occur on ~1%. Those pair latents come and go
    between checkpoints; measured over seeds 0-4 with the activation witness, at the default
    0.5% they gave 9.2 false confident deaths per run and birth precision 0.31, at 3% 1.6
    and 0.82 (experiments/bench/toy_events.py)."""
    min_align: float = 0.9
    """An SAE feature stands for true feature i when its decoder has cosine >= this with W_i
    (true directions in superposition sit at cosine <= 0.81 from each other: pentagon 0.31,
    antipodal -1)."""
    match: dict[str, Any] = field(default_factory=dict)
    """MatchConfig fields to override (benchmarks try thresholds through this)."""
    sae: dict[str, Any] = field(default_factory=dict)
    """SAEConfig fields to override (as `seeds`, which benchmarks try through this)."""
    fit: str = "background"
    seed: int = 0
    run: str = "toy"
    root: str = "data"
