"""What every page shares: the databases given, cached reads, and selections in the URL.

The app reads the lineage store through `tracker.reader` and nothing else. Reads are cached
for a few seconds only, so a page over a live run shows its newest whole checkpoint.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl
import streamlit as st

from tracker.reader import VIEWER_DBS_ENV, Reader, open_db

LIVE_WITHIN = timedelta(minutes=2)
EVENT_STYLE = {
    "birth": ("#009E73", "triangle-up"),
    "death": ("#D55E00", "cross"),
    "split": ("#0072B2", "diamond"),
    "merge": ("#CC79A7", "square"),
}
"""Each event kind's colour and shape on every page: Okabe-Ito colours, told apart with
every common colour-vision deficiency."""
TTL = 5  # seconds: a live run's new checkpoints appear within this


def databases() -> list[str]:
    """The database files this app was started on (`tracker app DB ...`); no others open."""
    return [p for p in os.environ.get(VIEWER_DBS_ENV, "").split(os.pathsep) if p]


@st.cache_resource
def reader(path: str) -> Reader:
    return open_db(path)


@st.cache_data(ttl=TTL, show_spinner=False)
def read(path: str, method: str, *args: object) -> Any:
    """A cached reader query; every input is part of the cache key."""
    return getattr(reader(path), method)(*args)


def param(name: str, default: str | None = None) -> str | None:
    return st.query_params.get(name, default)


MAX_ID = 2**53 - 1  # the largest integer a browser's number input holds exactly


def int_param(name: str) -> int | None:
    """An integer id from the URL (`?lineage=12`); None, with a one-line notice, when the
    value given is not one (the page then shows its default)."""
    raw = param(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_ID:
        st.warning(f"?{name}={raw[:40]!r} is not a {name} id (0 to {MAX_ID}): showing the first.")
        return None
    return value


def choose(label: str, options: list[str], key: str) -> str | None:
    """A selectbox whose choice lives in the URL (`?key=...`), so a view can be shared; an
    unknown value falls back to the first option with a one-line notice."""
    if not options:
        return None
    current = param(key)
    if current is not None and current not in options:
        st.warning(
            f"?{key}={current[:80]!r} is not one of this {label.lower()}'s choices: "
            f"showing {options[0]!r}."
        )
    index = options.index(current) if current in options else 0
    choice = st.sidebar.selectbox(label, options, index=index, key=f"select_{key}")
    if st.query_params.get(key) != choice:
        st.query_params[key] = choice
    return choice


def step_param(label: str, options: list[int], key: str, default: int) -> int:
    """A checkpoint picker whose choice lives in the URL (`?a=500`); a step the run does not
    have falls back to `options[default]` with a one-line notice."""
    raw = param(key)
    index = default
    if raw is not None:
        try:
            index = options.index(int(raw))
        except ValueError:
            st.warning(f"?{key}={raw[:40]!r} is not a checkpoint of this run: showing step "
                       f"{options[default]}.")  # fmt: skip
    choice = int(st.selectbox(label, options, index=index, key=f"select_{key}"))
    if st.query_params.get(key) != str(choice):
        st.query_params[key] = str(choice)
    return choice


def select_run() -> tuple[str, str, str] | None:
    """Sidebar choice of database, run and layer; None (with a message) when there is none."""
    dbs = databases()
    if not dbs:
        st.error("No lineage database given: start the viewer with `tracker app DB ...`.")
        return None
    missing = [p for p in dbs if not Path(p).is_file()]
    if missing:
        st.error(f"Database file not found: {', '.join(missing)}")
        return None
    db = choose("Database", dbs, "db")
    assert db is not None
    runs = read(db, "runs")["run"].to_list()
    run = choose("Run", runs, "run")
    if run is None:
        st.info(f"{db} holds no run yet.")
        return None
    layer = choose("Layer", read(db, "layers", run), "layer")
    if layer is None:
        st.info(f"Run {run!r} has no checkpoint yet.")
        return None
    live_banner(db, run, layer)
    return db, run, layer


def live_banner(db: str, run: str, layer: str) -> None:
    """ "Run is live" while the run is being written: its writer has not marked it finished
    and its newest checkpoint is recent (a writer that died never marks it)."""
    checkpoints = read(db, "checkpoints", run, layer)
    runs = read(db, "runs").filter(pl.col("run") == run)
    finished = "finished_at" in runs.columns and runs["finished_at"].is_not_null().any()
    if checkpoints.is_empty() or finished:
        return
    newest = checkpoints["written_at"].max()
    if isinstance(newest, datetime) and datetime.now() - newest < LIVE_WITHIN:
        step = checkpoints["step"].max()
        st.info(
            f"Run is live: showing the newest whole checkpoint (step {step}); "
            "the page refreshes its data every few seconds."
        )


def story_link(db: str, run: str, layer: str, column: str) -> pl.Expr:
    """The Feature page's URL for the lineage in `column` of that run (null where the
    column is null), for a LinkColumn."""
    query = urlencode({"db": db, "run": run, "layer": layer})
    return pl.concat_str(pl.lit(f"/feature?{query}&lineage="), pl.col(column))


def steps(db: str, run: str, layer: str) -> list[int]:
    return read(db, "checkpoints", run, layer)["step"].to_list()


def event_marks(events: pl.DataFrame, keep: list[str]) -> pl.DataFrame:
    """Each event's `keep` columns once for each lineage it concerns, with that `lineage`
    (`events` as the reader's `event_lineages` gives them)."""
    return (
        events.select(*keep, pl.col("lineages").alias("lineage"))
        .explode("lineage")
        .drop_nulls("lineage")
    )


def lineage_names(db: str, run: str, layer: str) -> dict[int, str]:
    """{lineage: "12 · x3"} for the lineages whose run published a label (its latest)."""
    labels = read(db, "lineage_labels", run, layer)
    return {r["lineage"]: f"{r['lineage']} · {r['label']}" for r in labels.iter_rows(named=True)}


def label_rank(labels: pl.DataFrame) -> dict[int, int]:
    """{lineage: rank} ordering `labels` (lineage, label) naturally: "x2" before "x10",
    "frequency 9" before "frequency 11"; ties by lineage id."""

    def key(row: tuple[int, str]) -> tuple[list[tuple[int, int | str]], int]:
        parts = re.split(r"(\d+)", row[1].lower())
        return [(0, int(p)) if p.isdigit() else (1, p) for p in parts if p], row[0]

    rows = sorted(zip(labels["lineage"].to_list(), labels["label"].to_list(), strict=True), key=key)
    return {lineage: rank for rank, (lineage, _) in enumerate(rows)}
