"""How the Feature page draws a feature: the panels its run published (`tracker.panels`), in
order, then its top probe examples. Nothing here knows any experiment."""

import altair as alt
import numpy as np
import polars as pl
import streamlit as st
from common import read

from tracker.reader import Panel


def heatmap(panel: Panel) -> alt.Chart:
    rows, cols = panel.values.shape
    cells = pl.DataFrame(
        {
            "row": np.repeat(np.arange(rows), cols),
            "col": np.tile(np.arange(cols), rows),
            "value": panel.values.ravel(),
        }
    )
    step = panel.ticks or 1
    scale = alt.Scale(
        scheme={"name": panel.scheme}, domain=list(panel.domain) if panel.domain else alt.Undefined
    )
    return (
        alt.Chart(cells.to_pandas())
        .mark_rect()
        .encode(
            x=alt.X(
                "col:O", title=panel.x or None, axis=alt.Axis(values=list(range(0, cols, step)))
            ),
            y=alt.Y(
                "row:O",
                title=panel.y or None,
                sort="descending" if panel.origin == "bottom" else "ascending",
                axis=alt.Axis(values=list(range(0, rows, step))),
            ),
            color=alt.Color("value:Q", title=None, scale=scale),
            tooltip=[
                alt.Tooltip("row:O", title=panel.y or "row"),
                alt.Tooltip("col:O", title=panel.x or "column"),
                alt.Tooltip("value:Q", format=".3f"),
            ],
        )
        .properties(title=panel.title, height=360 if rows > 30 else 300)
    )


def bars(panel: Panel) -> alt.Chart:
    n_series, n_categories = panel.values.shape
    labels = list(panel.labels) or [str(i) for i in range(n_categories)]
    series = list(panel.series) or ["value"]
    strong = list(panel.strong) or [True] * n_categories
    frame = pl.DataFrame(
        {
            "category": labels * n_series,
            "order": list(range(n_categories)) * n_series,
            "series": [s for s in series for _ in range(n_categories)],
            "value": panel.values.ravel(),
            "strong": strong * n_series,
        }
    )
    axis = alt.Scale(domain=list(panel.domain)) if panel.domain else alt.Undefined
    return (
        alt.Chart(frame.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X("category:O", title=panel.x or None, sort=alt.SortField("order")),
            xOffset="series:N",
            y=alt.Y("value:Q", title=panel.y or None, scale=axis),
            color=alt.Color(
                "series:N", title=None, legend=None if n_series == 1 else alt.Undefined
            ),
            opacity=alt.condition("datum.strong", alt.value(1.0), alt.value(0.35)),
            tooltip=["category", "series", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(title=panel.title, height=300 if panel.half else 220)
    )


CHARTS = {"heatmap": heatmap, "bars": bars}


def draw(panels: list[Panel]) -> None:
    """Notes as text, charts full width or two half-width ones side by side."""
    i = 0
    while i < len(panels):
        panel = panels[i]
        if panel.kind in ("note", "label"):  # a label is drawn beside the lineage's id
            if panel.kind == "note":
                st.markdown(panel.text)
            i += 1
            continue
        pair = [panel]
        if panel.half and i + 1 < len(panels) and panels[i + 1].half:
            pair.append(panels[i + 1])
        places = st.columns(2) if panel.half else [st.container()]
        for place, shown in zip(places, pair, strict=False):
            place.altair_chart(CHARTS[shown.kind](shown), width="stretch")
            if shown.text:
                place.caption(shown.text)
        i += len(pair)


def feature(db: str, run: str, layer: str, step: int, feature: int) -> None:
    """The feature's panels, then rank, probe index, activation, and the probe input's label
    if stored (its payload, the raw input, only where there is no label)."""
    draw(read(db, "panels", run, layer, step, feature))
    examples = read(db, "examples", run, layer, step, feature)
    probe = read(db, "probe", run)
    shown = examples.select("rank", "probe_index", "activation")
    if not probe.is_empty():
        labelled = probe["label"].is_not_null().any() if "label" in probe.columns else False
        keep = ["probe_index", "label"] if labelled else ["probe_index", "label", "payload"]
        shown = shown.join(probe.select(keep), on="probe_index", how="left")
    st.dataframe(shown, hide_index=True)
