"""How a feature's top probe examples are drawn, chosen per experiment by the run's
config ("renderer"); a plain table when the run names none."""

from collections.abc import Callable

import polars as pl
import streamlit as st

Renderer = Callable[[pl.DataFrame, pl.DataFrame], None]
RENDERERS: dict[str, Renderer] = {}


def register(name: str) -> Callable[[Renderer], Renderer]:
    def wrap(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return wrap


@register("table")
def table(examples: pl.DataFrame, probe: pl.DataFrame) -> None:
    """Rank, probe index, activation, and the probe input's label and payload if stored."""
    shown = examples.select("rank", "probe_index", "activation")
    if not probe.is_empty():
        shown = shown.join(
            probe.select("probe_index", "label", "payload"), on="probe_index", how="left"
        )
    st.dataframe(shown, hide_index=True)


def render(name: str, examples: pl.DataFrame, probe: pl.DataFrame) -> None:
    RENDERERS.get(name, table)(examples, probe)
