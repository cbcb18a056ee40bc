"""Lineage: lineages across steps with their events; choose one to open its story."""

import json

import altair as alt
import polars as pl
import streamlit as st
from common import (
    EVENT_STYLE,
    event_marks,
    int_param,
    label_rank,
    lineage_names,
    read,
    select_run,
    steps,
    story_link,
)

from tracker.reader import with_evidence

MAX_LINEAGES = 200
KINDS = EVENT_STYLE
ORDERS = ["first seen", "longest", "most events", "label"]

st.title("Lineage")
selection = select_run()
if selection:
    db, run, layer = selection
    all_steps = steps(db, run, layer)
    kinds = st.sidebar.multiselect("Event kinds", list(KINDS), default=list(KINDS))
    min_conf = st.sidebar.slider("Least confidence", 0.0, 1.0, 0.5, 0.05)
    span = st.sidebar.select_slider("Steps", options=all_steps, value=(all_steps[0], all_steps[-1]))
    order_by = st.sidebar.radio("Order lineages by", ORDERS)
    names = lineage_names(db, run, layer)
    needle = st.sidebar.text_input("Label contains", help="e.g. x3: lineages whose label has it")
    needle = needle.strip().lower()
    events = with_evidence(
        read(db, "event_lineages", run, layer, min_conf).filter(
            pl.col("kind").is_in(kinds) & pl.col("step").is_between(*span)
        )
    ).with_row_index("event")

    # Every event is drawn at its own step (as the table says) on the row of each lineage it
    # concerns.
    keep = ["event", "step", "kind", "confidence", "evidence"]
    marks = event_marks(events, keep)
    lineage_of_event = marks.group_by("event").agg(pl.col("lineage").min())
    touched = marks["lineage"].unique().sort().to_list()
    stats = (
        read(db, "lineage_spans", run, layer, *span, touched)
        .select("lineage", "first", "checkpoints")
        .join(marks.group_by("lineage").agg(pl.len().alias("events")), on="lineage")
    )
    labels = read(db, "lineage_labels", run, layer)
    if needle:
        named = labels.filter(pl.col("label").str.to_lowercase().str.contains(needle, literal=True))
        stats = stats.filter(pl.col("lineage").is_in(named["lineage"].to_list()))
    if order_by == "label":  # x2 before x10; lineages without a label last, by id
        rank = label_rank(labels)
        stats = stats.with_columns(
            pl.col("lineage").replace_strict(rank, default=len(rank)).alias("label_rank")
        ).sort(["label_rank", "lineage"])
    else:
        sort = {"first seen": "first", "longest": "checkpoints", "most events": "events"}
        latest_first = order_by != "first seen"
        stats = stats.sort([sort[order_by], "lineage"], descending=[latest_first, False])
    chosen = stats["lineage"].head(MAX_LINEAGES).to_list()
    st.caption(
        f"{len(events)} events, {len(chosen)} lineages drawn"
        + (f" (first {MAX_LINEAGES})" if len(stats) > MAX_LINEAGES else "")
    )

    if not chosen:
        st.info("No event matches these filters.")
    else:
        # One row per lineage in the chosen order, labelled with its id and the label its run
        # published, if any (every row while the rows are tall enough to read them).
        shown_names = [names.get(lin, str(lin)) for lin in chosen]
        order = {lin: i for i, lin in enumerate(chosen)}
        row = pl.col("lineage").replace_strict(order, default=None).alias("row")
        y_axis = alt.Axis(
            values=list(range(len(chosen))) if len(chosen) <= 60 else alt.Undefined,
            labelExpr=f"{json.dumps(shown_names)}[datum.value]",
            grid=False,
        )
        scale = alt.Scale(domain=[-0.5, len(chosen) - 0.5], reverse=True, nice=False)
        y = alt.Y("row:Q", title="lineage", axis=y_axis, scale=scale)
        drawn = read(db, "lineage_rows", run, layer, chosen, *span).with_columns(row)
        lines = (
            alt.Chart(drawn.to_pandas())
            .mark_line(opacity=0.6, color="#888888")
            .encode(
                x=alt.X("step:Q", scale=alt.Scale(domain=list(span))),
                y=y,
                detail="lineage:N",
                tooltip=["lineage", "step", "feature", "frequency"],
            )
        )
        # Split and merge: a dashed segment from each parent lineage to each child lineage.
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
        link = pl.format("{}-{}", "lineage", "parent").alias("link")
        links = (
            pl.concat(
                [
                    parents.select(
                        pl.col("step").replace_strict(prev_of, default=None), pl.col("parent"), link
                    ),
                    parents.select("step", pl.col("lineage").alias("parent"), link),
                ]
            )
            .rename({"parent": "lineage"})
            .with_columns(row)
        )
        joins = (
            alt.Chart(links.to_pandas())
            .mark_line(strokeDash=[3, 3], color="#555555")
            .encode(x="step:Q", y=y, detail="link:N")
        )
        legend = alt.Legend(title="event", orient="top")
        domain, colours, shapes = list(KINDS), *zip(*KINDS.values(), strict=True)
        points = (
            alt.Chart(marks.filter(pl.col("lineage").is_in(chosen)).with_columns(row).to_pandas())
            .mark_point(filled=True, size=90, opacity=0.9)
            .encode(
                x="step:Q",
                y=y,
                color=alt.Color(
                    "kind:N", scale=alt.Scale(domain=domain, range=colours), legend=legend
                ),
                shape=alt.Shape(
                    "kind:N", scale=alt.Scale(domain=domain, range=shapes), legend=legend
                ),
                tooltip=[
                    "lineage",
                    "step",
                    "kind",
                    alt.Tooltip("confidence", format=".2f"),
                    "evidence",
                ],
            )
        )
        height = max(220, min(24 * len(chosen), 1400))  # a readable label on every row
        chart = (lines + joins + points).properties(height=height)
        st.altair_chart(chart, width="stretch", height=height + 110)  # + legend and axis

        current = int_param("lineage")
        default = chosen.index(current) if current in chosen else 0
        lineage = st.selectbox(
            "Lineage", chosen, index=default, format_func=lambda lin: names.get(lin, str(lin))
        )
        if st.button("Open this lineage's story"):
            st.switch_page(
                "views/feature.py",
                query_params={"db": db, "run": run, "layer": layer, "lineage": str(lineage)},
            )
    table = events.join(lineage_of_event, on="event", how="left")
    if needle:  # the events that concern a lineage the label filter kept
        kept = marks.filter(pl.col("lineage").is_in(stats["lineage"].to_list()))["event"]
        table = table.filter(pl.col("event").is_in(kept.to_list()))
    story = story_link(db, run, layer, "lineage")  # null: no lineage
    lead = ["step", "kind", "lineage", "story", "evidence", "confidence"]
    st.dataframe(
        table.with_columns(story.alias("story")).select(
            *lead, pl.exclude("event", "run", "layer", *lead)
        ),
        hide_index=True,
        column_config={
            "story": st.column_config.LinkColumn("story", display_text="open"),
            "lineage": st.column_config.NumberColumn("lineage", format="%d"),
        },
    )
