"""The DuckDB store: whole checkpoints, replacement, versions, crashes, live readers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tracker.db import SCHEMA_VERSION
from tracker.match import EVENT_SCHEMA
from tracker.reader import open_db
from tracker.store import Writer

HERE = Path(__file__).parent


def feature_rows(n, lineage_offset=0):
    return pl.DataFrame(
        {
            "feature": range(n),
            "lineage": [i + lineage_offset for i in range(n)],
            "frequency": [0.1] * n,
            "mean_activation": [1.0] * n,
            "stable": [True] * n,
        }
    )


def test_rewriting_a_checkpoint_replaces_it(tmp_path):
    writer = Writer(tmp_path / "l.duckdb")
    writer.write_checkpoint("r", "L", 5, {"features": feature_rows(3)})
    writer.write_checkpoint("r", "L", 5, {"features": feature_rows(2, lineage_offset=10)})
    rows = open_db(tmp_path / "l.duckdb").features("r", "L", 5)
    assert rows["lineage"].to_list() == [10, 11]
    with pytest.raises(ValueError, match=r"not checkpoint tables: \['runs'\]"):
        writer.write_checkpoint("r", "L", 5, {"runs": feature_rows(1)})


def event_rows(confidence):
    schema = {**EVENT_SCHEMA, "prev_step": pl.Int64}
    row = {"prev_step": 0, "kind": "birth", "sources": [], "targets": [4], "seeds": 1}
    return pl.DataFrame([row | {"confidence": confidence}], schema=schema)


def test_a_checkpoint_can_revise_the_events_of_an_earlier_one_in_its_transaction(tmp_path):
    writer = Writer(tmp_path / "l.duckdb")
    writer.write_checkpoint("r", "L", 5, {"events": event_rows(0.25)})
    revised = event_rows(1.0).with_columns(pl.lit(9, pl.Int64).alias("confirmed"))
    writer.write_checkpoint("r", "L", 9, {"features": feature_rows(2)}, revise=(5, revised))
    events = open_db(tmp_path / "l.duckdb").sql("SELECT step, confidence, confirmed FROM events")
    assert events.rows() == [(5, 1.0, 9)], "replaced, not added to"
    with pytest.raises(ValueError, match="can only revise an earlier step's events, not 9"):
        writer.write_checkpoint("r", "L", 9, {}, revise=(9, revised))


def test_user_values_are_parameters_not_sql(tmp_path):
    writer = Writer(tmp_path / "l.duckdb")
    writer.write_checkpoint("r", "L", 1, {"features": feature_rows(2)})
    reader = open_db(tmp_path / "l.duckdb")
    evil = "L' OR '1'='1"
    assert reader.features("r", evil, 1).is_empty()
    assert len(reader.features("r", "L", 1)) == 2


def test_missing_foreign_and_other_version_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="database .*nope.duckdb does not exist"):
        open_db(tmp_path / "nope.duckdb")
    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE t (x INT)")
    con.close()
    with pytest.raises(ValueError, match="is a DuckDB file but not a lineage database"):
        open_db(tmp_path / "other.duckdb")
    Writer(tmp_path / "old.duckdb")
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(
        ValueError, match=f"schema version 0; this tracker reads version {SCHEMA_VERSION}"
    ):
        open_db(tmp_path / "old.duckdb")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory, not a lineage database"),
        (b"", "is an empty file, not a lineage database"),
        (b"step,value\n1,2\n", "is not a DuckDB file, not a lineage database"),
        (b"SQLite format 3\x00" + bytes(100), "is not a DuckDB file, not a lineage database"),
        ("duckdb", "is a DuckDB file but not a lineage database .no meta table.: the tracker"),
        ("other-tool", "is not a lineage database .its meta table is another tool's."),
    ],
)
def test_the_writer_refuses_files_it_did_not_create_and_leaves_them_as_they_were(
    tmp_path, content, message
):
    path = tmp_path / "given.duckdb"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        con = duckdb.connect(str(path))
        con.execute(
            "CREATE TABLE mine (x INT)"
            if content == "duckdb"
            else "CREATE TABLE meta (key VARCHAR, value VARCHAR)"
        )
        if content == "other-tool":
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        con.close()
    before = None if content is None else path.read_bytes()
    for open_it in (lambda: Writer(path), lambda: open_db(path)):
        with pytest.raises(ValueError, match=message):
            open_it()
    if before is not None:
        assert path.read_bytes() == before, "nothing written into it"
    else:
        assert list(path.iterdir()) == []


def test_an_empty_duckdb_file_becomes_a_lineage_database(tmp_path):
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()  # as a crash right after creation
    Writer(tmp_path / "empty.duckdb").write_run("r", {})
    assert open_db(tmp_path / "empty.duckdb").runs()["run"].to_list() == ["r"]


@pytest.mark.slow
def test_sigkill_mid_checkpoint_leaves_whole_checkpoints_and_a_rerun_completes(tmp_path):
    db = tmp_path / "crash.duckdb"
    rows = 60_000  # each checkpoint writes 1.2M example rows: long enough to be killed in
    child = subprocess.Popen(
        [sys.executable, str(HERE / "store_writer.py"), str(db), "6", str(rows)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == "writing 3":
            time.sleep(0.2)
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    reader = open_db(db)
    steps = reader.checkpoints("r", "L")["step"].to_list()
    assert 1 <= len(steps) <= 4 and steps == list(range(len(steps)))
    counts = reader.sql("SELECT step, count(*) AS n FROM examples GROUP BY step ORDER BY step")
    assert counts["step"].to_list() == steps, "no rows of a checkpoint that did not commit"
    assert set(counts["n"].to_list()) == {20 * rows}

    done = subprocess.run(
        [sys.executable, str(HERE / "store_writer.py"), str(db), "6", str(rows)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    assert done.returncode == 0, done.stderr
    checkpoints = open_db(db).checkpoints("r", "L")
    assert checkpoints["step"].to_list() == list(range(6)), "re-run replaces, never duplicates"


@pytest.mark.slow
def live_writer(db: Path, checkpoints: int, rows: int) -> subprocess.Popen:
    """Another process writing `checkpoints` synthetic checkpoints of `rows` features into a
    new store at `db` (tests/store_writer.py)."""
    Writer(db)
    return subprocess.Popen(
        [sys.executable, str(HERE / "store_writer.py"), str(db), str(checkpoints), str(rows)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )


def test_a_reader_polling_a_live_writer_never_errors_and_sees_whole_checkpoints(tmp_path):
    db = tmp_path / "live.duckdb"
    child = live_writer(db, 50, 200)
    reader = open_db(db)
    reads = 0
    seen: set[int] = set()
    while child.poll() is None or reads == 0:
        counts = reader.sql(
            "SELECT c.step, (SELECT count(*) FROM features f WHERE f.run = c.run "
            "AND f.layer = c.layer AND f.step = c.step) AS n_features, "
            "(SELECT count(*) FROM examples e WHERE e.step = c.step) AS n_examples"
            " FROM checkpoints c ORDER BY c.step"
        )
        assert set(counts["n_features"].to_list()) <= {200}
        assert set(counts["n_examples"].to_list()) <= {4000}
        seen.update(counts["step"].to_list())
        reads += 1
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    assert reads > 5 and len(seen) == 50


def test_experiments_add_their_own_tables_and_probe_inputs(tmp_path):
    path = tmp_path / "x.duckdb"
    writer = Writer(path)
    truth = pl.DataFrame({"step": [0, 0], "feature": [0, 1], "wtw": [[1.0, 0.0], [0.0, 1.0]]})
    writer.write_table("toy_truth", "a", truth)
    writer.write_table("toy_truth", "b", truth.head(1))
    writer.write_table("toy_truth", "a", truth.tail(1))  # replaces run a's rows only
    db = open_db(path)
    assert db.table("toy_truth", "a")["feature"].to_list() == [1]
    assert db.table("toy_truth", "b")["wtw"].to_list() == [[1.0, 0.0]]
    assert db.table("nothing_here", "a").is_empty()
    writer.write_table("toy_truth", "c", truth.with_columns(step=pl.Series([0, 5])))
    assert db.table("toy_truth", "c", step=5)["feature"].to_list() == [1]
    assert db.table("toy_truth", "c", step=7).is_empty()
    writer.write_table("toy_truth", "a", truth.with_columns(norm=pl.Series([0.5, 2.0])))
    assert db.table("toy_truth", "a")["norm"].to_list() == [0.5, 2.0]  # a newer column kept
    assert db.table("toy_truth", "b")["norm"].to_list() == [None]
    for bad in ("events", "Toy", "x; DROP TABLE runs", ""):
        with pytest.raises(ValueError, match="extra table name must be a lower-case identifier"):
            writer.write_table(bad, "a", truth)
    with pytest.raises(ValueError, match="must not hold a 'run' column"):
        writer.write_table("toy_truth", "a", truth.with_columns(run=pl.lit("a")))
    probe = pl.DataFrame({"probe_index": [0, 1], "label": ["x0", "x1"], "payload": ["{}", "{}"]})
    writer.write_probe("a", probe)
    writer.write_probe("a", probe.head(1))
    assert db.probe("a")["label"].to_list() == ["x0"]


def test_a_run_is_marked_finished_by_its_writer_and_live_again_when_rewritten(tmp_path):
    path = tmp_path / "l.duckdb"
    writer = Writer(path)

    def finished():
        return open_db(path).runs().filter(pl.col("run") == "r")["finished_at"][0]

    writer.write_run("r", {"a": 1})
    assert finished() is None
    writer.finish_run("r")
    assert finished() is not None
    writer.write_run("r", {"a": 2})  # written again (resumed, refitted): live again
    assert finished() is None
    with duckdb.connect(str(path)) as con:  # a file from before the column
        con.execute("ALTER TABLE runs DROP COLUMN finished_at")
    writer.write_run("r", {"a": 3})
    writer.finish_run("r")
    assert finished() is not None and open_db(path).run_config("r") == {"a": 3}


def test_shared_reads_open_a_file_once_for_a_burst_and_close_it_after(tmp_path, monkeypatch):
    from tracker import db as store_db
    from tracker.reader import shared_reads

    path = tmp_path / "burst.duckdb"
    Writer(path).write_checkpoint("r", "l", 0, {"features": feature_rows(3)})
    opened = []
    real_connect = duckdb.connect
    monkeypatch.setattr(
        store_db.duckdb, "connect", lambda *a, **k: opened.append(a[0]) or real_connect(*a, **k)
    )
    reader = open_db(path)
    alone = reader.features("r", "l", 0)
    opened.clear()
    with shared_reads():
        for _ in range(5):
            assert reader.features("r", "l", 0).equals(alone)
        assert len(opened) == 1
        # The file replaced under the block (another run written there): read anew.
        other = tmp_path / "other.duckdb"
        Writer(other).write_checkpoint("r", "l", 0, {"features": feature_rows(7)})
        os.replace(other, path)
        assert len(reader.features("r", "l", 0)) == 7 and opened.count(str(path)) == 2
    # Closed at the block's end: this process may open the file read-write again.
    Writer(path).write_checkpoint("r", "l", 1, {"features": feature_rows(2)})
    assert len(reader.features("r", "l", 1)) == 2
    # Past HOLD_SECONDS the block's queries connect one by one, as outside it.
    monkeypatch.setattr(store_db, "HOLD_SECONDS", -1.0)  # expired at its second use
    opened.clear()
    with shared_reads():
        for _ in range(3):
            reader.features("r", "l", 1)
    assert len(opened) == 3  # the shared one, then one per query once it expired


def test_a_reader_holding_shared_reads_never_starves_a_live_writer(tmp_path):
    # Queries back to back inside one block for as long as the writer runs: the file is
    # shared for half a second only, so the writer (retrying up to 10 s) gets its turns.
    from tracker.reader import shared_reads

    db = tmp_path / "live.duckdb"
    child = live_writer(db, 20, 200)
    reader = open_db(db)
    seen: set[int] = set()
    with shared_reads():
        while child.poll() is None:
            counts = reader.sql(
                "SELECT c.step, (SELECT count(*) FROM features f WHERE f.step = c.step) AS n "
                "FROM checkpoints c"
            )
            assert set(counts["n"].to_list()) <= {200}
            seen.update(counts["step"].to_list())
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    assert open_db(db).checkpoints("r", "L")["step"].to_list() == list(range(20))
    assert seen and seen <= set(range(20))
