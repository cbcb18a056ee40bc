"""`tracker app` execs this: Streamlit's command line, after loading what the pages import.

Streamlit runs every page in the server's own process, so modules loaded here before the
server listens are not loaded again on the first visit (the reader pulls in torch: about 2 s
of a first load that took 5.7 s, `experiments/bench/app_pages.py`). Altair compiles its
schema validator on the first chart it checks, so one tiny chart is checked here too.
"""

import sys

import altair as alt
import polars  # noqa: F401
from streamlit.web.cli import main

import tracker.reader  # noqa: F401

alt.Chart(alt.Data(values=[{"step": 0}])).mark_line().encode(x="step:Q").to_dict()

if __name__ == "__main__":
    sys.argv[0] = "streamlit"
    sys.exit(main())
