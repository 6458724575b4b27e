"""SREM explorer: how noisy an image-caption dataset is, which pairs are flagged and why, and search.

    streamlit run app.py                       # the bundled demo run (demo/run)
    streamlit run app.py -- --run runs/NAME    # any run directory written by `srem train`

This script is the entry point of every page: it picks the run (command line, then the sidebar),
loads it through the cache, and hands over to the page the person opened.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import streamlit as st

from app_support import loading, widgets
from srem_core.runs import RunFormatError

st.set_page_config(page_title="SREM explorer", page_icon=":material/image_search:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/distributions.py", title="Distributions", icon=":material/bar_chart:"),
    st.Page("pages/flagged_pairs.py", title="Flagged pairs", icon=":material/flag:"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("pages/search.py", title="Search", icon=":material/search:"),
]

DEMO_MISSING = (
    "The bundled demo run `demo/run` is missing from this checkout. Train it with "
    "`srem train --data demo --noise 0.4 --out demo/run`, or open another run directory in the sidebar."
)


def _open_typed_path() -> None:
    typed = st.session_state.get("run_path_input", "").strip()
    if typed:
        st.session_state["run_path"] = typed


def pick_run() -> str:
    """Render the sidebar run picker and return the chosen run directory."""
    if "run_path" not in st.session_state:
        st.session_state["run_path"] = loading.cli_run_path(sys.argv[1:]) or str(loading.DEMO_RUN)
    current = str(Path(st.session_state["run_path"]).expanduser().resolve())
    found = [str(path) for path in loading.discover_runs([loading.DEMO_RUN.parent, *loading.default_run_folders()])]
    options = list(dict.fromkeys([current, *found]))
    with st.sidebar:
        st.subheader("Run")
        choice = st.selectbox(
            "Run directory", options, index=0, format_func=lambda path: loading.display_path(Path(path)),
            help="Runs found in demo/ and runs/, plus the one opened now.",
        )
        st.text_input(
            "Or open a path", key="run_path_input", on_change=_open_typed_path,
            placeholder="/path/to/run", help="A folder written by `srem train --out`. Press Enter to open it.",
        )
    if choice != current:
        st.session_state["run_path"] = choice
        st.rerun()
    return current


def main() -> None:
    navigation = st.navigation(PAGES)
    run_path = pick_run()
    try:
        run = loading.open_run(run_path)
    except RunFormatError as error:
        missing_demo = Path(run_path) == loading.DEMO_RUN.resolve() and not loading.DEMO_RUN.exists()
        st.error(DEMO_MISSING if missing_demo else str(error), icon=":material/folder_off:")
        st.stop()
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        st.error(
            f"The run directory `{run_path}` could not be read ({type(error).__name__}: {error}). A file in "
            "it is damaged or was not written by `srem train`; train the run again, or open another one.",
            icon=":material/error:",
        )
        st.stop()
    widgets.run_sidebar(run)
    requested = st.session_state.pop("requested_page", None)
    if requested is not None:
        st.switch_page(requested)
    navigation.run()


main()
