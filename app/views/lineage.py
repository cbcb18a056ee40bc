"""Lineage: lineages across steps with their events; choose one to open its story."""

import altair as alt
import polars as pl
import streamlit as st
from common import int_param, read, select_run, steps

from tracker.reader import with_evidence

MAX_LINEAGES = 200
KINDS = ["birth", "death", "split", "merge"]

st.title("Lineage")
selection = select_run()
if selection:
    db, run, layer = selection
    all_steps = steps(db, run, layer)
    kinds = st.sidebar.multiselect("Event kinds", KINDS, default=KINDS)
    min_conf = st.sidebar.slider("Least confidence", 0.0, 1.0, 0.5, 0.05)
    span = st.sidebar.select_slider("Steps", options=all_steps, value=(all_steps[0], all_steps[-1]))
    events = read(db, "events", run, layer, None, min_conf).filter(
        pl.col("kind").is_in(kinds) & pl.col("step").is_between(*span)
    )
    fmap = read(db, "feature_map", run, layer).filter(pl.col("step").is_between(*span))

    # Each event marks its sources at prev_step and its targets at step, with its own kind.
    ends = pl.concat(
        [
            events.select(
                pl.col("prev_step").alias("step"),
                pl.col("sources").alias("f"),
                "kind",
                "confidence",
            ).explode("f"),
            events.select("step", pl.col("targets").alias("f"), "kind", "confidence").explode("f"),
        ]
    ).drop_nulls("f")
    marks = ends.join(fmap, left_on=["step", "f"], right_on=["step", "feature"])
    chosen = marks["lineage"].unique().sort().head(MAX_LINEAGES).to_list()
    st.caption(
        f"{len(events)} events, {len(chosen)} lineages drawn"
        + (f" (first {MAX_LINEAGES})" if len(chosen) == MAX_LINEAGES else "")
    )

    if not chosen:
        st.info("No event matches these filters.")
    else:
        order = {lin: i for i, lin in enumerate(chosen)}
        row = pl.col("lineage").replace_strict(order, default=None).alias("row")
        drawn = fmap.filter(pl.col("lineage").is_in(chosen)).with_columns(row)
        marks = marks.filter(pl.col("lineage").is_in(chosen)).with_columns(row)
        # Split and merge: a segment from each parent lineage to each child lineage.
        prev_of = dict(zip(all_steps[1:], all_steps[:-1], strict=False))
        parents = read(
            db,
            "sql",
            "SELECT lineage, parent, step FROM lineages WHERE run = ? AND layer = ?",
            [run, layer],
        ).filter(
            pl.col("lineage").is_in(chosen)
            & pl.col("parent").is_in(chosen)
            & pl.col("step").is_between(*span)
        )
        links = pl.concat(
            [
                parents.select(
                    pl.col("step").replace_strict(prev_of, default=None).alias("step"),
                    pl.col("parent").replace_strict(order).alias("row"),
                    pl.format("{}-{}", "lineage", "parent").alias("link"),
                ),
                parents.select(
                    "step",
                    pl.col("lineage").replace_strict(order).alias("row"),
                    pl.format("{}-{}", "lineage", "parent").alias("link"),
                ),
            ]
        )
        lines = (
            alt.Chart(drawn.to_pandas())
            .mark_line(opacity=0.6)
            .encode(
                x="step:Q",
                y=alt.Y("row:Q", title="lineage", axis=None),
                detail="lineage:N",
                tooltip=["lineage", "step", "feature", "frequency"],
            )
        )
        joins = (
            alt.Chart(links.to_pandas())
            .mark_line(strokeDash=[3, 3], color="gray")
            .encode(x="step:Q", y="row:Q", detail="link:N")
        )
        points = (
            alt.Chart(marks.to_pandas())
            .mark_point(filled=True, size=70)
            .encode(
                x="step:Q",
                y="row:Q",
                color=alt.Color("kind:N", scale=alt.Scale(domain=KINDS)),
                tooltip=["lineage", "step", "kind", "confidence"],
            )
        )
        st.altair_chart((lines + joins + points).properties(height=420), width="stretch")

        current = int_param("lineage")
        default = chosen.index(current) if current in chosen else 0
        lineage = st.selectbox("Lineage", chosen, index=default)
        if st.button("Open this lineage's story"):
            st.switch_page(
                "views/feature.py",
                query_params={"db": db, "run": run, "layer": layer, "lineage": str(lineage)},
            )
    shown = with_evidence(events).drop("run", "layer")
    st.dataframe(shown.select("evidence", pl.exclude("evidence")), hide_index=True)
