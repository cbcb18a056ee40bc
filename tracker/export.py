"""Export a lineage database to Parquet, one file per table, which any engine reads."""

from __future__ import annotations

from pathlib import Path

from tracker.store import SCHEMA, connect


def export_parquet(db: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every table of `db` to `out_dir/<table>.parquet`; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = [line.split()[5] for line in SCHEMA.splitlines() if "CREATE TABLE" in line]
    written = []
    with connect(db, read_only=True) as con:
        for table in tables:
            path = out / f"{table}.parquet"
            # COPY cannot take the path as a parameter: quote it as a SQL string literal.
            literal = "'" + str(path).replace("'", "''") + "'"
            con.execute(f"COPY {table} TO {literal} (FORMAT parquet)")
            written.append(path)
    return written
