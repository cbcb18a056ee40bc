"""The lineage database file: its schema, and short connections that check it.

DuckDB lets no other process open a file, not even read-only, while one holds it
read-write. So the writer connects only while it writes a checkpoint, readers connect per
query (`tracker.reader`) or per burst of queries (`shared_reads`, at most half a second),
and both retry briefly when the other holds the file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

SCHEMA_VERSION = 5
TOOL = "training-dynamics-tracker"
"""Written in the meta table beside the schema version: the files this tool created."""
NO_EXTENSIONS: dict[str, str | bool | int | float | list[str]] = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
}
"""DuckDB would otherwise fetch an extension from the network for some files (SQLite)."""
LOCK_RETRY_SECONDS = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (run VARCHAR PRIMARY KEY, created_at TIMESTAMP, config JSON,
    finished_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS metrics (run VARCHAR, step BIGINT, name VARCHAR, value DOUBLE);
CREATE TABLE IF NOT EXISTS checkpoints (run VARCHAR, layer VARCHAR, step BIGINT,
    prev_step BIGINT, n_probe INTEGER, stable_share DOUBLE, tau DOUBLE, chance_mean DOUBLE,
    chance_quantile DOUBLE, written_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS saes (run VARCHAR, layer VARCHAR, step BIGINT, d_in INTEGER,
    d_sae INTEGER, arch VARCHAR, k INTEGER, seed BIGINT, fvu DOUBLE, l0 DOUBLE,
    dead_fraction DOUBLE, fit_seconds DOUBLE);
CREATE TABLE IF NOT EXISTS sae_weights (run VARCHAR, layer VARCHAR, step BIGINT,
    cfg JSON, weights BLOB);
CREATE TABLE IF NOT EXISTS features (run VARCHAR, layer VARCHAR, step BIGINT,
    feature INTEGER, lineage BIGINT, frequency DOUBLE, mean_activation DOUBLE, stable BOOLEAN);
CREATE TABLE IF NOT EXISTS edges (run VARCHAR, layer VARCHAR, prev_step BIGINT, step BIGINT,
    source INTEGER, target INTEGER, cosine DOUBLE, act_corr DOUBLE, kind VARCHAR, gap INTEGER);
CREATE TABLE IF NOT EXISTS events (run VARCHAR, layer VARCHAR, prev_step BIGINT, step BIGINT,
    kind VARCHAR, sources INTEGER[], targets INTEGER[], confidence DOUBLE,
    match_confidence DOUBLE, score DOUBLE,
    witness VARCHAR, presence DOUBLE, presence_corr DOUBLE, carried DOUBLE, gap INTEGER,
    seeds INTEGER,
    confirmed BIGINT);
CREATE TABLE IF NOT EXISTS lineages (run VARCHAR, layer VARCHAR, lineage BIGINT,
    parent BIGINT, kind VARCHAR, step BIGINT);
CREATE TABLE IF NOT EXISTS examples (run VARCHAR, layer VARCHAR, step BIGINT,
    feature INTEGER, rank INTEGER, probe_index INTEGER, activation DOUBLE);
CREATE TABLE IF NOT EXISTS probe (run VARCHAR, probe_index INTEGER, label VARCHAR,
    payload JSON);
CREATE TABLE IF NOT EXISTS failures (run VARCHAR, layer VARCHAR, step BIGINT, error VARCHAR,
    failed_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS panels (run VARCHAR, layer VARCHAR, step BIGINT, feature INTEGER,
    position INTEGER, kind VARCHAR, spec JSON, data BLOB);
CREATE TABLE IF NOT EXISTS replays (run VARCHAR PRIMARY KEY, replay VARCHAR, config JSON);
"""

# Reader queries too long to sit in a method (parameters in the order they appear).
EVENTS_AGAINST_NOISE = (  # run, layer, min_confidence, run, layer, run, layer
    "WITH live AS (SELECT step, count(*) FILTER (WHERE NOT stable) AS u "
    "FROM features WHERE run = ? AND layer = ? GROUP BY step), "
    "ev AS (SELECT step, count(*) AS events, count(*) FILTER (WHERE confidence >= ?) "
    "AS confident FROM events WHERE run = ? AND layer = ? GROUP BY step), "
    "c AS (SELECT step, prev_step, stable_share FROM checkpoints "
    "WHERE run = ? AND layer = ?) "
    "SELECT c.step, c.prev_step, coalesce(ev.events, 0) AS events, "
    "coalesce(ev.confident, 0) AS confident, CASE WHEN c.stable_share IS NOT NULL "
    "AND p.stable_share IS NOT NULL THEN coalesce(a.u, 0) + coalesce(b.u, 0) "
    "END AS unstable FROM c JOIN c p ON p.step = c.prev_step "
    "LEFT JOIN ev ON ev.step = c.step LEFT JOIN live a ON a.step = c.step "
    "LEFT JOIN live b ON b.step = c.prev_step ORDER BY c.step"
)
LINEAGE_LABELS = (  # run, layer
    "SELECT f.lineage, arg_max(p.step, p.step) AS step, "
    "arg_max(json_extract_string(p.spec, '$.text'), p.step) AS label "
    "FROM panels p JOIN features f ON f.run = p.run AND f.layer = p.layer "
    "AND f.step = p.step AND f.feature = p.feature WHERE p.run = ? AND p.layer = ? "
    "AND p.kind = 'label' GROUP BY f.lineage ORDER BY f.lineage"
)

# Tables holding rows of one (run, layer, step) checkpoint: replaced as a whole.
CHECKPOINT_TABLES = (
    "checkpoints",
    "saes",
    "sae_weights",
    "features",
    "edges",
    "events",
    "lineages",
    "examples",
)

CORE_TABLES = (
    "meta",
    "runs",
    "metrics",
    *CHECKPOINT_TABLES,
    "probe",
    "failures",
    "panels",
    "replays",
)
EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

T = TypeVar("T")


def check_extra_name(name: str) -> str:
    """A table name an experiment may add: lower-case identifier, not a core table."""
    if not EXTRA_NAME.match(name) or name in CORE_TABLES:
        raise ValueError(
            f"extra table name must be a lower-case identifier (a-z, 0-9, _) and not one of "
            f"the core tables {list(CORE_TABLES)}, got {name!r}"
        )
    return name


def _is_lock_error(err: Exception) -> bool:
    return isinstance(err, duckdb.IOException) and "lock" in str(err).lower()


def with_retry(action: Callable[[], T], path: Path, seconds: float = LOCK_RETRY_SECONDS) -> T:
    """Run `action`, retrying while another process holds the database file."""
    deadline, pause = time.monotonic() + seconds, 0.01
    while True:
        try:
            return action()
        except duckdb.Error as err:
            if not _is_lock_error(err) or time.monotonic() > deadline:
                if _is_lock_error(err):
                    raise RuntimeError(
                        f"database {path} stayed locked by another process for {seconds:.0f}s"
                    ) from err
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


@contextmanager
def connect(path: str | Path, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection, retried while the file is locked; checks the schema. In
    write mode a missing file is created with the schema; an existing one must be a lineage
    database of this version already (the store writes only into files it created)."""
    con = _open(Path(path), read_only)
    try:
        yield con
    finally:
        con.close()


def _open(file: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only and not file.exists():
        raise FileNotFoundError(f"database {file} does not exist")
    if file.exists():
        _check_file(file)
    con = with_retry(
        lambda: duckdb.connect(str(file), read_only=read_only, config=NO_EXTENSIONS), file
    )
    try:
        if not read_only and _is_empty(con):  # new (or created but never written to)
            with transaction(con):
                con.execute(SCHEMA)
                con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('tool', ?)",
                    [str(SCHEMA_VERSION), TOOL],
                )
        _check_version(con, file)
    except BaseException:
        con.close()
        raise
    return con


def _is_empty(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT count(*) FROM information_schema.tables").fetchone()
    return row is not None and row[0] == 0


def _check_file(file: Path) -> None:
    """One line for what is not a DuckDB file, before DuckDB opens it (it would try to load
    an extension for a SQLite file, and fail with a traceback on the rest)."""
    if file.is_dir():
        raise ValueError(f"{file} is a directory, not a lineage database")
    with file.open("rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[8:12] != b"DUCK":
        what = "an empty file" if not head else "not a DuckDB file"
        raise ValueError(f"{file} is {what}, not a lineage database")


def _check_version(con: duckdb.DuckDBPyConnection, file: Path) -> None:
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        tool = con.execute("SELECT value FROM meta WHERE key = 'tool'").fetchall()
    except duckdb.CatalogException as err:
        raise ValueError(
            f"{file} is a DuckDB file but not a lineage database (no meta table): the tracker "
            "writes only into files it created"
        ) from err
    if rows and rows[0][0] == str(SCHEMA_VERSION) and tool != [(TOOL,)]:
        raise ValueError(f"{file} is not a lineage database (its meta table is another tool's)")
    if not rows or rows[0][0] != str(SCHEMA_VERSION):
        found = rows[0][0] if rows else "none"
        raise ValueError(
            f"{file} has lineage schema version {found}; this tracker reads version "
            f"{SCHEMA_VERSION}: re-run `tracker analyze` or `tracker fit` to rebuild it"
        )


def query(path: str | Path, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
    """Run one parameterized read-only query and return a polars DataFrame: on a connection
    of its own, or inside `shared_reads` on the one its burst of queries shares."""
    held = _HELD.get()
    shared = None if held is None else held.connection(Path(path))
    if shared is not None:
        return _run(shared, sql, params)
    with connect(path, read_only=True) as con:
        return _run(con, sql, params)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None) -> pl.DataFrame:
    table = con.sql(sql, params=params or []).to_arrow_table()
    return pl.from_arrow(table)  # type: ignore[return-value]


HOLD_SECONDS = 0.5
"""How long `shared_reads` keeps a file open; later queries in the block connect one by
one, as outside it, so a live run's writer waits at most about this long for the file."""


class _Held:
    """Read-only connections that one burst of queries shares, one per file."""

    def __init__(self) -> None:
        self.open: dict[Path, tuple[duckdb.DuckDBPyConnection, float, tuple[int, ...]]] = {}
        self.expired: set[Path] = set()

    def connection(self, file: Path) -> duckdb.DuckDBPyConnection | None:
        """The shared connection to `file`, opened on first use; None once its time is up."""
        if file in self.expired:
            return None
        entry = self.open.pop(file, None)
        if entry is not None:
            con, since, seen = entry
            if time.monotonic() - since > HOLD_SECONDS:
                con.close()
                self.expired.add(file)
                return None
            if _identity(file) == seen:
                self.open[file] = entry
                return con
            con.close()  # the file was replaced: open the new one
        con = _open(file, read_only=True)
        self.open[file] = (con, time.monotonic(), _identity(file))
        return con

    def close(self) -> None:
        for con, _, _ in self.open.values():
            con.close()
        self.open.clear()


def _identity(file: Path) -> tuple[int, ...]:
    """What changes when the file is replaced or written (() once it is gone)."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


_HELD: ContextVar[_Held | None] = ContextVar("tracker_shared_reads", default=None)


@contextmanager
def shared_reads() -> Iterator[None]:
    """Within this block (in this thread), read-only queries of one file share a connection
    for up to `HOLD_SECONDS`, all closed at its end: a page of the viewer runs its queries
    so. Opening a file costs more as it grows (24 ms at 4 GB), and a fresh connection reads
    it cold: a query on a shared one was 5-10x faster there (README, store speed)."""
    held = _Held()
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)
        held.close()


def insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Bulk insert through Arrow (row-by-row inserts are ~1000x slower), by column name."""
    if frame.is_empty():
        return
    columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
    con.register("new_rows", frame.select(columns).to_arrow())
    con.execute(f"INSERT INTO {table} SELECT * FROM new_rows")
    con.unregister("new_rows")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
