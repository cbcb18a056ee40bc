"""Golden tables: a seeded tiny replay writes the tables it wrote when its golden file was made.

A refactor of a replay or of the core must leave its tables as they were; this is the check.
`snapshot` reads every table of a run's file into a comparable record; `check` compares it with
`tests/golden/NAME.json`, or writes that file when `TRACKER_GOLDEN=write` is set (do that when a
change of results is intended, and say why in the commit).

What counts as equal: every string, integer, boolean, list shape and JSON key exactly; every
float to a relative 1e-4 (a seeded run repeats itself bit for bit on one machine, but another
CPU's kernels may sum in another order). Time stamps and fit times are left out, paths under the
run's root are written as `<root>`, and binary columns (SAE weights, panel arrays) count by their
length: what they hold shows in the statistics and events written beside them. A table of more
than `FULL_ROWS` rows or `FULL_FLOATS` floats is kept as a digest (a hash of its discrete parts
and three sums of its floats), so the golden files stay small; the rest row by row.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

GOLDEN = Path(__file__).resolve().parent / "golden"
VOLATILE = {"written_at", "created_at", "finished_at", "failed_at", "fit_seconds"}
FULL_ROWS, FULL_FLOATS = 400, 2_000
RTOL, ATOL = 1e-4, 1e-6


def _split(value: Any, root: str, floats: list[float]) -> Any:
    """The discrete part of a cell (floats replaced by "f", collected into `floats`)."""
    if isinstance(value, float):
        if math.isfinite(value):
            floats.append(value)
            return "f"
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(bytes(value))}
    if isinstance(value, str):
        if value[:1] in "[{":
            try:
                return _split(json.loads(value), root, floats)
            except json.JSONDecodeError:
                pass
        return value.replace(root, "<root>")
    if isinstance(value, dict):
        return {k: _split(v, root, floats) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, (list, tuple)):
        return [_split(v, root, floats) for v in value]
    return value


def _row_key(row: tuple[str, list[float]]) -> tuple[str, list[float]]:
    return row[0], [float(f"{f:.4g}") for f in row[1]]


def snapshot(db: Path, root: Path) -> dict[str, Any]:
    """Every table of `db`, in a form `check` compares (see the module's docstring)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        record: dict[str, Any] = {}
        for table in sorted(tables):
            described = con.execute(f'DESCRIBE "{table}"').fetchall()
            columns = [c[0] for c in described if c[0] not in VOLATILE]
            select = ", ".join(f'"{c}"' for c in columns)
            rows = []
            for cells in con.execute(f'SELECT {select} FROM "{table}"').fetchall():
                floats: list[float] = []
                discrete = json.dumps(_split(list(cells), str(root), floats), sort_keys=True)
                rows.append((discrete, floats))
            rows.sort(key=_row_key)
            entry: dict[str, Any] = {"columns": columns, "count": len(rows)}
            if len(rows) <= FULL_ROWS and sum(len(f) for _, f in rows) <= FULL_FLOATS:
                entry["rows"] = [[json.loads(d), f] for d, f in rows]
            else:
                text = "\n".join(d for d, _ in rows).encode()
                values = np.array([f for _, fs in rows for f in fs], dtype=np.float64)
                weights = np.arange(1, len(values) + 1) / max(len(values), 1)
                entry["discrete_sha256"] = hashlib.sha256(text).hexdigest()
                entry["float_sums"] = [
                    len(values),
                    float(values.sum()),
                    float(np.abs(values).sum()),
                    float((values * weights).sum()),
                ]
            record[table] = entry
        return record
    finally:
        con.close()


def _floats_close(got: list[float], want: list[float], scale: float = 0.0) -> bool:
    if len(got) != len(want):
        return False
    return bool(np.allclose(got, want, rtol=RTOL, atol=max(ATOL, scale * RTOL)))


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, one line per table (empty when they are equal)."""
    found = []
    if sorted(got) != sorted(want):
        found.append(f"tables: {sorted(got)} != {sorted(want)}")
    for table in sorted(set(got) & set(want)):
        g, w = got[table], want[table]
        if g["columns"] != w["columns"] or g["count"] != w["count"]:
            found.append(
                f"{table}: columns/rows {g['columns']}/{g['count']} != {w['columns']}/{w['count']}"
            )
        elif "rows" in w:
            for i, ((gd, gf), (wd, wf)) in enumerate(zip(g["rows"], w["rows"], strict=True)):
                if gd != wd or not _floats_close(gf, wf):
                    found.append(f"{table}: row {i} is {gd} {gf}, golden {wd} {wf}")
                    break
        elif g["discrete_sha256"] != w["discrete_sha256"]:
            found.append(f"{table}: the discrete cells differ ({w['count']} rows)")
        else:
            n, *sums = g["float_sums"]
            wn, *wsums = w["float_sums"]
            if n != wn or not _floats_close(sums, wsums, scale=wsums[1] / max(wn, 1)):
                found.append(f"{table}: float sums {g['float_sums']} != {w['float_sums']}")
    return found


def _dump(record: dict[str, Any]) -> str:
    """JSON with one line per table and per row, so that a changed row reads in `git diff`."""
    parts = []
    for table, entry in sorted(record.items()):
        head = json.dumps({k: v for k, v in entry.items() if k != "rows"})
        if "rows" in entry:
            rows = ",\n".join(json.dumps(row) for row in entry["rows"])
            head = f'{head[:-1]}, "rows": [\n{rows}\n]}}'
        parts.append(f"{json.dumps(table)}: {head}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def check(name: str, record: dict[str, Any]) -> None:
    """Compare `record` with `tests/golden/NAME.json` (or write it, with TRACKER_GOLDEN=write)."""
    path = GOLDEN / f"{name}.json"
    if os.environ.get("TRACKER_GOLDEN") == "write":
        path.parent.mkdir(exist_ok=True)
        path.write_text(_dump(record))
        return
    assert path.exists(), f"{path} is missing: write it with TRACKER_GOLDEN=write"
    found = differences(record, json.loads(path.read_text()))
    assert not found, f"{name}'s tables changed from {path.name}:\n" + "\n".join(found)
