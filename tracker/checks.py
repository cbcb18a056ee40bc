"""Input validation shared by every stage: one clear ValueError naming the argument."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor


def as_activations(value: object, name: str = "activations", min_samples: int = 2) -> Tensor:
    """Return `value` as a float32 tensor [n, d], or raise ValueError saying what is wrong.

    Accepts a torch tensor or a numpy array. Rejects anything that is not 2-D, has fewer than
    `min_samples` rows or no columns, holds NaN or Inf, or has no variance at all.
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        kind = type(value).__name__
        raise ValueError(f"{name} must be a tensor or numpy array [n, d], got {kind}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {tuple(value.shape)}")
    n, d = value.shape
    if d < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(value.shape)}")
    if n < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples (rows), got {n}")
    if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real number dtype, got {value.dtype}")
    x = value.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        kind = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise ValueError(f"{name} holds {kind} values (first at row {bad[0]}, column {bad[1]})")
    if float((x - x.mean(0)).pow(2).sum()) == 0.0:
        raise ValueError(f"{name} has zero variance: all {n} rows are identical")
    return x


def resolve_device(device: str) -> torch.device:
    """ "auto" picks CUDA when present, else CPU; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here")
    return torch.device(device)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset`
    narrows), not the machine's: torch's default counts the machine's and oversubscribes."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def idle_cores() -> int:
    """The cores fitting can have now: this process's usable cores less those other work
    keeps busy, at least one. Read from the kernel's count of runnable tasks (the fourth
    field of /proc/loadavg, its median over a few samples, less the thread reading it);
    every usable core where that count is not available. On a machine whose cores are all
    busy, one thread is the fast choice: threads that must wait for each other at every
    parallel op stall whenever one is descheduled (`experiments/bench/fit_busy.py`, 2
    cores, 2 busy processes: one thread fitted 1.9x slower than idle, two threads 8.9x)."""
    usable = usable_cores()
    runnable = _runnable()
    if runnable is None:
        return usable
    busy = max(0, runnable - 1)  # this thread is runnable while it reads
    return max(1, min(usable, (os.cpu_count() or usable) - busy))


def _runnable(samples: int = 5, interval: float = 0.01) -> int | None:
    """Median runnable tasks machine-wide (None off Linux)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """One line naming the argument and its choices: "fit must be 'a', 'b' or 'c', got 'd'"."""
    if value not in choices:
        *head, last = map(repr, choices)
        options = f"{', '.join(head)} or {last}" if head else last
        raise ValueError(f"{name} must be {options}, got {value!r}")


def check_options(
    fit: str, at_end: str, executor: str, queue_size: int, metrics_every: int
) -> None:
    """The callback's options with fixed choices or signs, each problem in one line."""
    check_choice("fit", fit, ("inline", "background", "defer"))
    check_choice("at_end", at_end, ("wait", "leave"))
    check_choice("executor", executor, ("local", "ray"))
    if executor == "ray" and fit != "background":
        raise ValueError(f"executor='ray' runs background fits: give fit='background', not {fit!r}")
    check_positive("queue_size", queue_size)
    check_positive("metrics_every", metrics_every)


def check_rows(layer: str, rows: int, inputs: int, each: int | None) -> None:
    """A watched module's rows for `inputs` probe inputs: a whole number per input (`each`,
    once known), or it ran more than once per forward."""
    if (rows % inputs) if each is None else rows != inputs * each:
        per = "" if each is None else f" ({each} each)"
        raise ValueError(
            f"module {layer!r} gave {rows} rows for {inputs} probe inputs{per}: "
            "is it called more than once per forward?"
        )


def check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")


def check_share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_threads(threads: int | None, name: str = "threads") -> int | None:
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"{name} must be a positive int or None, got {threads!r}")
    return threads


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` CPU threads (None: leave torch's setting), then restore.
    The count is the calling thread's own: a worker thread setting it leaves the training
    thread's untouched."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_steps(steps: Iterable[object], where: str = "checkpoint steps") -> list[int]:
    """The steps as ints, or ValueError naming the first that is not a non-negative integer
    (a float 1.5 would otherwise be stored as step 1 or 2, beside a real step 1)."""
    out = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"{where} must be non-negative integers, got {step!r}")
        out.append(int(step))
    return out


class ConfigDict:
    """to_dict/from_dict for a config dataclass; unknown keys (from a newer file) are ignored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def given(cls, value: object, name: str) -> Self:
        """A user's argument `name` as this config: the config itself, None (the defaults)
        or a dict of its fields; anything else, or an unknown field, is one clear error."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(
                    f"{name}: unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}"
                )
            return cls(**value)
        raise ValueError(
            f"{name} must be a {cls.__name__} or a dict of its fields, got {type(value).__name__}"
        )
