"""SAE fits as Ray tasks against the in-process fit of the same checkpoints, in one run.

Writes a planted activation directory (32 checkpoints of 4096 x 64, one layer) and fits,
matches and stores it: in this process (`analyze`), then on an embedded Ray with one worker
of all the cores, then with one worker per core. For each it prints the end-to-end time (with
Ray's start, and without it, as on a cluster already running), each task's seconds on its
worker, the driver's share of the fit loop spent waiting for a fit, and the worker slots'
idle share (1 - task seconds / (slots x loop seconds): time the cluster was not fitting). It
checks that every run wrote the same tables. From the measured task cost and the driver's
own cost per checkpoint it gives what 900 fits (6 layers x 150 checkpoints) would take on N
workers: tasks x task cost / N, or the driver's matching and writing when that is longer.

    python experiments/bench/ray_fit.py [--checkpoints 32] [--steps 300] [--d-sae 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
sys.path.insert(0, str(ROOT / "tests"))

import golden  # noqa: E402  (the tests' table comparison)

from tracker.activations import load_activation_file  # noqa: E402
from tracker.config import MatchConfig, SAEConfig  # noqa: E402
from tracker.pipeline import Analyzer, analyze  # noqa: E402
from tracker.planted import PlantedConfig, planted_run  # noqa: E402
from tracker.remote import RayFits, fit_on_ray  # noqa: E402
from tracker.snapshots import scan_activation_dir  # noqa: E402
from tracker.store import Writer  # noqa: E402


def on_ray(acts: Path, db: Path, sae: SAEConfig, workers: int, threads: int) -> dict[str, float]:
    """One Ray run: its times and shares (see the module docstring)."""
    match = MatchConfig()
    layers = {name or "default": steps for name, steps in scan_activation_dir(acts).items()}
    writer = Writer(db)
    writer.write_run("bench", {"sae": sae.to_dict(), "match": match.to_dict(), "source": str(acts)})
    analyzers = {name: Analyzer(writer, "bench", name, sae, match) for name in layers}
    start = time.perf_counter()
    fits = RayFits(sae, match, workers=workers, threads=threads)
    started = time.perf_counter()
    fit_on_ray(layers, analyzers, load_activation_file, fits)
    end = time.perf_counter()
    writer.finish_run("bench")
    fits.close()
    loop = end - started
    tasks = fits.task_seconds
    return {
        "total": end - start,
        "loop": loop,
        "task": float(np.mean(tasks)),
        "driver_waits": fits.waited / loop,
        "slots_idle": 1 - sum(tasks) / (workers * loop),
        "driver_per_checkpoint": (loop - fits.waited) / len(tasks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="SAE steps per fit")
    parser.add_argument("--d-sae", type=int, default=128)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    sae = SAEConfig(d_sae=args.d_sae, k=8, steps=args.steps, batch_size=1024)
    steps = tuple(range(0, 10 * args.checkpoints, 10))
    run = planted_run(PlantedConfig(d=64, n=4096, steps=steps, births=1, deaths=1, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts"
        acts.mkdir()
        for step, x in run.acts.items():
            np.save(acts / f"{step}.npy", x.numpy())
        print(f"{args.checkpoints} checkpoints of 4096 x 64; SAE {args.d_sae} latents, k 8, "
              f"{args.steps} steps, {sae.seeds} seeds per checkpoint; {cores} cores; "
              f"torch {torch.__version__}")  # fmt: skip
        start = time.perf_counter()
        analyze(acts, Path(tmp) / "local.duckdb", "bench", sae=sae)
        local = time.perf_counter() - start
        print(f"in-process ({torch.get_num_threads()} threads): {local:.1f} s, "
              f"{local / args.checkpoints:.2f} s per checkpoint")  # fmt: skip
        want = golden.snapshot(Path(tmp) / "local.duckdb", Path(tmp))
        print("ray: workers x threads | total s (÷ in-process) | without start | task s | "
              "driver waits | slots idle | same tables")  # fmt: skip
        measured = {}
        for workers, threads in ((1, cores), (cores, 1)):
            db = Path(tmp) / f"ray{workers}.duckdb"
            m = on_ray(acts, db, sae, workers, threads)
            differ = golden.differences(golden.snapshot(db, Path(tmp)), want)
            same = "yes" if not differ else f"{len(differ)} tables differ"
            measured[workers] = m
            print(f"     {workers} x {threads}            "
                  f"| {m['total']:6.1f} ({m['total'] / local:.2f}) "
                  f"| {m['loop']:6.1f} ({m['loop'] / local:.2f}) | {m['task']:.2f} "
                  f"| {m['driver_waits']:.0%} | {m['slots_idle']:.0%} | {same}")  # fmt: skip
    m = measured[cores]
    print(f"900 fits at {m['task']:.2f} s per task (driver {m['driver_per_checkpoint']:.2f} s "
          "per checkpoint):")  # fmt: skip
    for n in (1, 8, 32, 128):
        hours = max(900 * m["task"] / n, 900 * m["driver_per_checkpoint"]) / 3600
        print(f"  {n:4d} workers: {hours:.2f} h")


if __name__ == "__main__":
    main()
