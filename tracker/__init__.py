"""Feature lineage across training: SAEs per checkpoint, matched into lineages."""

from tracker.callback import FeatureTracker
from tracker.config import MatchConfig, SAEConfig
from tracker.fit import train_sae
from tracker.lineage import Lineage, track
from tracker.match import MatchResult, match
from tracker.pipeline import analyze
from tracker.reader import open_db
from tracker.sae import SAE, FitMetrics

__all__ = [
    "SAE",
    "FeatureTracker",
    "FitMetrics",
    "Lineage",
    "MatchConfig",
    "MatchResult",
    "SAEConfig",
    "analyze",
    "match",
    "open_db",
    "track",
    "train_sae",
]
