"""Feature: one lineage's story across checkpoints."""

import altair as alt
import polars as pl
import renderers
import streamlit as st
from common import MAX_ID, int_param, read, select_run

from tracker.reader import with_evidence

st.title("Feature")
selection = select_run()
if selection:
    db, run, layer = selection
    fmap = read(db, "feature_map", run, layer)
    lineages = fmap["lineage"].unique().sort().to_list()
    if not lineages:
        st.info(f"Run {run!r}, layer {layer!r} has no live feature yet.")
        st.stop()
    wanted = int_param("lineage")
    lineage = wanted if wanted is not None else lineages[0]
    lineage = st.sidebar.number_input("Lineage", value=lineage, min_value=0, max_value=MAX_ID)
    if st.query_params.get("lineage") != str(lineage):
        st.query_params["lineage"] = str(lineage)
    story = read(db, "lineage", run, layer, lineage)
    if story.is_empty():
        st.warning(f"Lineage {lineage} does not exist in run {run!r}, layer {layer!r}.")
    else:
        edges = read(db, "lineage_edges", run, layer, lineage)
        events = read(db, "lineage_events", run, layer, lineage)
        parents = read(db, "lineage_parents", run, layer, lineage)
        first, last = int(story["step"].min()), int(story["step"].max())
        st.subheader(f"Lineage {lineage}: steps {first} to {last}, {len(story)} checkpoints")
        if not parents.is_empty():
            kind = parents["kind"][0]
            st.write(
                f"Started by a **{kind}** at step {parents['step'][0]} from lineage(s) "
                + ", ".join(str(p) for p in parents["parent"].to_list())
            )

        over_steps = (
            story.select("step", "frequency", "mean_activation")
            .join(
                edges.select("step", pl.col("cosine").alias("cosine_to_past")),
                on="step",
                how="left",
            )
            .unpivot(index="step")
        )
        chart = (
            alt.Chart(over_steps.to_pandas())
            .mark_line(point=True)
            .encode(x="step:Q", y=alt.Y("value:Q", title=None), color="variable:N")
        )
        st.altair_chart(chart.properties(height=240), width="stretch")
        st.caption(
            "cosine_to_past: decoder cosine to this lineage's feature at the previous "
            "checkpoint; frequency: share of probe inputs it fires on."
        )

        st.subheader("Events")
        if events.is_empty():
            st.caption("No event touches this lineage.")
        else:
            shown = with_evidence(events).drop("run", "layer")
            st.dataframe(shown.select("evidence", pl.exclude("evidence")), hide_index=True)
        gaps = read(db, "lineage_gaps", run, layer, lineage)
        if not gaps.is_empty():
            st.caption(
                "Missed by the SAE, still in the activations at step(s) "
                + ", ".join(
                    f"{r['step']} (pattern corr {r['act_corr']:.2f} with step {r['prev_step']})"
                    for r in gaps.iter_rows(named=True)
                )
                + ": the lineage continues across the gap."
            )

        st.subheader("At one checkpoint")
        step = st.select_slider("Checkpoint", options=story["step"].to_list(), value=last)
        feature = int(story.filter(pl.col("step") == step)["feature"][0])
        renderers.feature(db, run, layer, step, feature)
