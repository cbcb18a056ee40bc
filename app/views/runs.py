"""Runs: training curves, SAE quality, noise floor and event counts on one step axis."""

import altair as alt
import streamlit as st
from common import EVENT_STYLE, read, select_run

st.title("Runs")
selection = select_run()
if selection:
    db, run, layer = selection
    checkpoints = read(db, "checkpoints", run, layer)
    saes = read(db, "saes", run, layer)
    counts = read(db, "event_counts", run, layer, 0.5)
    metrics = read(db, "metrics", run)
    lo, hi = int(checkpoints["step"].min()), int(checkpoints["step"].max())
    log_axis = st.sidebar.checkbox("Log step axis", value=False)
    x = alt.X(
        "step:Q",
        scale=alt.Scale(
            domain=[max(lo, 1) if log_axis else lo, max(hi, 1)],
            type="symlog" if log_axis else "linear",
            nice=False,
        ),
    )

    cols = st.columns(4)
    cols[0].metric("Checkpoints", len(checkpoints))
    cols[1].metric("Latest FVU", f"{saes['fvu'][-1]:.3f}")
    # The latest, as for FVU: a mean would count the first checkpoints' SAEs on a random
    # network, which no second seed reproduces, and read low for a run that ends stable.
    share = checkpoints["stable_share"].drop_nulls()
    cols[2].metric("Latest stable share", f"{share[-1]:.2f}" if len(share) else "n/a")
    cols[3].metric("Confident events", int(counts["n"].sum()) if len(counts) else 0)

    # One plot width and left edge for every chart, so their step axes line up: legends above
    # the plot (a legend beside it takes its own width) and y axes of one fixed extent.
    def y(field: str) -> alt.Y:
        return alt.Y(field, title=None, axis=alt.Axis(minExtent=48, maxExtent=48))

    def legend(field: str, scale: alt.Scale | None = None) -> alt.Color:
        top = alt.Legend(orient="top")
        if scale is None:
            return alt.Color(field, title=None, legend=top)
        return alt.Color(field, title=None, legend=top, scale=scale)

    PLOT = 170  # each plot's height; the page adds its legend and step axis
    marks = alt.Chart(checkpoints.select("step").to_pandas()).mark_rule(opacity=0.25).encode(x=x)
    st.subheader("Training curves")
    if metrics.is_empty():
        st.caption("No training metrics recorded for this run.")
    else:
        curves = (
            alt.Chart(metrics.to_pandas())
            .mark_line()
            .encode(x=x, y=y("value:Q"), color=legend("name:N"))
        )
        st.altair_chart((curves + marks).properties(height=PLOT), width="stretch", height=PLOT + 90)

    st.subheader("SAE quality and seed noise floor per checkpoint")
    quality = (
        saes.select("step", "fvu", "l0", "dead_fraction")
        .join(checkpoints.select("step", "stable_share"), on="step")
        .unpivot(index="step")
    )
    chart = (
        alt.Chart(quality.to_pandas())
        .mark_line(point=True)
        .encode(x=x, y=y("value:Q"), color=legend("variable:N"))
    )
    st.altair_chart(chart.properties(height=PLOT), width="stretch", height=PLOT + 90)

    st.subheader("Confident events per checkpoint")
    if counts.is_empty():
        st.caption("No confident event in this run.")
    else:
        domain, colours = list(EVENT_STYLE), [c for c, _ in EVENT_STYLE.values()]
        kinds = alt.Scale(domain=domain, range=colours)
        bars = (
            alt.Chart(counts.to_pandas())
            .mark_bar()
            .encode(x=x, y=y("n:Q"), color=legend("kind:N", scale=kinds))
        )
        st.altair_chart((bars + marks).properties(height=PLOT), width="stretch", height=PLOT + 90)
    st.subheader("Events against noise")
    noise = read(db, "events_against_noise", run, layer, 0.5)
    if noise["unstable"].null_count() == len(noise):
        st.caption("One SAE seed per checkpoint: no noise floor to set events against.")
    else:
        st.caption(
            "Per transition: every event, the confident ones, and the unstable features: live "
            "features on either side that no second seed found, what SAE noise alone could "
            "show as births and deaths. Where events stay near that line and none is "
            "confident, the model was quiet."
        )
    series = noise.rename(
        {
            "events": "all events",
            "confident": "confident",
            "unstable": "unstable features",
        }
    ).unpivot(index="step", on=["all events", "confident", "unstable features"])
    lines = (
        alt.Chart(series.drop_nulls("value").to_pandas())
        .mark_line(point=True)
        .encode(x=x, y=y("value:Q"), color=legend("variable:N"))
    )
    st.altair_chart((lines + marks).properties(height=PLOT), width="stretch", height=PLOT + 90)
    table = checkpoints.select("step", "stable_share", "tau", "chance_mean").join(
        saes.select("step", "fvu", "l0", "dead_fraction"), on="step"
    )
    wide = counts.pivot(on="kind", index="step", values="n") if len(counts) else None
    st.dataframe(
        table.join(wide, on="step", how="left") if wide is not None else table, hide_index=True
    )
