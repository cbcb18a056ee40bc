"""The feature-lineage viewer: `tracker app DB ...` (or `make demo`) starts it."""

import logging

import streamlit as st

from tracker.reader import shared_reads

log = logging.getLogger("tracker.app")

st.set_page_config(page_title="Feature lineage", layout="wide")
page = st.navigation(
    [
        st.Page("views/runs.py", title="Runs", default=True),
        st.Page("views/lineage.py", title="Lineage"),
        st.Page("views/feature.py", title="Feature"),
        st.Page("views/compare.py", title="Compare"),
        st.Page("views/two_runs.py", title="Two runs"),
    ]
)
try:
    with shared_reads():  # the page's queries share a connection per file (at most 0.5 s)
        page.run()
except Exception as err:  # a page never shows a traceback: one line here, the rest in the log
    log.exception("page %s failed", page.title)
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    st.error(f"This page could not be shown: {type(err).__name__}: {first[:300]}")
