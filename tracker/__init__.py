"""Feature lineage across training: SAEs per checkpoint, matched into lineages.

`FeatureTracker` loads on first use, with Lightning: `import tracker.reader` (the viewer,
`tracker app`) does not import Lightning, which took most of the viewer's first page load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.config import MatchConfig, SAEConfig
from tracker.fit import train_sae
from tracker.lineage import Lineage, track
from tracker.match import MatchResult, match
from tracker.pipeline import analyze
from tracker.reader import open_db
from tracker.sae import SAE, FitMetrics

if TYPE_CHECKING:
    from tracker.callback import FeatureTracker

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


def __getattr__(name: str) -> Any:
    if name == "FeatureTracker":
        from tracker.callback import FeatureTracker

        return FeatureTracker
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
