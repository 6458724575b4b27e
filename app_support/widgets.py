"""Small Streamlit rendering helpers shared by several pages."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterable

import streamlit as st

from app_support import analysis, loading
from srem_core.runs import Run

GRID_COLUMNS = 5
"""Thumbnails per row in result grids."""


def current_run() -> Run:
    """Return the run that ``app.py`` opened for this page (already validated there)."""
    if "run_path" not in st.session_state:
        # When the first session of a new server opens a page's URL, Streamlit runs that page file
        # without app.py (its older mode for a pages/ folder), so no run is chosen yet. Start at
        # app.py, which then switches back to this page.
        page_file = Path(inspect.stack()[1].filename).resolve()
        st.session_state["requested_page"] = str(page_file.relative_to(loading.APP_ROOT))
        st.switch_page("app.py")
    return loading.open_run(st.session_state["run_path"])


def run_sidebar(run: Run) -> None:
    """Show what the open run is in the sidebar, with a warning for unfinished or synthetic runs."""
    meta = run.meta
    with st.sidebar:
        encoder = meta.get("encoder", {})
        st.caption(
            f"{len(run.scores):,} pairs, {len(run.images):,} images · trained on {meta.get('device', '?')} · "
            f"encoder {encoder.get('name', '?')} · created {meta.get('created', '?')}"
        )
        if meta.get("status") != "complete":
            st.warning(
                f"This run's status is `{meta.get('status')}`: training has not finished, so the scores come "
                "from the last completed epoch. Resume it with `srem train --resume`.",
                icon=":material/hourglass:",
            )
        synthetic = meta.get("data", {}).get("synthetic")
        if synthetic:
            st.info(f"Synthetic run ({synthetic}): its scores were not produced by a model.", icon=":material/science:")


def image_grid(items: Iterable[dict], columns: int = GRID_COLUMNS) -> None:
    """Show images in rows of ``columns``; each item has ``path`` (or None), ``title`` and ``lines``."""
    items = list(items)
    for start in range(0, len(items), columns):
        cells = st.columns(columns)
        for cell, item in zip(cells, items[start : start + columns]):
            with cell:
                thumbnail = loading.square_thumbnail(item.get("path"))
                if thumbnail is not None:
                    st.image(thumbnail, width="stretch")
                else:
                    st.caption("(no image file)")
                st.markdown(f"**{item['title']}**")
                for line in item.get("lines", []):
                    st.caption(line)


def image_noise_line(noise_row) -> str:
    """Describe the flags of one image's captions, from a row of ``analysis.image_noise_table``."""
    return f"{int(noise_row['n_flagged'])}/{int(noise_row['n_captions'])} flagged · min clean prob {noise_row['min_clean_prob']:.2f}"


def pair_line(row) -> str:
    """Describe one pair's scores and flag in one line, from a row of scores.parquet."""
    flag = "flagged" if row["is_noisy"] else "kept"
    return f"clean prob {row['clean_prob']:.2f} ({flag}) · loss {row['per_pair_loss']:.2f}"


def score_label(name: str) -> str:
    return analysis.SCORE_LABELS.get(name, name)
