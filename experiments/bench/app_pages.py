"""Viewer page times in a real browser on the store benchmark's run (100 checkpoints x 4096
features, with decoders and training metrics), measured in one run: the first load, then the
median of `--rounds` further visits of every page (single visits vary by 2x on this machine).

Needs Debian's chromium (/usr/bin/chromium) and playwright (the dev extra).

    python experiments/bench/app_pages.py [--checkpoints 100] [--features 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from playwright.sync_api import sync_playwright
from store_speed import checkpoint_tables
from viewer_server import launch, serve

from tracker import SAEConfig
from tracker.sae import TopKSAE
from tracker.store import Writer

D = 32
PAGES = [("", "Runs"), ("lineage", "Lineage"), ("feature", "Feature"), ("compare", "Compare")]


def build(db: Path, checkpoints: int, features: int) -> None:
    rng = np.random.default_rng(0)
    writer = Writer(db)
    writer.write_run("bench", {"source": "synthetic"})
    sae = TopKSAE(D, features, SAEConfig(d_sae=features, k=8))
    for step in range(checkpoints):
        tables = checkpoint_tables(step, features, rng)
        with torch.no_grad():
            sae.W_dec.normal_()
            sae.normalize_decoder()
        tables["sae_weights"] = pl.DataFrame(
            [{"cfg": json.dumps(sae.meta()), "weights": sae.to_bytes()}]
        )
        tables["saes"] = pl.DataFrame(
            [
                {
                    "d_in": D,
                    "d_sae": features,
                    "arch": "topk",
                    "k": 8,
                    "seed": 0,
                    "fvu": 0.1,
                    "l0": 8.0,
                    "dead_fraction": 0.01,
                    "fit_seconds": 1.0,
                }
            ]
        )
        writer.write_checkpoint("bench", "mlp", step, tables)
    steps = np.arange(0, checkpoints * 10)
    writer.write_metrics(
        "bench", pl.DataFrame({"step": steps, "name": "train_loss", "value": 1 / (1 + steps / 50)})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        build(db, args.checkpoints, args.features)
        with serve(db) as base, sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            print(f"{args.checkpoints} checkpoints x {args.features} features (d={D})")
            seconds: dict[str, list[float]] = {title: [] for _, title in PAGES}
            for _ in range(1 + args.rounds):
                for path, title in PAGES:
                    start = time.perf_counter()
                    page.goto(f"{base}/{path}?run=bench&layer=mlp&lineage=123")
                    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
                    page.locator(".vega-embed").first.wait_for(timeout=120_000)
                    seconds[title].append(time.perf_counter() - start)
            browser.close()
        first = ", ".join(f"{t} {s[0]:.2f} s" for t, s in seconds.items())
        later = ", ".join(f"{t} {statistics.median(s[1:]):.2f} s" for t, s in seconds.items())
        print(f"{'first load':<26}{first}")
        print(f"{f'median of {args.rounds} later visits':<26}{later}  (target <= 2 s)")


if __name__ == "__main__":
    main()
