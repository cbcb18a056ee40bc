"""Lineage store speed: writes and reader queries on a synthetic run of 100 checkpoints x 4096
features (with edges, events and 23 examples per feature), measured in one run.

Each query goes through `tracker.reader`: alone, opening the file read-only for its own
duration (that open is part of the time), and shared, on the connection a viewer page's
queries share (`shared_reads`; the page's first query opens it, timed in the last row).
SAE weights are left out (they are one BLOB per checkpoint, read only when a decoder is
asked for).

    python experiments/bench/store_speed.py [--checkpoints 100] [--features 4096]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import polars as pl

from tracker.db import CHECKPOINT_TABLES, connect, insert, transaction
from tracker.reader import open_db, shared_reads
from tracker.results import EVENT_SCHEMA
from tracker.store import Writer


def checkpoint_tables(step: int, n: int, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    features = pl.DataFrame(
        {
            "feature": np.arange(n, dtype=np.int32),
            "lineage": np.arange(n) + (step // 10) * 50,
            "frequency": rng.random(n),
            "mean_activation": rng.random(n),
            "stable": rng.random(n) > 0.1,
        }
    )
    examples = pl.DataFrame(
        {
            "feature": np.repeat(np.arange(n, dtype=np.int32), 23),
            "rank": np.tile(np.arange(23, dtype=np.int32), n),
            "probe_index": rng.integers(0, 10_000, 23 * n).astype(np.int32),
            "activation": rng.random(23 * n),
        }
    )
    tables = {
        "features": features,
        "examples": examples,
        "checkpoints": pl.DataFrame(
            [
                {
                    "prev_step": step - 1 if step else None,
                    "n_probe": 10_000,
                    "stable_share": 0.9,
                    "tau": 0.7,
                    "chance_mean": 0.3,
                    "chance_quantile": 0.4,
                    "written_at": None,
                }
            ],
            schema_overrides={"prev_step": pl.Int64},
        ),
    }
    if step:
        tables["edges"] = pl.DataFrame(
            {
                "prev_step": step - 1,
                "source": np.arange(n, dtype=np.int32),
                "target": rng.permutation(n).astype(np.int32),
                "cosine": rng.random(n),
                "act_corr": rng.random(n),
                "kind": "continuation",
                "gap": 0,
            }
        )
        k = 40
        tables["events"] = pl.DataFrame(
            {
                "prev_step": [step - 1] * k,
                "kind": ["birth", "death", "split", "merge"] * (k // 4),
                "sources": [[int(i)] for i in rng.integers(0, n, k)],
                "targets": [[int(i), int(i) + 1] for i in rng.integers(0, n - 1, k)],
                "confidence": rng.random(k),
                "score": rng.random(k),
            },
            schema_overrides={"sources": pl.List(pl.Int32), "targets": pl.List(pl.Int32)},
        ).with_columns(
            pl.col("confidence").alias("match_confidence"),
            pl.lit("absent").alias("witness"),
            pl.lit(0).alias("gap"),
            pl.lit(2).alias("seeds"),
        )
        # every column the tracker writes (presence and confirmation left null)
        tables["events"] = pl.concat(
            [pl.DataFrame(schema=EVENT_SCHEMA), tables["events"]], how="diagonal_relaxed"
        )
    return tables


def write_parts(db: Path, step: int, tables: dict[str, pl.DataFrame]) -> dict[str, float]:
    """Seconds of each part of one checkpoint's write, done as `Writer.write_checkpoint`
    does it: open, the deletes that let a rewrite replace the step, each insert, commit,
    close."""
    parts: dict[str, float] = {}
    start = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        parts[name] = parts.get(name, 0.0) + now - mark
        mark = now

    with connect(db, read_only=False) as con:
        lap("open the file")
        with transaction(con):
            for table in CHECKPOINT_TABLES:
                con.execute(
                    f"DELETE FROM {table} WHERE run = ? AND layer = ? AND step = ?",
                    ["bench", "mlp", step],
                )
            lap("deletes (all tables)")
            for table, frame in tables.items():
                full = frame.with_columns(
                    pl.lit("bench").alias("run"), pl.lit("mlp").alias("layer")
                )
                if "step" not in full.columns:
                    full = full.with_columns(pl.lit(step, dtype=pl.Int64).alias("step"))
                insert(con, table, full)
                lap("insert examples" if table == "examples" else "insert the other tables")
        lap("commit")
    lap("close the file")
    parts["whole write"] = time.perf_counter() - start
    return parts


def timed(fn, repeats: int = 20, shared: bool = False) -> float:
    """Median ms of `fn`; `shared`: on the connection a page's earlier query opened."""
    fn()
    times = []
    for _ in range(repeats):
        with shared_reads() if shared else nullcontext():
            if shared:
                fn()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--features", type=int, default=4096)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        writer = Writer(db)
        writes = []
        for step in range(args.checkpoints):
            tables = checkpoint_tables(step, args.features, rng)
            start = time.perf_counter()
            writer.write_checkpoint("bench", "mlp", step, tables)
            writes.append(time.perf_counter() - start)
        size_mb = db.stat().st_size / 2**20
        reader = open_db(db)
        mid = args.checkpoints // 2
        queries = {
            "one feature's lineage, all checkpoints": lambda: reader.lineage("bench", "mlp", 123),
            "events per checkpoint (counts by kind)": lambda: reader.event_counts("bench", "mlp"),
            "one checkpoint's feature table": lambda: reader.features("bench", "mlp", mid),
            "one feature's examples": lambda: reader.examples("bench", "mlp", mid, 7),
            "events against noise (Runs page)": lambda: reader.events_against_noise("bench", "mlp"),
            "events with their lineages (Lineage page)": lambda: reader.event_lineages(
                "bench", "mlp", 0.5
            ),
            "every lineage's span (Feature page)": lambda: reader.lineage_spans("bench", "mlp"),
            "200 lineages' rows (Lineage page)": lambda: reader.lineage_rows(
                "bench", "mlp", list(range(0, 4000, 20))
            ),
        }
        print(f"{args.checkpoints} checkpoints x {args.features} features, DB {size_mb:.0f} MB")
        print(
            f"write per checkpoint: median {statistics.median(writes) * 1e3:.0f} ms, "
            f"max {max(writes) * 1e3:.0f} ms"
        )
        print(f"{'query (target <= 50 ms)':<44}{'alone':>9}{'shared':>9}")
        for name, fn in queries.items():
            print(f"{name:<44}{timed(fn):6.1f} ms{timed(fn, shared=True):6.1f} ms")

        def page() -> None:
            for fn in queries.values():
                fn()

        def shared_page() -> None:
            with shared_reads():
                page()

        alone, shared = timed(page), timed(shared_page)
        print(f"{'all in a row, as one page':<44}{alone:6.1f} ms{shared:6.1f} ms")
        whole = timed(lambda: reader.feature_map("bench", "mlp"), repeats=5)
        print(f"{'(the whole feature map, pages read it before)':<44}{whole:6.1f} ms")

        # Where a write's time goes: 10 more checkpoints, part by part.
        laps = [
            write_parts(db, step, checkpoint_tables(step, args.features, rng))
            for step in range(args.checkpoints, args.checkpoints + 10)
        ]
        print("one more checkpoint's write, part by part (median of 10)")
        for name in laps[0]:
            print(f"  {name:<42}{statistics.median(lap[name] for lap in laps) * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
