"""Distributions: score histograms, the energy x swapped-entropy plane, and flag changes per epoch."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_support import analysis, figures, loading, widgets
from srem_core.runs import Run

# Steps across a score's range on the energy and entropy threshold sliders.
SLIDER_STEPS = 200

# Most flag changes listed for one epoch; the counts above the table cover all of them.
FLIP_ROWS_SHOWN = 1_000


@st.cache_data(hash_funcs=loading.HASH_FUNCS, show_spinner=False, max_entries=64)
def histogram_figure(run: Run, column: str, flags_key: tuple, by: str, threshold: float | None):
    flags = analysis.threshold_flags(run.scores, *flags_key)
    known, injected = analysis.ground_truth(run.scores)
    labels = figures.group_labels(flags, known, injected, by)
    return figures.score_histogram(run.scores[column].to_numpy(), labels, widgets.score_label(column), threshold)


@st.cache_data(hash_funcs=loading.HASH_FUNCS, show_spinner=False, max_entries=32)
def scatter_figure(run: Run, flags_key: tuple, by: str):
    flags = analysis.threshold_flags(run.scores, *flags_key)
    known, injected = analysis.ground_truth(run.scores)
    labels = figures.group_labels(flags, known, injected, by)
    scores = run.scores
    return figures.joint_scatter(
        scores["energy"].to_numpy(), scores["swapped_entropy"].to_numpy(), labels,
        flags_key[1], flags_key[2], hover=scores["caption"].to_numpy(),
    )


def threshold_slider(label: str, values: np.ndarray, key: str, help_text: str) -> float | None:
    """Show a slider over a score's range and return its value, or None at its maximum (the default)."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high <= low:
        return None
    step = (high - low) / SLIDER_STEPS
    chosen = st.slider(label, min_value=low, max_value=high + step, value=high + step, step=step, key=key,
                       format="%.3f", help=help_text + " At the right end this threshold is off.")
    if chosen > high:
        st.caption("Off: flags no pair.")
        return None
    return chosen


run = widgets.current_run()
scores = run.scores
run_threshold = analysis.noise_threshold(run.meta, run.metrics)
truth_known = analysis.has_ground_truth(scores)

st.title("Distributions")
st.caption(
    "Move the thresholds to see how many pairs a rule would flag. A pair is flagged when its clean "
    "probability is below the first threshold, or its energy or swapped entropy is above the others. "
    "The defaults reproduce the run's own flags (energy and entropy sliders at their right end add none)."
)

split_choices = ["flag", "truth", "flag and truth"] if truth_known else ["flag"]
by = st.radio("Split the plots by", split_choices, horizontal=True, key="split_by",
              format_func={"flag": "flag", "truth": "injected ground truth", "flag and truth": "flag and ground truth"}.get)

columns = st.columns(3)
with columns[0]:
    clean_prob_below = st.slider("Flag when clean probability is below", 0.0, 1.0, run_threshold, 0.01,
                                 key="clean_prob_threshold")
with columns[1]:
    energy_above = threshold_slider("Flag when energy is above", scores["energy"].to_numpy(), "energy_threshold",
                                    "Energy is unbounded; a high (less negative) value means little logit mass for the pair.")
with columns[2]:
    entropy_above = threshold_slider("Flag when swapped entropy is above", scores["swapped_entropy"].to_numpy(),
                                     "entropy_threshold", "Low swapped entropy: both directions confident and agreeing.")
flags_key = (clean_prob_below, energy_above, entropy_above)
flags = analysis.threshold_flags(scores, *flags_key)
counts = analysis.detection_counts(flags, scores)

columns = st.columns(4)
run_flagged = int(scores["is_noisy"].sum())
columns[0].metric("Flagged", f"{counts.n_flagged:,}", f"{counts.n_flagged - run_flagged:+,} vs the run",
                  delta_color="off", delta_arrow="off")
columns[1].metric("Kept", f"{counts.n_kept:,}")
if truth_known:
    columns[2].metric("Precision", "–" if counts.precision is None else f"{counts.precision:.3f}",
                      help="Injected noise among flagged training pairs.")
    columns[3].metric("Recall", "–" if counts.recall is None else f"{counts.recall:.3f}",
                      help="Flagged pairs among injected noise.")
else:
    columns[2].caption("Precision and recall need injected ground truth, which this run does not have.")

tabs = st.tabs(["Clean probability", "Energy", "Swapped entropy", "Per-pair loss"])
histograms = [("clean_prob", clean_prob_below), ("energy", energy_above), ("swapped_entropy", entropy_above),
              ("per_pair_loss", None)]
for tab, (column, threshold) in zip(tabs, histograms):
    with tab:
        st.plotly_chart(histogram_figure(run, column, flags_key, by, threshold), key=f"histogram_{column}")

st.plotly_chart(scatter_figure(run, flags_key, by), key="joint_scatter")

st.subheader("Flags over training")
epochs = analysis.history_epochs(run.history)
if len(epochs) < 2:
    st.info("This run's history.parquet has fewer than two epochs, so there are no flag changes to show.")
else:
    epoch = st.select_slider("Epoch", options=epochs, value=epochs[-1], key="epoch")
    try:
        per_epoch = loading.flips_per_epoch(run)
    except ValueError as error:
        st.warning(f"Flag changes cannot be shown: {error}. Retrain the run with this version of srem.")
        st.stop()
    st.plotly_chart(figures.flips_chart(per_epoch, epoch), key="flips_chart")
    flips = loading.flag_flips(run, epoch)
    became_clean = flips[flips["change"] == "cleared"]
    summary = f"{len(flips):,} pairs changed flag between epoch {epochs[epochs.index(epoch) - 1]} and epoch {epoch}: " \
              f"{len(flips) - len(became_clean):,} became flagged, {len(became_clean):,} became clean."
    if truth_known and "is_injected_noise" in flips:
        accepted = int(became_clean["is_injected_noise"].fillna(False).sum())
        summary += f" {accepted:,} of those that became clean are injected noise: the model started trusting a mismatch."
    st.markdown(summary)
    table = flips.head(FLIP_ROWS_SHOWN).rename(columns={"is_noisy": "flagged at the end"})
    st.dataframe(
        table, hide_index=True, key="flips_table",
        column_config={
            "clean_prob_before": st.column_config.NumberColumn("clean prob before", format="%.3f"),
            "clean_prob_after": st.column_config.NumberColumn("clean prob after", format="%.3f"),
            "caption": st.column_config.TextColumn("caption", width="large"),
        },
    )
    if len(flips) > FLIP_ROWS_SHOWN:
        st.caption(f"Showing the first {FLIP_ROWS_SHOWN:,} of {len(flips):,} changes.")
