"""Feature lineage across training: SAEs per checkpoint, matched into lineages."""

from tracker.callback import FeatureTracker
from tracker.config import SAEConfig
from tracker.fit import train_sae
from tracker.sae import SAE, FitMetrics

__all__ = ["SAE", "FeatureTracker", "FitMetrics", "SAEConfig", "train_sae"]
