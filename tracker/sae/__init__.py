"""Sparse autoencoders: one architecture per module, registered by name."""

from tracker.sae import relu, topk  # noqa: F401  (importing registers the architectures)
from tracker.sae.base import SAE, FitMetrics, StepLoss
from tracker.sae.registry import ARCHITECTURES, register
from tracker.sae.relu import ReLUSAE
from tracker.sae.topk import TopKSAE

__all__ = ["ARCHITECTURES", "SAE", "FitMetrics", "ReLUSAE", "StepLoss", "TopKSAE", "register"]
