"""Export a lineage database to Parquet, one file per table, which any engine reads."""

from __future__ import annotations

from pathlib import Path

from tracker.db import connect


def export_parquet(db: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every table of `db` to `out_dir/<table>.parquet`, the store's and those a replay
    added (`Writer.write_table`); returns the files written."""
    out = Path(out_dir)
    written = []
    with connect(db, read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name"
            ).fetchall()
        ]
        out.mkdir(parents=True, exist_ok=True)
        for table in tables:
            path = out / f"{table}.parquet"
            # COPY cannot take the path as a parameter: quote it as a SQL string literal.
            literal = "'" + str(path).replace("'", "''") + "'"
            con.execute(f'COPY "{table}" TO {literal} (FORMAT parquet)')
            written.append(path)
    return written
