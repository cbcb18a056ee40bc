"""How a feature is drawn on the Feature page, chosen per experiment by the run's config
("renderer"); a plain table of its top probe examples when the run names none."""

from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import polars as pl
import streamlit as st
from common import read


@dataclass(frozen=True)
class FeatureView:
    """One feature of one checkpoint, with what the page has already read."""

    db: str
    run: str
    layer: str
    step: int
    feature: int
    examples: pl.DataFrame
    probe: pl.DataFrame


Renderer = Callable[[FeatureView], None]
RENDERERS: dict[str, Renderer] = {}


def register(name: str) -> Callable[[Renderer], Renderer]:
    def wrap(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return wrap


@register("table")
def table(view: FeatureView) -> None:
    """Rank, probe index, activation, and the probe input's label and payload if stored."""
    shown = view.examples.select("rank", "probe_index", "activation")
    if not view.probe.is_empty():
        shown = shown.join(
            view.probe.select("probe_index", "label", "payload"), on="probe_index", how="left"
        )
    st.dataframe(shown, hide_index=True)


@register("toy")
def toy(view: FeatureView) -> None:
    """Toy superposition: the model's WᵀW at this checkpoint, and how this SAE feature lines
    up with each true feature (decoder cosine with W_i, activation correlation with x_i)."""
    truth = read(view.db, "table", "toy_truth", view.run)
    align = read(view.db, "table", "toy_alignment", view.run)
    here = truth.filter(pl.col("step") == view.step)
    mine = align.filter((pl.col("step") == view.step) & (pl.col("feature") == view.feature))
    if here.is_empty() or mine.is_empty():
        st.info("No ground truth stored for this checkpoint.")
        table(view)
        return
    best = mine.sort("cosine", descending=True).row(0, named=True)
    st.write(
        f"Closest true feature: **x{best['true_feature']}** (decoder cosine "
        f"{best['cosine']:.2f}, activation correlation {best['act_corr']:.2f})."
    )
    n = here.height
    cells = pl.DataFrame(
        {
            "i": [i for i in range(n) for _ in range(n)],
            "j": [j for _ in range(n) for j in range(n)],
            "value": [v for row in here.sort("feature")["wtw"].to_list() for v in row],
        }
    )
    left, right = st.columns(2)
    heat = (
        alt.Chart(cells.to_pandas())
        .mark_rect()
        .encode(
            x=alt.X("j:O", title="true feature j"),
            y=alt.Y("i:O", title="true feature i"),
            color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1])),
            tooltip=["i", "j", alt.Tooltip("value:Q", format=".2f")],
        )
        .properties(title=f"WᵀW at step {view.step}", height=300)
    )
    left.altair_chart(heat, width="stretch")
    bars = (
        mine.join(
            here.select(pl.col("feature").alias("true_feature"), "represented"), on="true_feature"
        )
        .select("true_feature", "represented", "cosine", "act_corr")
        .unpivot(index=["true_feature", "represented"], variable_name="measure")
    )
    chart = (
        alt.Chart(bars.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X("true_feature:O", title="true feature"),
            xOffset="measure:N",
            y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[-1, 1])),
            color="measure:N",
            opacity=alt.condition("datum.represented", alt.value(1.0), alt.value(0.35)),
            tooltip=[
                "true_feature",
                "measure",
                alt.Tooltip("value:Q", format=".2f"),
                "represented",
            ],
        )
        .properties(title=f"Feature {view.feature} against the truth", height=300)
    )
    right.altair_chart(chart, width="stretch")
    st.caption("Faded bars: true features the model does not represent at this step (‖W_i‖ < 0.5).")
    table(view)


def render(name: str, view: FeatureView) -> None:
    RENDERERS.get(name, table)(view)
