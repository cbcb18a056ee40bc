"""SAE fits as Ray tasks: each (layer, step) fit, with its noise-floor seeds, runs wherever the
cluster has room; matching and store writes stay on the driver, in step order, while later fits
are in flight.

Ray is an optional extra (`pip install -e .[ray]`). With no address Ray starts on this machine,
embedded, and stops with the run; with one (`ray://...` or `auto`) the fits go to that cluster,
whose workers must see the run's activation files at the same paths. A task that raises or
whose worker dies is retried (`retries` times); a fit that keeps failing is written to the
`failures` table and the run goes on, as the callback's background fitting does.

With `SAEConfig.init == "previous"` a layer's fits form a chain (each warm-starts from the one
before), so one layer's fits run one after another and layers run side by side; with
`init="random"` every fit is independent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tracker.activations import load_activation_file
from tracker.checkpoint import Checkpoint, fit_checkpoint
from tracker.config import MatchConfig, SAEConfig
from tracker.sae import SAE

log = logging.getLogger(__name__)

WARM_FROM = 3
"""A warm-started fit is given this many earlier fits of its layer, newest first, and starts
from the newest that succeeded (in-process fitting starts from the last one written)."""


CONNECT_SECONDS = 5.0
"""How long a cluster's address may take to answer before the run says it cannot be reached
(Ray itself retries for minutes, printing warnings)."""


def preflight(address: str | None, threads: int = 1) -> None:
    """Before anything is written: Ray can be imported, the cluster at `address` (if one is
    given) answers, and Ray started here would have room for fits of `threads` threads."""
    _ray()
    if address is not None:
        check_address(address)
    elif threads > (os.cpu_count() or 1):
        raise ValueError(too_wide(threads, os.cpu_count() or 1))


def too_wide(threads: int, largest: float) -> str:
    return (
        f"fits of {threads} threads fit no node of this Ray cluster (the largest has "
        f"{largest:g} CPUs): ask for fewer threads"
    )


def check_address(address: str) -> None:
    """A cluster address naming host:port (or ray://host:port) must accept a connection
    within `CONNECT_SECONDS`; "auto" is left to Ray."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({err.strerror or err}): start one with "
            "`ray start --head`, or leave the address out to start Ray here"
        ) from err


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            "executor='ray' needs Ray: pip install -e '.[ray]' (or pip install ray)"
        ) from err
    return ray


@dataclass
class RayFits:
    """Fits submitted in the order the driver will use them; `take` returns them in that
    order. At most `ahead` fits are submitted and not yet taken, so a slow driver never
    piles the cluster's results up in memory."""

    sae: SAEConfig
    match: MatchConfig
    address: str | None = None
    """A running cluster's address; None starts Ray here, embedded (or uses the Ray this
    process has already started)."""
    workers: int | None = None
    """Embedded only: fits at a time (default: the machine's cores / threads)."""
    threads: int = 1
    """CPU threads each fit uses (and asks the cluster for)."""
    retries: int = 2
    """Further tries of a fit that raised, and of one whose worker died."""
    ahead: int | None = None
    """Fits in flight or done but not yet taken (default: twice the cluster's slots)."""
    waited: float = 0.0
    """Seconds the driver spent waiting for a fit (`take`): its idle time."""
    task_seconds: list[float] = field(default_factory=list)
    """Each fit's seconds on its worker, in the order taken."""
    _started: bool = False
    _queue: deque[tuple[str, int, Any]] = field(default_factory=deque)
    _pending: deque[tuple[str, int, object]] = field(default_factory=deque)
    _chains: dict[str, list[object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ray = _ray()
        if self.address is not None:
            check_address(self.address)
        elif self.workers is None and not ray.is_initialized():
            preflight(None, self.threads)  # before Ray starts
        if not ray.is_initialized():
            options: dict[str, Any] = {"configure_logging": False, "include_dashboard": False}
            if self.address is None and self.workers is not None:
                options["num_cpus"] = self.workers * self.threads
            ray.init(address=self.address, **options)
            self._started = True
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if self.threads > largest:  # Ray would wait for such a node for ever
            if self._started:
                ray.shutdown()
            raise ValueError(too_wide(self.threads, largest))
        resources = ray.cluster_resources()
        self.gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        slots = max(1, int(resources.get("CPU", 1) // self.threads))
        self.ahead = self.ahead or 2 * slots
        self._task = ray.remote(_fit).options(
            num_cpus=self.threads,
            num_gpus=self.gpus,
            max_retries=self.retries,  # a worker that dies: Ray runs the task again
        )

    def add(self, layer: str, step: int, source: object, previous: SAE | None = None) -> None:
        """Queue the fit of `layer` at `step` on `source` (an activation file's path, or a
        tensor, which is put in the object store). `previous`: the SAE the layer's first fit
        here warm-starts from (a resumed run's last checkpoint), with init="previous"."""
        chain = self._chains.setdefault(layer, [])
        if not chain and previous is not None and self.sae.init == "previous":
            seen = Checkpoint(-1, previous, torch.empty(0, previous.d))
            chain.append(_ray().put(Fitted(seen, "", 0.0)))
        self._queue.append((layer, step, source))
        self._submit()

    def take(self, poll: Callable[[], None] | None = None) -> tuple[str, int, Checkpoint | str]:
        """The oldest queued fit: (layer, step, its checkpoint without activations, or the
        error that ended its last try). While it runs, `poll` is called every 0.2 s (to
        queue more fits)."""
        ray = _ray()
        self._submit()
        layer, step, ref = self._pending.popleft()
        start = time.perf_counter()
        while poll is not None and not ray.wait([ref], timeout=0.2)[0]:
            poll()
        try:
            done: Fitted = ray.get(ref)
            self.task_seconds.append(done.seconds)
            result: Checkpoint | str = done.checkpoint or done.error
        except Exception as err:  # its worker died on every try
            result = f"{type(err).__name__}: {err}"
        self.waited += time.perf_counter() - start
        self._submit()
        return layer, step, result

    def close(self) -> None:
        """Cancel the fits not taken (an interrupted run leaves no work on a cluster), and
        stop Ray if this object started it."""
        self._queue.clear()
        for _, _, ref in self._pending:
            _ray().cancel(ref)
        self._pending.clear()
        self._chains.clear()
        if self._started:
            _ray().shutdown()
            self._started = False

    def __len__(self) -> int:
        return len(self._queue) + len(self._pending)

    def _submit(self) -> None:
        assert self.ahead is not None
        while self._queue and len(self._pending) < self.ahead:
            layer, step, source = self._queue.popleft()
            chain = self._chains.setdefault(layer, [])
            earlier = list(reversed(chain[-WARM_FROM:])) if self.sae.init == "previous" else []
            if isinstance(source, Path):
                source = str(source)
            tries = self.retries + 1
            ref = self._task.remote(
                step, source, self.sae, self.match, self.threads, tries, *earlier
            )
            if self.sae.init == "previous":
                chain.append(ref)
                del chain[:-WARM_FROM]
            self._pending.append((layer, step, ref))


@dataclass
class Fitted:
    """What a fit task returns: the checkpoint without its activations, or, when every try
    raised, the last error as text (a task never raises, so that the fits warm-started from
    it still run); and the task's seconds, wall clock on its worker."""

    checkpoint: Checkpoint | None
    error: str
    seconds: float


def _fit(
    step: int,
    source: object,
    sae: SAEConfig,
    match: MatchConfig,
    threads: int,
    tries: int,
    *earlier: Fitted,
) -> Fitted:
    """The task: fit one checkpoint where it runs, warm-started from the newest of `earlier`
    that succeeded; returned without its activations (the driver reads them itself)."""
    start = time.perf_counter()
    torch.set_num_threads(threads)
    previous = next((e.checkpoint.sae for e in earlier if e.checkpoint is not None), None)
    error = ""
    for _ in range(tries):
        try:
            acts = load_activation_file(source) if isinstance(source, str) else source
            cp = fit_checkpoint(step, acts, sae, match, previous)
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
            continue
        cp.acts = torch.empty(0, cp.acts.shape[1])
        return Fitted(cp, "", time.perf_counter() - start)
    return Fitted(None, error, time.perf_counter() - start)


def fit_on_ray(
    layers: Mapping[str, Mapping[int, Any]],
    analyzers: Mapping[str, Any],
    load: Callable[[Any], object],
    fits: RayFits,
    progress: bool = False,
) -> None:
    """Every (layer, step) of `layers` fitted through `fits`, step by step across layers (so
    that layers run side by side), each chained and written by its layer's
    `pipeline.Analyzer` in that order on `load`-ed activations; a fit that kept failing goes
    to the `failures` table."""
    jobs = sorted((step, layer) for layer, steps in layers.items() for step in steps)
    bar = tqdm(total=len(jobs), desc="checkpoints", disable=not progress)
    try:
        for step, layer in jobs:
            fits.add(layer, step, layers[layer][step])
        while len(fits):
            layer, step, result = fits.take()
            analyzer = analyzers[layer]
            if isinstance(result, str):
                log.error("fitting layer %s at step %d failed on Ray: %s", layer, step, result)
                analyzer.writer.write_failure(analyzer.run, layer, step, result)
            else:
                analyzer.add(step, load(layers[layer][step]), result)
            bar.update()
    finally:
        bar.close()
