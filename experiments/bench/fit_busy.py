"""`tracker fit` on a machine whose cores are all busy, against the same fit on an idle one.

Writes a planted activation directory (4 checkpoints of 4096 x 64) and times `tracker
analyze DIR` (what `tracker fit` runs per layer) in one run: on the idle machine with the
default threads, then while competing processes keep every usable core busy, with the
default threads (`idle_cores`: the usable cores other work leaves idle, at least one) and
with every usable core forced (`--threads`). A fair scheduler gives a fit of t threads among
c competitors on n cores t / (t + c) * n / t of its cores' time, so the "load factor"
(t + c) / n is how much slower than idle a well-behaved fit may be.

    python experiments/bench/fit_busy.py [--checkpoints 4] [--competitors N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tracker.checks import usable_cores
from tracker.cli import main as tracker_cli
from tracker.planted import PlantedConfig, planted_run


def spin() -> None:
    """A competing job: one core, busy until it is terminated."""
    x = 0
    while True:
        x += 1


def fit(acts: Path, db: Path, threads: int | None) -> tuple[float, int]:
    """Seconds for `tracker analyze` and the thread count it ran with."""
    db.unlink(missing_ok=True)
    args = ["analyze", str(acts), "--db", str(db), "--run", "bench"]
    args += ["--d-sae", "128", "--k", "8", "--steps", "300", "--batch-size", "1024"]
    if threads is not None:
        args += ["--threads", str(threads)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if tracker_cli(args) != 0:
            raise SystemExit("tracker analyze failed")
    return time.perf_counter() - start, torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--competitors", type=int, default=usable_cores())
    args = parser.parse_args()
    cores = usable_cores()
    run = planted_run(PlantedConfig(steps=tuple(range(0, 100 * args.checkpoints, 100)), n=4096))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts"
        acts.mkdir()
        for step, x in run.acts.items():
            np.save(acts / f"{step}.npy", x.numpy())
        db = Path(tmp) / "fit.duckdb"
        fit(acts, db, None)  # warm-up: imports, allocator, thread pool
        idle, idle_threads = fit(acts, db, None)
        idle_one, _ = fit(acts, db, 1)
        context = multiprocessing.get_context("spawn")
        competitors = [context.Process(target=spin, daemon=True) for _ in range(args.competitors)]
        for p in competitors:
            p.start()
        try:
            time.sleep(2.0)  # let the competitors reach the run queue
            for label, threads in (("default", None), ("forced", cores)):
                seconds, used = fit(acts, db, threads)
                rows.append((label, used, seconds, (used + args.competitors) / cores))
        finally:
            for p in competitors:
                p.terminate()
    print(
        f"{args.checkpoints} planted checkpoints of 4096 x 64, SAE 128 latents k 8 300 steps, "
        f"{cores} usable cores"
    )
    print(f"idle, default ({idle_threads} threads): {idle:.1f} s; idle, 1 thread: {idle_one:.1f} s")
    for label, used, seconds, load in rows:
        own = idle_one if used == 1 else idle
        print(
            f"{args.competitors} busy competitors, {label} ({used} thread(s)): {seconds:.1f} s, "
            f"{seconds / idle:.2f}x idle, {seconds / own:.2f}x idle at its thread count "
            f"(load factor {load:.1f})"
        )


if __name__ == "__main__":
    main()
