"""Progress measures from the recorded weights, and the phases they mark."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from experiments.grokking.model import Transformer


def progress_measures(
    model: Transformer, states: dict[int, dict[str, Tensor]], keys: list[int], train: Tensor
) -> pl.DataFrame:
    """Per recorded step: train/test loss and accuracy, restricted and excluded loss, and the
    total squared weight. Restricted keeps the logits' components along cos and sin of
    w(a + b) for the key frequencies (plus the mean over pairs); excluded removes them and is
    measured on the training pairs, where it rises as the circuit replaces memorisation."""
    p = model.cfg.p
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    y = pairs.sum(1) % p
    s = (pairs.sum(1) % p).double() * 2 * math.pi / p
    dirs = torch.stack([f(k * s) for k in keys for f in (torch.cos, torch.sin)], 1)  # [p², 2K]
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    rows = []
    for step in sorted(states):
        model.load_state_dict(states[step])
        with torch.no_grad():
            logits = model(pairs).double()
        along = dirs @ (dirs.T @ logits)
        restricted = logits.mean(0, keepdim=True) + along
        excluded = logits - along
        correct = logits.argmax(1) == y
        rows.append(
            {
                "step": step,
                "train_loss": F.cross_entropy(logits[train], y[train]).item(),
                "test_loss": F.cross_entropy(logits[~train], y[~train]).item(),
                "train_acc": correct[train].double().mean().item(),
                "test_acc": correct[~train].double().mean().item(),
                "restricted_loss": F.cross_entropy(restricted, y).item(),
                "excluded_loss": F.cross_entropy(excluded[train], y[train]).item(),
                "weight_norm": sum(v.double().pow(2).sum() for v in states[step].values()).item(),
            }
        )
    return pl.DataFrame(rows)


def first_step(progress: pl.DataFrame, column: str, at_least: float) -> int | None:
    """The first recorded step from which `column` stays >= `at_least` to the end."""
    rows = progress.sort("step")
    below = rows.filter(pl.col(column) < at_least)
    after = rows if below.is_empty() else rows.filter(pl.col("step") > below["step"].max())
    return None if after.is_empty() else int(after["step"][0])


def phases(progress: pl.DataFrame) -> dict[str, int | None]:
    """Phase boundaries measured on this run's curves, after Nanda et al.'s reading of theirs.

    memorised: train accuracy reaches 99% (and stays). Memorisation ends where the test
    loss peaks. Clean-up is the stretch where weight decay shrinks the weights fastest: the
    steps around the steepest fall of log(total squared weight) (after the test-loss peak)
    where it falls at least half as fast. grokked: test accuracy reaches 95% (and stays).
    """
    rows = progress.sort("step")
    memorised = first_step(rows, "train_acc", 0.99)
    grokked = first_step(rows, "test_acc", 0.95)
    peak_at = int(rows["test_loss"].arg_max() or 0)
    peak = int(rows["step"][peak_at])
    after = rows.slice(peak_at)
    steps = after["step"].to_numpy()
    log_norm = np.log(after["weight_norm"].to_numpy())
    start = end = None
    if len(steps) > 2:
        fall = -np.diff(log_norm) / np.diff(steps)  # per step, between recorded steps
        top = int(np.argmax(fall))
        if fall[top] > 0:
            lo = hi = top
            while lo > 0 and fall[lo - 1] >= fall[top] / 2:
                lo -= 1
            while hi < len(fall) - 1 and fall[hi + 1] >= fall[top] / 2:
                hi += 1
            start, end = int(steps[lo]), int(steps[hi + 1])
    return {
        "memorised": memorised,
        "memorisation_end": peak,
        "cleanup_start": start,
        "cleanup_end": end,
        "grokked": grokked,
    }


PHASES = ("memorisation", "circuit formation", "cleanup", "after cleanup")


def phase_of(step: int, bounds: dict[str, int | None]) -> str:
    """The phase a checkpoint belongs to (a boundary step closes its phase)."""
    ends = [bounds["memorisation_end"], bounds["cleanup_start"], bounds["cleanup_end"]]
    for name, end in zip(PHASES, ends, strict=False):
        if end is None or step <= end:
            return name
    return PHASES[-1]
