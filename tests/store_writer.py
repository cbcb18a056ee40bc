"""Run by tests/test_store.py: writes N synthetic checkpoints, printing each step first.

Usage: python tests/store_writer.py DB N ROWS
"""

import sys

import polars as pl

from tracker.store import Writer


def main(db: str, n: int, rows: int) -> None:
    writer = Writer(db)
    for step in range(n):
        print(f"writing {step}", flush=True)
        features = pl.DataFrame(
            {
                "feature": range(rows),
                "lineage": range(rows),
                "frequency": [0.1] * rows,
                "mean_activation": [1.0] * rows,
                "stable": [True] * rows,
            }
        )
        examples = pl.DataFrame(
            {
                "feature": [f % rows for f in range(20 * rows)],
                "rank": [f // rows for f in range(20 * rows)],
                "probe_index": range(20 * rows),
                "activation": [1.0] * (20 * rows),
            }
        )
        checkpoint = pl.DataFrame(
            [
                {
                    "prev_step": step - 1,
                    "n_probe": 100,
                    "stable_share": 1.0,
                    "tau": 0.7,
                    "chance_mean": 0.3,
                    "chance_quantile": 0.4,
                    "written_at": None,
                }
            ]
        )
        writer.write_checkpoint(
            "r", "L", step, {"features": features, "examples": examples, "checkpoints": checkpoint}
        )
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
