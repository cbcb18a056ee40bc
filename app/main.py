"""The feature-lineage viewer: `tracker app DB ...` (or `make demo`) starts it."""

import streamlit as st

st.set_page_config(page_title="Feature lineage", layout="wide")
st.navigation(
    [
        st.Page("pages/runs.py", title="Runs", default=True),
        st.Page("pages/lineage.py", title="Lineage"),
        st.Page("pages/feature.py", title="Feature"),
        st.Page("pages/compare.py", title="Compare"),
    ]
).run()
