"""Two runs: which lineages two runs of one model both grow, and when (universality across
seeds or settings), paired on activation correlation over their shared probe set."""

import altair as alt
import polars as pl
import streamlit as st
from common import databases, lineage_names, param, read, select_run, story_link

SHOWN = 40  # pairs drawn in the chart (the longest shared stories)


st.title("Two runs")
selection = select_run()
if selection:
    db, run, layer = selection
    others = [
        f"{path} | {name}"
        for path in databases()
        for name in read(path, "runs")["run"].to_list()
        if (path, name) != (db, run)
    ]
    if not others:
        st.info(
            "Only one run is open. Open two runs of one model on the same probe inputs "
            "(two seeds, two settings): `tracker app RUN_A/lineage.duckdb RUN_B/lineage.duckdb`."
        )
    else:
        wanted = param("other")
        other = st.selectbox("Run B", others, index=others.index(wanted) if wanted in others else 0)
        if st.query_params.get("other") != other:
            st.query_params["other"] = other
        other_db, other_run = other.split(" | ", 1)
        their_layers = read(other_db, "layers", other_run)
        other_layer = layer if layer in their_layers else their_layers[0]
        try:
            shared = read(db, "shared_lineages", run, layer, other_db, other_run, other_layer)
        except (ValueError, FileNotFoundError) as err:
            st.warning(f"These runs cannot be compared: {err}")
            shared = None
        if shared is not None:
            mine = read(db, "lineage_count", run, layer)
            theirs = read(other_db, "lineage_count", other_run, other_layer)
            cols = st.columns(3)
            cols[0].metric("Pairs of lineages", len(shared))
            cols[1].metric(
                "A's lineages with a partner", f"{shared['lineage_a'].n_unique()} / {mine}"
            )
            cols[2].metric(
                "B's lineages with a partner", f"{shared['lineage_b'].n_unique()} / {theirs}"
            )
            # Each side named by its run's label where it published one ("A0 · x3").
            names_a = lineage_names(db, run, layer)
            names_b = lineage_names(other_db, other_run, other_layer)
            top = shared.head(SHOWN)
            top = top.with_columns(
                pl.Series(
                    "pair",
                    [
                        f"A{names_a.get(a, a)} ↔ B{names_b.get(b, b)}"
                        for a, b in top.select("lineage_a", "lineage_b").rows()
                    ],
                    dtype=pl.String,
                )
            )
            order = top["pair"].to_list()
            y = alt.Y("pair:N", sort=order, title=None)
            span = (
                alt.Chart(top.to_pandas())
                .mark_rule(strokeWidth=4, color="#999999")
                .encode(
                    x=alt.X("shared_from:Q", title="step"),
                    x2="shared_to:Q",
                    y=y,
                    tooltip=[
                        "pair",
                        "shared_from",
                        "shared_to",
                        "steps",
                        alt.Tooltip("mean_corr", format=".2f"),
                    ],
                )
            )
            firsts = top.unpivot(
                index="pair", on=["first_a", "first_b"], variable_name="run", value_name="step"
            )
            marks = (
                alt.Chart(
                    firsts.with_columns(
                        pl.col("run").str.replace("first_", "").str.to_uppercase()
                    ).to_pandas()
                )
                .mark_point(filled=True, size=70)
                .encode(
                    x="step:Q",
                    y=y,
                    color=alt.Color(
                        "run:N",
                        scale=alt.Scale(domain=["A", "B"], range=["#0072B2", "#E69F00"]),
                        title="first had it",
                    ),
                    shape=alt.Shape(
                        "run:N", scale=alt.Scale(domain=["A", "B"], range=["triangle-up", "circle"])
                    ),
                    tooltip=["pair", "run", "step"],
                )
            )
            height = max(160, 22 * len(top))
            st.altair_chart(
                (span + marks).properties(height=height), width="stretch", height=height + 80
            )
            st.caption(
                f"A = {run} ({layer}), B = {other_run} ({other_layer}). Grey: the steps at which "
                "the two lineages' features were paired one to one (activation correlation over "
                "the probe set above chance and tau); marks: when each run first had its lineage. "
                f"The {min(SHOWN, len(shared))} longest shared stories of {len(shared)}."
            )
            st.dataframe(
                shared.with_columns(
                    story_link(db, run, layer, "lineage_a").alias("story_a"),
                    story_link(other_db, other_run, other_layer, "lineage_b").alias("story_b"),
                ),
                hide_index=True,
                column_config={
                    "story_a": st.column_config.LinkColumn("A's story", display_text="open"),
                    "story_b": st.column_config.LinkColumn("B's story", display_text="open"),
                    "mean_corr": st.column_config.NumberColumn("mean corr", format="%.2f"),
                },
            )
