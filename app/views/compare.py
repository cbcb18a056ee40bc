"""Compare: two checkpoints' decoder cosines, ordered by the assignment, against chance."""

import altair as alt
import numpy as np
import polars as pl
import streamlit as st
from common import read, select_run, steps

MAX_FEATURES = 512
BLUE, WHITE, RED = np.array([33, 102, 172]), np.array([247, 247, 247]), np.array([178, 24, 43])


def diverging(cos: np.ndarray) -> np.ndarray:
    """RGB [..., 3] uint8: blue at cosine -1, white at 0, red at +1."""
    x = np.clip(cos, -1, 1)[..., None]
    return np.where(x < 0, WHITE + (BLUE - WHITE) * -x, WHITE + (RED - WHITE) * x).astype(np.uint8)


st.title("Compare")
selection = select_run()
if selection:
    db, run, layer = selection
    all_steps = steps(db, run, layer)
    if len(all_steps) < 2:
        st.info("This run has one checkpoint: nothing to compare yet.")
    else:
        cols = st.columns(2)
        a = cols[0].selectbox("Checkpoint A", all_steps, index=len(all_steps) - 2)
        b = cols[1].selectbox("Checkpoint B", all_steps, index=len(all_steps) - 1)

        found = read(db, "compare", run, layer, a, b, MAX_FEATURES)
        cos, chance = found.cos, found.chance
        st.image(
            diverging(cos),
            caption=(
                f"Decoder cosines, A = step {a} (rows, {cos.shape[0]} live features) x B = step "
                f"{b} (columns, {cos.shape[1]}), ordered by the one-to-one assignment: matches "
                "on the diagonal."
            ),
            width=min(720, 6 * max(cos.shape) + 100),
        )

        best = found.best
        hist = (
            alt.Chart(pl.DataFrame({"best_cosine": best}).to_pandas())
            .mark_bar()
            .encode(
                x=alt.X("best_cosine:Q", bin=alt.Bin(maxbins=40), title="best-match cosine"),
                y="count()",
            )
        )
        rules = (
            alt.Chart(
                pl.DataFrame(
                    {
                        "cosine": [chance.mean, chance.quantile],
                        "chance": ["random mean", "random 99th pct"],
                    }
                ).to_pandas()
            )
            .mark_rule(color="black", strokeDash=[4, 4])
            .encode(x="cosine:Q", tooltip=["chance"])
        )
        st.altair_chart((hist + rules).properties(height=220), width="stretch")
        matched = float((best >= chance.quantile).mean())
        st.caption(
            f"Dashed: best-match cosine of a random dictionary of the same shape "
            f"(mean {chance.mean:.2f}, 99th percentile {chance.quantile:.2f}). "
            f"{matched:.0%} of A's features beat the 99th percentile."
        )
