"""Replay 3: induction heads forming in a two-layer attention-only language model (Olsson et
al. 2022), trained on the standard library's source by characters."""

from experiments.induction.config import InductionConfig
from experiments.induction.run import run

__all__ = ["InductionConfig", "run"]
