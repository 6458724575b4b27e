"""Flagged pairs: why each pair is flagged, a decision per pair, re-pair suggestions and export."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app_support import analysis, loading, widgets
from srem_core.runs import Run

PAGE_SIZES = (25, 50, 100)
# Captions suggested for an image, and images suggested for a caption.
SUGGESTIONS = 5

EXPORT_FORMATS = {"csv": "CSV", "jsonl": "JSON Lines", "parquet": "Parquet"}
EXPORT_KINDS = {"clean": "Cleaned manifest (flagged pairs removed)", "noisy": "Removed pairs only"}
EXPORT_MIME = {"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}


def best_caption_text(run: Run, best_row: int, position: int) -> str:
    if best_row == position:
        return "(its own caption)"
    if best_row < 0:
        return "(none found)"
    return run.scores["caption"].iat[int(best_row)]


def page_table(run: Run, positions: np.ndarray, saved: dict[str, str], threshold: float) -> pd.DataFrame:
    """Assemble the rows of one table page: thumbnail, caption, reason, best caption, scores, decision."""
    rows = run.scores.iloc[positions]
    image_indices = rows["image_index"].to_numpy()
    matches = loading.caption_matches(run, positions, 1)
    best_rows, best_similarity, own_similarity = matches.rows[:, 0], matches.similarities[:, 0], matches.own_similarity
    ranks = loading.percentiles(run).iloc[positions]
    reasons = [
        analysis.flag_reason(row, rank, threshold, float(own), float(best), best_row in (position, -1))
        for (_, row), (_, rank), own, best, best_row, position
        in zip(rows.iterrows(), ranks.iterrows(), own_similarity, best_similarity, best_rows, positions)
    ]
    table = pd.DataFrame(
        {
            "image": [loading.thumbnail_uri(loading.image_path(run, index)) for index in image_indices],
            "caption": rows["caption"].to_numpy(),
            "best_caption": [best_caption_text(run, best, position) for best, position in zip(best_rows, positions)],
            "clean_prob": rows["clean_prob"].to_numpy(),
            "why": reasons,
            "flagged": rows["is_noisy"].to_numpy(),
            "decision": [analysis.DECISION_LABELS[value] for value in analysis.decision_column(rows, saved)],
        }
    )
    if analysis.has_ground_truth(run.scores):
        table["injected"] = rows["is_injected_noise"].to_numpy()
    for column in ("per_pair_loss", "energy", "swapped_entropy", "pair_id"):
        table[column] = rows[column].to_numpy()
    return table


TABLE_COLUMNS = {
    "image": st.column_config.ImageColumn("image", width="small"),
    "pair_id": st.column_config.TextColumn("pair id"),
    "caption": st.column_config.TextColumn("caption", width="medium"),
    "why": st.column_config.TextColumn(
        "why flagged", width="large",
        help="'loss top 3%': the pair's loss is among the highest 3% of all pairs; likewise for entropy and energy.",
    ),
    "best_caption": st.column_config.TextColumn("best caption for the image", width="medium"),
    "clean_prob": st.column_config.ProgressColumn("clean prob", min_value=0.0, max_value=1.0, format="%.2f"),
    "per_pair_loss": st.column_config.NumberColumn("loss", format="%.2f"),
    "energy": st.column_config.NumberColumn("energy", format="%.3f"),
    "swapped_entropy": st.column_config.NumberColumn("swapped entropy", format="%.2f"),
    "flagged": st.column_config.CheckboxColumn("flagged"),
    "injected": st.column_config.CheckboxColumn("injected noise"),
}


def select_row(table_key: str) -> None:
    rows = st.session_state[table_key].selection.rows
    if rows:
        st.session_state["inspect_pair"] = st.session_state["page_pair_ids"][rows[0]]


def decide(run: Run, pair_ids: list[str], decision: str | None, message: str) -> None:
    try:
        loading.save_decision(run, pair_ids, decision)
    except OSError as error:
        st.session_state["decision_error"] = (
            f"Could not save the decision to {run.path / 'decisions.json'} ({error.strerror or error}). "
            "Make the run directory writable, or copy the run to a writable folder and open the copy."
        )
        return
    st.toast(message, icon=":material/save:")


def filters(run: Run) -> tuple[analysis.PairFilter, int]:
    scores = run.scores
    columns = st.columns([2, 3, 2, 2])
    show = columns[0].selectbox("Show", list(analysis.SHOW_CHOICES), format_func=analysis.SHOW_CHOICES.get, key="show")
    text = columns[1].text_input("Caption contains", key="caption_contains", placeholder="any words")
    categories = ()
    if "category" in scores and scores["category"].notna().any():
        names = sorted(scores["category"].dropna().unique().tolist())
        categories = tuple(columns[2].multiselect("Category", names, key="categories"))
    splits = tuple(columns[3].multiselect("Split", sorted(scores["split"].unique()), key="splits"))
    columns = st.columns([3, 2, 1, 1])
    low_high = columns[0].slider("Clean probability between", 0.0, 1.0, (0.0, 1.0), 0.01, key="clean_prob_range")
    sort_by = columns[1].selectbox("Sort by", analysis.SORT_CHOICES, key="sort_by", format_func=widgets.score_label)
    descending = columns[2].toggle("Descending", key="descending")
    page_size = columns[3].selectbox("Rows per page", PAGE_SIZES, index=1, key="page_size")
    spec = analysis.PairFilter(show, text, categories, splits, tuple(low_high), sort_by, not descending)
    return spec, page_size


def inspect(run: Run, position: int, threshold: float) -> None:
    """Show one pair in full, with decision buttons and re-pair suggestions."""
    row = run.scores.iloc[position]
    pair_id = row["pair_id"]
    image_index = int(row["image_index"])
    matches = loading.caption_matches(run, np.array([position]), SUGGESTIONS)
    found = matches.rows[0] >= 0
    caption_rows, caption_similarity = matches.rows[0][found], matches.similarities[0][found]
    image_columns = st.columns([1, 2])
    with image_columns[0]:
        path = loading.image_path(run, image_index)
        if path:
            st.image(path, width="stretch")
    with image_columns[1]:
        st.markdown(f"**{row['caption']}**")
        st.caption(f"pair `{pair_id}` · image `{row['image_id']}` · split {row['split']}")
        rank = loading.percentiles(run).iloc[position]
        best_is_own = len(caption_rows) == 0 or int(caption_rows[0]) == position
        best_similarity = float(caption_similarity[0]) if len(caption_rows) else None
        st.write(analysis.flag_reason(row, rank, threshold, float(matches.own_similarity[0]), best_similarity, best_is_own))
        saved = loading.decisions(run).get(pair_id, "")
        st.caption(f"Your decision: {analysis.DECISION_LABELS[saved] or 'none yet'}")
        buttons = st.columns(3)
        buttons[0].button("Confirm noisy", key="confirm_one", icon=":material/flag:", on_click=decide,
                          args=(run, [pair_id], "confirmed_noisy", f"{pair_id} confirmed noisy"))
        buttons[1].button("Clear flag", key="clear_one", icon=":material/check:", on_click=decide,
                          args=(run, [pair_id], "cleared", f"{pair_id} cleared"))
        buttons[2].button("Undo decision", key="undo_one", icon=":material/undo:", on_click=decide,
                          args=(run, [pair_id], None, f"decision on {pair_id} removed"), disabled=not saved)

    st.markdown("##### Re-pair suggestions")
    columns = st.columns(2)
    with columns[0]:
        st.caption(f"Top {SUGGESTIONS} captions for this image")
        suggested = run.scores.iloc[caption_rows]
        st.dataframe(
            pd.DataFrame({"similarity": caption_similarity, "clean prob": suggested["clean_prob"].to_numpy(),
                          "caption": suggested["caption"].to_numpy(), "pair id": suggested["pair_id"].to_numpy()}),
            hide_index=True, key="suggested_captions",
            column_config={"similarity": st.column_config.NumberColumn(format="%.3f"),
                           "clean prob": st.column_config.NumberColumn(format="%.2f"),
                           "caption": st.column_config.TextColumn(width="medium")},
        )
    with columns[1]:
        st.caption(f"Top {SUGGESTIONS} images for this caption")
        similarity, rows = loading.search_one(run, "image", run.text_embeddings[position], SUGGESTIONS)
        noise = loading.image_noise(run)
        widgets.image_grid(
            [{"path": loading.image_path(run, index), "title": f"{score:.3f}",
              "lines": [widgets.image_noise_line(noise.loc[index])] if index in noise.index else []}
             for score, index in zip(similarity, rows)],
            columns=SUGGESTIONS,
        )


def export_section(run: Run) -> None:
    try:
        from srem_core.export import export_pairs
    except ImportError as error:
        st.error(f"Export is unavailable: this srem_core has no `export_pairs` ({error}). Update srem.")
        return

    columns = st.columns([3, 2, 4])
    keep = columns[0].radio("Export", list(EXPORT_KINDS), format_func=EXPORT_KINDS.get, key="export_keep")
    fmt = columns[1].radio("Format", list(EXPORT_FORMATS), format_func=EXPORT_FORMATS.get, key="export_format")
    folder = columns[2].text_input("Folder to write to", str(run.path / "exports"), key="export_folder")
    name = f"pairs-{'cleaned' if keep == 'clean' else 'removed'}.{fmt}"
    st.caption("Your decisions are applied: confirmed pairs count as flagged, cleared pairs as kept.")

    def export_bytes() -> bytes:
        # A download lands in an unknown folder, so its image paths are absolute.
        with tempfile.TemporaryDirectory() as scratch:
            return Path(export_pairs(run, keep=keep, fmt=fmt, out=Path(scratch) / name, absolute_paths=True)).read_bytes()

    buttons = st.columns(2)
    if buttons[0].button(f"Write {name}", key="export_write", icon=":material/save:"):
        target = Path(folder).expanduser() / name
        try:
            st.session_state["last_export"] = str(export_pairs(run, keep=keep, fmt=fmt, out=target))
        except OSError as error:
            st.error(f"Could not write {target} ({error.strerror or error}). Choose a writable folder.")
    buttons[1].download_button(f"Download {name}", data=export_bytes, file_name=name, mime=EXPORT_MIME[fmt],
                               key="export_download", icon=":material/download:", on_click="ignore")
    if st.session_state.get("last_export"):
        st.success(f"Wrote `{st.session_state['last_export']}`.", icon=":material/task_alt:")


run = widgets.current_run()
threshold = analysis.noise_threshold(run.meta, run.metrics)
saved = loading.decisions(run)

st.title("Flagged pairs")
st.caption(
    f"Pairs with clean probability below {threshold:.2f} are flagged. Select a row to see the pair in full, "
    "record your decision, and look for a better caption or image. Decisions are saved to decisions.json "
    "in the run directory."
)
if "decision_error" in st.session_state:
    st.error(st.session_state.pop("decision_error"), icon=":material/error:")
spec, page_size = filters(run)
positions = loading.filtered_positions(run, spec, loading.decisions_stamp(run))

# Widget keys carry the filter signature, so that new filters start again at page 1 with no selection.
signature = abs(hash((spec, page_size)))
n_pages = analysis.page_bounds(len(positions), page_size, 1)[2]

if len(positions) == 0:
    st.info("No pair matches these filters.")
else:
    page = st.pagination(n_pages, key=f"page_{signature}", max_visible_pages=9)
    start, stop, _ = analysis.page_bounds(len(positions), page_size, page)
    st.caption(f"{len(positions):,} pairs match · rows {start + 1:,}–{stop:,} · page {page} of {n_pages:,}")
    shown = positions[start:stop]
    table = page_table(run, shown, saved, threshold)
    st.session_state["page_pair_ids"] = table["pair_id"].tolist()
    table_key = f"pairs_table_{signature}_{page}"
    st.dataframe(table, hide_index=True, key=table_key, row_height=60, column_config=TABLE_COLUMNS,
                 on_select=functools.partial(select_row, table_key), selection_mode="single-row")
    page_ids = table["pair_id"].tolist()
    buttons = st.columns(3)
    buttons[0].button(f"Confirm all {len(page_ids)} on this page", key="confirm_page", on_click=decide,
                      args=(run, page_ids, "confirmed_noisy", f"{len(page_ids)} pairs confirmed noisy"))
    buttons[1].button(f"Clear all {len(page_ids)} on this page", key="clear_page", on_click=decide,
                      args=(run, page_ids, "cleared", f"{len(page_ids)} pairs cleared"))
    buttons[2].button("Undo decisions on this page", key="undo_page", on_click=decide,
                      args=(run, page_ids, None, "decisions on this page removed"))

    st.subheader("Inspect a pair")
    if st.session_state.get("inspect_pair") not in page_ids:
        st.session_state["inspect_pair"] = page_ids[0]
    captions = dict(zip(table["pair_id"], table["caption"]))
    chosen = st.selectbox("Pair", page_ids, key="inspect_pair", format_func=lambda pid: f"{pid}: {captions[pid][:80]}")
    inspect(run, int(shown[page_ids.index(chosen)]), threshold)

st.subheader("Export")
export_section(run)
