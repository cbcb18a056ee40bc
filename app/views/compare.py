"""Compare: two checkpoints' features on the signal their matching used, ordered by the
assignment (matches on the diagonal), against a random dictionary's chance."""

import altair as alt
import numpy as np
import polars as pl
import streamlit as st
from common import read, select_run, step_param, steps

from tracker.reader import Comparison

MAX_FEATURES = 512
WINDOW = 48  # rows and columns drawn at once: feature ids stay readable on the axes
# The colours of every signed heatmap in the app (the Feature page's WᵀW): blue +1, red -1.
SCHEME = alt.Scale(scheme="redblue", domain=[-1, 1])
NAMES = {"decoder": "decoder cosine", "activation": "activation correlation"}


def heatmap(found: Comparison, start: int) -> alt.Chart:
    """Rows and columns start..start + WINDOW of the assignment order as an Altair heatmap."""
    rows = found.a_features[start : start + WINDOW]
    cols = found.b_features[start : start + WINDOW]
    block = found.sim[start : start + WINDOW, start : start + WINDOW]
    i, j = np.meshgrid(np.arange(len(rows)), np.arange(len(cols)), indexing="ij")
    cells = pl.DataFrame(
        {
            "A": [f"a{rows[r]}" for r in i.ravel()],
            "B": [f"b{cols[c]}" for c in j.ravel()],
            "value": block.ravel().round(3),
        }
    )
    return (
        alt.Chart(cells.to_pandas())
        .mark_rect()
        .encode(
            x=alt.X("B:N", sort=[f"b{c}" for c in cols], title="B feature"),
            y=alt.Y("A:N", sort=[f"a{r}" for r in rows], title="A feature"),
            color=alt.Color("value:Q", scale=SCHEME, title=NAMES[found.signal]),
            tooltip=["A", "B", alt.Tooltip("value:Q", title=NAMES[found.signal])],
        )
        .properties(height=max(120, 22 * len(rows)))
    )


st.title("Compare")
selection = select_run()
if selection:
    db, run, layer = selection
    all_steps = steps(db, run, layer)
    if len(all_steps) < 2:
        st.info("This run has one checkpoint: nothing to compare yet.")
    else:
        cols = st.columns(2)
        with cols[0]:
            a = step_param("Checkpoint A", all_steps, "a", len(all_steps) - 2)
        with cols[1]:
            b = step_param("Checkpoint B", all_steps, "b", len(all_steps) - 1)
        found = read(db, "compare", run, layer, a, b, MAX_FEATURES)
        name = NAMES[found.signal]
        n_a, n_b = found.sim.shape
        start = 0
        if max(n_a, n_b) > WINDOW:
            last = (max(n_a, n_b) - 1) // WINDOW * WINDOW
            start = st.slider("From assignment rank", 0, last, 0, step=WINDOW)
        chart = heatmap(found, start)
        st.altair_chart(chart, width="stretch", height=chart.height + 80)
        why = (
            "activations over the probe set, as matching did: in this few dimensions every "
            "decoder cosine is near chance"
            if found.signal == "activation"
            else "decoders, as matching did"
        )
        st.caption(
            f"{name.capitalize()} of A = step {a} (rows, {n_a} live features) and B = step {b} "
            f"(columns, {n_b}), compared on their {why}. Ordered by the one-to-one assignment, "
            f"best first: matches lie on the diagonal. Ranks {start} to "
            f"{min(start + WINDOW, max(n_a, n_b)) - 1} shown."
        )

        chance = found.chance
        hist = (
            alt.Chart(pl.DataFrame({"best": found.best}).to_pandas())
            .mark_bar()
            .encode(
                x=alt.X("best:Q", bin=alt.Bin(maxbins=40), title=f"best-match {name}"),
                y=alt.Y("count()", title="A features"),
            )
        )
        rules = (
            alt.Chart(
                pl.DataFrame(
                    {
                        "value": [chance.mean, chance.quantile],
                        "chance": ["random mean", "random 99th pct"],
                    }
                ).to_pandas()
            )
            .mark_rule(color="black", strokeDash=[4, 4])
            .encode(x="value:Q", tooltip=["chance", alt.Tooltip("value:Q", format=".2f")])
        )
        st.altair_chart((hist + rules).properties(height=220), width="stretch")
        matched = float((found.best >= chance.quantile).mean()) if len(found.best) else 0.0
        st.caption(
            f"Dashed: best-match {name} of a random dictionary of the same shape "
            f"(mean {chance.mean:.2f}, 99th percentile {chance.quantile:.2f}). "
            f"{matched:.0%} of A's features beat the 99th percentile."
        )
