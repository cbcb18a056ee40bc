"""The lineage store's writer: whole checkpoints, one transaction each.

A checkpoint is one transaction that first deletes that checkpoint's rows: after a crash the
file holds whole checkpoints only, and re-running a checkpoint replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tracker.db import CHECKPOINT_TABLES, check_extra_name, connect, insert, transaction
from tracker.panels import Panel, panel_rows


class Writer:
    """Writes runs, metrics and whole checkpoints, each in its own short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with connect(self.path, read_only=False):
            pass  # create the schema, check the version

    def write_run(self, run: str, config: dict[str, Any]) -> None:
        """Record the run as being written (its `finished_at` cleared). A file from before
        that column gets it."""
        with connect(self.path, read_only=False) as con:
            con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS finished_at TIMESTAMP")
            con.execute(
                "INSERT OR REPLACE INTO runs (run, created_at, config, finished_at) "
                "VALUES (?, now(), ?, NULL)",
                [run, json.dumps(config)],
            )

    def finish_run(self, run: str) -> None:
        """Record that nothing more is being written to the run: the viewer stops calling
        it live."""
        with connect(self.path, read_only=False) as con:
            con.execute("UPDATE runs SET finished_at = now() WHERE run = ?", [run])

    def write_metrics(self, run: str, rows: pl.DataFrame) -> None:
        """Replace the run's metrics at the steps these rows (step, name, value) cover."""
        if rows.is_empty():
            return
        frame = rows.select(pl.lit(run).alias("run"), "step", "name", "value")
        with connect(self.path, read_only=False) as con, transaction(con):
            con.register("new_rows", frame.to_arrow())
            con.execute(
                "DELETE FROM metrics WHERE run = ? AND step IN (SELECT step FROM new_rows)", [run]
            )
            insert(con, "metrics", frame)

    def write_checkpoint(
        self,
        run: str,
        layer: str,
        step: int,
        tables: dict[str, pl.DataFrame],
        revise: tuple[int, pl.DataFrame] | None = None,
    ) -> None:
        """Replace checkpoint (run, layer, step) with `tables` {name: rows} in one
        transaction. Frames hold their table's columns but run and layer (and step, unless
        the table has its own step per row). `revise` (earlier step, its events) replaces
        the events of an earlier checkpoint in the same transaction (a later checkpoint
        confirmed some of them)."""
        unknown = set(tables) - set(CHECKPOINT_TABLES)
        if unknown:
            raise ValueError(f"not checkpoint tables: {sorted(unknown)}")
        if revise is not None and revise[0] >= step:
            raise ValueError(f"can only revise an earlier step's events, not {revise[0]}")
        with connect(self.path, read_only=False) as con, transaction(con):
            for table in CHECKPOINT_TABLES:
                con.execute(
                    f"DELETE FROM {table} WHERE run = ? AND layer = ? AND step = ?",
                    [run, layer, step],
                )
            writes = [(table, frame, step) for table, frame in tables.items()]
            if revise is not None:
                con.execute(
                    "DELETE FROM events WHERE run = ? AND layer = ? AND step = ?",
                    [run, layer, revise[0]],
                )
                writes.append(("events", revise[1], revise[0]))
            for table, frame, at in writes:
                full = frame.with_columns(pl.lit(run).alias("run"), pl.lit(layer).alias("layer"))
                if "step" not in full.columns:
                    full = full.with_columns(pl.lit(at, dtype=pl.Int64).alias("step"))
                insert(con, table, full)

    def write_probe(self, run: str, rows: pl.DataFrame) -> None:
        """Replace the run's probe inputs: probe_index, label and payload (a JSON string the
        experiment's renderer reads, e.g. the input vector)."""
        frame = rows.select(pl.lit(run).alias("run"), "probe_index", "label", "payload")
        with connect(self.path, read_only=False) as con, transaction(con):
            con.execute("DELETE FROM probe WHERE run = ?", [run])
            insert(con, "probe", frame)

    def write_panels(
        self, run: str, layer: str, step: int, panels: dict[int | None, list[Panel]]
    ) -> None:
        """Replace checkpoint (run, layer, step)'s panels for the Feature page,
        {feature (None: every feature of the checkpoint): panels in drawing order}."""
        frame = panel_rows(step, panels).select(
            pl.lit(run).alias("run"), pl.lit(layer).alias("layer"), pl.all()
        )
        with connect(self.path, read_only=False) as con, transaction(con):
            con.execute(
                "DELETE FROM panels WHERE run = ? AND layer = ? AND step = ?", [run, layer, step]
            )
            insert(con, "panels", frame)

    def write_replay(self, run: str, replay: str, config: dict[str, Any]) -> None:
        """Record that `run` is experiment `replay`'s, with the configuration it ran with
        (JSON-serialisable values; paths as strings)."""
        with connect(self.path, read_only=False) as con:
            con.execute(
                "INSERT OR REPLACE INTO replays VALUES (?, ?, ?)",
                [run, replay, json.dumps(config, default=str)],
            )

    def write_table(self, name: str, run: str, rows: pl.DataFrame) -> None:
        """Replace the run's rows of an experiment's own table (ground truth, validation),
        created from the frame's columns plus `run` the first time; a column it lacks is
        added (other runs' rows read NULL there). Lives beside the lineage in the same file
        and transaction rules."""
        check_extra_name(name)
        if "run" in rows.columns:
            raise ValueError(f"table {name}: rows must not hold a 'run' column, it is added")
        frame = rows.select(pl.lit(run).alias("run"), pl.all())
        with connect(self.path, read_only=False) as con, transaction(con):
            con.register("new_rows", frame.to_arrow())
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM new_rows LIMIT 0")
            have = {row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()}
            for column, kind, *_ in con.execute("DESCRIBE new_rows").fetchall():
                if column not in have:  # a newer version of the experiment: keep its column
                    con.execute(f'ALTER TABLE {name} ADD COLUMN "{column}" {kind}')
            con.unregister("new_rows")
            con.execute(f"DELETE FROM {name} WHERE run = ?", [run])
            insert(con, name, frame)

    def write_failure(self, run: str, layer: str, step: int, error: str) -> None:
        with connect(self.path, read_only=False) as con:
            con.execute(
                "INSERT INTO failures VALUES (?, ?, ?, ?, now())", [run, layer, step, error]
            )
