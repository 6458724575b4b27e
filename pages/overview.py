"""Overview: how many pairs, how noisy the data looks, how training went, and the run's config."""

from __future__ import annotations

import streamlit as st

from app_support import analysis, figures, loading, widgets

run = widgets.current_run()
threshold = analysis.noise_threshold(run.meta, run.metrics)
summary = analysis.summarize(run.scores)
saved = loading.decisions(run)

st.title("Overview")
st.caption(f"Run `{loading.display_path(run.path)}`")

columns = st.columns(5)
columns[0].metric("Pairs", f"{summary.n_pairs:,}", help=f"{summary.n_images:,} distinct images")
columns[1].metric(
    "Estimated noise rate", f"{summary.estimated_noise_rate:.1%}",
    help="Mean of 1 − clean probability over all pairs: the share of mismatched pairs the model expects.",
)
columns[2].metric(
    "Flagged pairs", f"{summary.n_flagged:,}", f"{summary.flagged_fraction:.1%} of pairs", delta_color="off",
    delta_arrow="off", help="Pairs whose clean probability is below the threshold.",
)
columns[3].metric("Flag threshold", f"{threshold:.2f}", help="A pair is flagged when its clean probability is below this.")
if summary.injected_rate is not None:
    columns[4].metric(
        "Injected noise", f"{summary.injected_rate:.1%}",
        help="Share of training pairs whose caption was moved to another image on purpose (ground truth).",
    )
else:
    columns[4].metric("Reviewed by you", f"{len(saved):,}", help="Pairs with a saved decision (Flagged pairs page).")

st.subheader("Training")
epochs = analysis.epoch_table(run.metrics)
if len(epochs):
    best_epoch = None
    if "best_epoch" in epochs and epochs["best_epoch"].notna().any():
        best_epoch = int(epochs["best_epoch"].dropna().iloc[-1])
    st.plotly_chart(figures.training_curves(epochs, best_epoch), key="training_curves")
    if best_epoch is not None:
        st.caption(f"The dotted line marks epoch {best_epoch}, whose checkpoint (highest validation rSum) the run keeps.")
else:
    st.info("This run has no per-epoch records in metrics.jsonl, so there are no training curves to show.")

st.subheader("Detection")
flags = run.scores["is_noisy"].to_numpy(dtype=bool)
counts = analysis.detection_counts(flags, run.scores)
final = analysis.final_record(run.metrics) or {}
if counts.n_known:
    columns = st.columns(4)
    columns[0].metric("Precision", "–" if counts.precision is None else f"{counts.precision:.3f}",
                      help="Injected noise among the flagged training pairs.")
    columns[1].metric("Recall", "–" if counts.recall is None else f"{counts.recall:.3f}",
                      help="Flagged pairs among the injected noise.")
    columns[2].metric("AUROC", f"{final['auroc']:.3f}" if "auroc" in final else "–",
                      help="Ranking injected noise by 1 − clean probability (from metrics.jsonl).")
    columns[3].metric("Average precision", f"{final['ap']:.3f}" if "ap" in final else "–")
    st.caption(f"Against injected noise on the {counts.n_known:,} training pairs with known ground truth.")
else:
    st.info(
        "No ground truth: this run injected no noise, so flagged pairs cannot be scored automatically. "
        "Review them on the Flagged pairs page."
    )

retrieval = analysis.retrieval_metrics(final)
if retrieval:
    st.subheader(f"Retrieval on the {final.get('split', 'test')} split")
    for column, (label, value) in zip(st.columns(len(retrieval)), retrieval):
        column.metric(label, f"{value:.1f}")

st.subheader("Configuration")
with st.expander("Training config, data and encoder (config.json)"):
    st.json(run.meta, expanded=2)
