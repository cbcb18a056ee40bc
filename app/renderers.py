"""How a feature is drawn on the Feature page, chosen per experiment by the run's config
("renderer"); a plain table of its top probe examples when the run names none."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import numpy as np
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


@register("grokking")
def grokking(view: FeatureView) -> None:
    """Grokking: the feature's activation over every pair (a, b) as a p × p map, its 2-D
    Fourier power (folded to frequencies 0 … p // 2), and its power per frequency with the
    model's key frequencies marked."""
    maps = read(view.db, "table", "grok_maps", view.run, view.step)
    labels = read(view.db, "table", "grok_features", view.run, view.step)
    mine = (
        maps.filter((pl.col("layer") == view.layer) & (pl.col("feature") == view.feature))
        if not maps.is_empty()
        else maps
    )
    if mine.is_empty():
        st.info("No feature map stored for this feature (maps are kept for live features).")
        table(view)
        return
    row = mine.row(0, named=True)
    info = labels.filter((pl.col("layer") == view.layer) & (pl.col("feature") == view.feature)).row(
        0, named=True
    )
    keys = read(view.db, "table", "grok_embedding", view.run).filter(pl.col("key"))
    key_freqs = keys["frequency"].to_list()
    values = np.frombuffer(row["map"], dtype=np.uint8).astype(np.float64) / 255 * row["scale"]
    p = math.isqrt(len(values))
    grid = values.reshape(p, p)
    label = (
        f"frequency **{info['frequency']}**"
        if info["frequency"]
        else f"no single frequency (strongest {info['dominant']})"
    )
    st.write(
        f"{label}, {info['share']:.0%} of its non-constant Fourier power; the model's key "
        f"frequencies (from its embedding): {key_freqs}."
    )
    cells = pl.DataFrame(
        {
            "a": np.repeat(np.arange(p), p),
            "b": np.tile(np.arange(p), p),
            "activation": values,
        }
    )
    left, right = st.columns(2)
    heat = (
        alt.Chart(cells.to_pandas())
        .mark_rect()
        .encode(
            x=alt.X("b:O", axis=alt.Axis(values=list(range(0, p, 10)))),
            y=alt.Y("a:O", sort="descending", axis=alt.Axis(values=list(range(0, p, 10)))),
            color=alt.Color("activation:Q", scale=alt.Scale(scheme="viridis")),
            tooltip=["a", "b", alt.Tooltip("activation:Q", format=".3f")],
        )
        .properties(title=f"Feature {view.feature} over (a, b) at step {view.step}", height=360)
    )
    left.altair_chart(heat, width="stretch")
    power = np.abs(np.fft.fft2(grid - grid.mean())) ** 2
    half = p // 2 + 1
    folded = np.zeros((half, half))
    fold = np.minimum(np.arange(p), p - np.arange(p))
    np.add.at(folded, (fold[:, None], fold[None, :]), power)
    spectrum = pl.DataFrame(
        {
            "ka": np.repeat(np.arange(half), half),
            "kb": np.tile(np.arange(half), half),
            "power": np.log10(folded.ravel() / max(folded.sum(), 1e-30) + 1e-6),
        }
    )
    spec = (
        alt.Chart(spectrum.to_pandas())
        .mark_rect()
        .encode(
            x=alt.X("kb:O", title="frequency in b", axis=alt.Axis(values=list(range(0, half, 5)))),
            y=alt.Y(
                "ka:O",
                title="frequency in a",
                sort="descending",
                axis=alt.Axis(values=list(range(0, half, 5))),
            ),
            color=alt.Color("power:Q", title="log10 share", scale=alt.Scale(scheme="magma")),
            tooltip=["ka", "kb", alt.Tooltip("power:Q", format=".2f")],
        )
        .properties(title="2-D Fourier power (folded)", height=360)
    )
    right.altair_chart(spec, width="stretch")
    bars = pl.DataFrame(
        {
            "frequency": list(range(1, len(info["spectrum"]))),
            "share": info["spectrum"][1:],
            "key": [k in key_freqs for k in range(1, len(info["spectrum"]))],
        }
    )
    chart = (
        alt.Chart(bars.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X("frequency:O", axis=alt.Axis(values=list(range(0, half, 5)))),
            y=alt.Y("share:Q", title="share of power"),
            color=alt.Color("key:N", title="key frequency"),
            tooltip=["frequency", alt.Tooltip("share:Q", format=".3f"), "key"],
        )
        .properties(title="Power per frequency (terms in a, b and a ± b)", height=220)
    )
    st.altair_chart(chart, width="stretch")
    table(view)


def render(name: str, view: FeatureView) -> None:
    RENDERERS.get(name, table)(view)
