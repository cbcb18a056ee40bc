"""What the replays share: a quiet single-device Trainer for a fixed number of steps."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L


def trainer(steps: int, callbacks: Sequence[L.Callback], progress: bool) -> L.Trainer:
    """Runs `steps` optimiser steps on one device (CUDA when present), with no logger,
    checkpoints or model summary: the tracker records what the replays need."""
    return L.Trainer(
        max_steps=steps,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        accelerator="auto",
        devices=1,
    )
