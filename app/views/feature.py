"""Feature: one lineage's story across checkpoints."""

import altair as alt
import polars as pl
import renderers
import streamlit as st
from common import event_marks, int_param, lineage_names, read, select_run

from tracker.reader import with_evidence

st.title("Feature")
selection = select_run()
if selection:
    db, run, layer = selection
    spans = read(db, "lineage_spans", run, layer)
    if spans.is_empty():
        st.info(f"Run {run!r}, layer {layer!r} has no live feature yet.")
        st.stop()
    # Lineages with the longest confident story first: those a confident event touches,
    # longest first, then the rest, longest first.
    confident = read(db, "event_lineages", run, layer, 0.5)
    touched = event_marks(confident, [])["lineage"].value_counts(name="events")
    ranked = (
        spans.select("lineage", "checkpoints", "first")
        .join(touched, on="lineage", how="left")
        .with_columns(pl.col("events").fill_null(0))
        .sort(pl.col("events") > 0, "checkpoints", "lineage", descending=[True, True, False])
    )
    lineages = ranked["lineage"].to_list()
    names = lineage_names(db, run, layer)
    about = {
        r["lineage"]: f"{names.get(r['lineage'], r['lineage'])}: {r['checkpoints']} "
        f"checkpoints from step {r['first']}, {r['events']} confident events"
        for r in ranked.iter_rows(named=True)
    }
    wanted = int_param("lineage")
    if wanted is not None and wanted not in about:
        st.warning(f"Lineage {wanted} does not exist in run {run!r}, layer {layer!r}.")
    index = lineages.index(wanted) if wanted in about else 0
    lineage = st.sidebar.selectbox(
        "Lineage (type to search)", lineages, index=index, format_func=about.__getitem__
    )
    if st.query_params.get("lineage") != str(lineage):
        st.query_params["lineage"] = str(lineage)
    story = read(db, "lineage", run, layer, lineage)
    if not story.is_empty():
        edges = read(db, "lineage_edges", run, layer, lineage)
        events = read(db, "lineage_events", run, layer, lineage)
        parents = read(db, "lineage_parents", run, layer, lineage)
        first, last = int(story["step"].min()), int(story["step"].max())
        name = names.get(lineage, str(lineage))  # "31 · planted 21" where the run named it
        st.subheader(f"Lineage {name}: steps {first} to {last}, {len(story)} checkpoints")
        if not parents.is_empty():
            kind = parents["kind"][0]
            st.write(
                f"Started by a **{kind}** at step {parents['step'][0]} from lineage(s) "
                + ", ".join(str(p) for p in parents["parent"].to_list())
            )

        over_steps = story.select("step", "feature", "frequency", "mean_activation").join(
            edges.select("step", pl.col("cosine").alias("cosine_to_past")), on="step", how="left"
        )
        # One chart per unit: a share, the layer's units, a cosine.
        measures = [
            ("frequency", "share of probe inputs it fires on", [0, 1]),
            ("mean_activation", "mean activation where it fires", None),
            ("cosine_to_past", "decoder cosine to the step before", [-1, 1]),
        ]
        for place, (name, title, domain) in zip(st.columns(3), measures, strict=True):
            scale = alt.Scale(domain=domain) if domain else alt.Scale(zero=True)
            chart = (
                alt.Chart(over_steps.to_pandas(), title=title)
                .mark_line(point=True)
                .encode(
                    x="step:Q",
                    y=alt.Y(f"{name}:Q", title=None, scale=scale),
                    tooltip=["step", "feature", alt.Tooltip(f"{name}:Q", format=".3f")],
                )
            )
            place.altair_chart(chart.properties(height=200), width="stretch")

        st.subheader("Events")
        if events.is_empty():
            st.caption("No event touches this lineage.")
        else:
            shown = with_evidence(events).drop("run", "layer")
            st.dataframe(shown.select("evidence", pl.exclude("evidence")), hide_index=True)
        gaps = read(db, "lineage_gaps", run, layer, lineage)
        for r in gaps.iter_rows(named=True):
            corr = f"pattern corr {r['act_corr']:.2f} with step {r['prev_step']}"
            st.caption(
                f"Step {r['step']}: missed by the SAE, still in the activations ({corr})."
                if r["kind"] == "missed"
                else f"Step {r['step']}: found again after {r['gap']} checkpoint(s) without "
                f"it ({corr}): the lineage continues across the gap."
            )

        st.subheader("At one checkpoint")
        step = st.select_slider("Checkpoint", options=story["step"].to_list(), value=last)
        feature = int(story.filter(pl.col("step") == step)["feature"][0])
        renderers.feature(db, run, layer, step, feature)
