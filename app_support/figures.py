"""Pure plotly figure builders for the app pages: arrays and tables in, ``go.Figure`` out.

Builders never read files or session state, so the same input always gives the same figure and the
pages can cache figures with ``st.cache_data``. Large scatters use WebGL (``go.Scattergl``) and are
drawn from a seeded random sample above ``MAX_SCATTER_POINTS``, which the figure title then states.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_SCATTER_POINTS = 20_000
"""Most points a scatter draws; above it a seeded random sample is drawn. An estimate: at this size
a WebGL scatter still pans smoothly in Chromium and its figure JSON stays near 1 MB."""

HISTOGRAM_BINS = 50
"""Bins of the score histograms; the counts are computed here, so the browser receives 50 bars per
group rather than every value."""

GROUP_COLOURS = {
    "flagged": "#d62728",
    "kept": "#1f77b4",
    "injected noise": "#ff7f0e",
    "not injected": "#2ca02c",
    "unknown": "#9a9a9a",
    "flagged, injected": "#d62728",
    "flagged, not injected": "#ff9896",
    "kept, injected": "#ff7f0e",
    "kept, not injected": "#1f77b4",
    "flagged, unknown": "#e377c2",
    "kept, unknown": "#9a9a9a",
}
"""Colour of each group label that ``group_labels`` produces (flagged is red, kept is blue)."""

CATEGORY_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
)
"""Colours of categorical map traces, in order of category size."""

MAX_MAP_CATEGORIES = len(CATEGORY_COLOURS)
"""Largest number of categories coloured separately on the map; smaller ones are merged as "other"."""

MAP_KINDS = ("image", "caption")
"""Kinds of map points, in the order of their code in ``map_point_ids``."""


def map_point_ids(kind: str, rows: np.ndarray) -> np.ndarray:
    """Encode map points as one int64 each, ``2 * row + kind code``, for a marker's ``customdata``.

    One number per point travels to the browser as a compact binary array, and Streamlit returns it
    unchanged in a selection. A two-column array would come back as a dict per point.
    """
    return 2 * np.asarray(rows, dtype=np.int64) + MAP_KINDS.index(kind)


def decode_map_point(point_id: int) -> tuple[str, int]:
    """Return ``(kind, row)`` of a point id made by ``map_point_ids``."""
    return MAP_KINDS[int(point_id) % 2], int(point_id) // 2

CLEAN_PROB_COLOURSCALE = "RdYlBu"
"""Red for low ``clean_prob`` (likely mismatched), blue for high."""


def group_labels(flags: np.ndarray, known: np.ndarray, injected: np.ndarray, by: str) -> np.ndarray:
    """Label each pair for splitting a plot: ``by`` is "flag", "truth" or "flag and truth"."""
    flag_part = np.where(flags, "flagged", "kept")
    truth_part = np.where(known, np.where(injected, "injected", "not injected"), "unknown")
    if by == "flag":
        return flag_part.astype(object)
    if by == "truth":
        return np.where(truth_part == "injected", "injected noise", truth_part).astype(object)
    if by == "flag and truth":
        return np.char.add(np.char.add(flag_part, ", "), truth_part).astype(object)
    raise ValueError(f"by must be 'flag', 'truth' or 'flag and truth'; got {by!r}")


def _ordered_groups(labels: np.ndarray) -> list[str]:
    present = set(pd.unique(labels))
    return [name for name in GROUP_COLOURS if name in present] + sorted(present - set(GROUP_COLOURS))


def sample_positions(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Return all positions ``0..n-1``, or a sorted seeded random sample of ``max_points`` of them."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def training_curves(epochs: pd.DataFrame, best_epoch: int | None = None) -> go.Figure:
    """Plot the per-epoch records of metrics.jsonl: loss terms, validation rSum, fraction selected clean.

    A fourth panel shows training-split detection (AUROC, AP) when the records have it. ``best_epoch``,
    the epoch of the saved checkpoint, is marked with a dotted line on every panel.
    """
    panels = [
        ("Loss terms", ["loss", "loss_clean", "loss_complementary"]),
        ("Validation rSum", ["val_rsum"]),
        ("Fraction selected clean", ["fraction_selected"]),
        ("Detection on the training split", ["train_auroc", "train_ap"]),
    ]
    panels = [(title, [c for c in columns if c in epochs]) for title, columns in panels]
    panels = [(title, columns) for title, columns in panels if columns]
    figure = make_subplots(rows=1, cols=max(len(panels), 1), subplot_titles=[title for title, _ in panels])
    for column_number, (_, columns) in enumerate(panels, start=1):
        for name in columns:
            figure.add_trace(
                go.Scatter(x=epochs["epoch"], y=epochs[name], mode="lines+markers", name=name),
                row=1, col=column_number,
            )
        figure.update_xaxes(title_text="epoch", row=1, col=column_number)
        if best_epoch is not None:
            figure.add_vline(x=best_epoch, line_dash="dot", line_color="grey", row=1, col=column_number)
    figure.update_layout(height=320, margin=dict(l=40, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    return figure


def score_histogram(
    values: np.ndarray,
    labels: np.ndarray,
    title: str,
    threshold: float | None = None,
    bins: int = HISTOGRAM_BINS,
) -> go.Figure:
    """Overlaid histograms of one score, one bar trace per group label, with an optional threshold line.

    Bin edges are shared by all groups and span the finite values; counts are computed here.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    figure = go.Figure()
    if finite.any():
        low, high = float(values[finite].min()), float(values[finite].max())
        edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        for group in _ordered_groups(labels):
            in_group = finite & (labels == group)
            counts, _ = np.histogram(values[in_group], bins=edges)
            figure.add_trace(
                go.Bar(x=centres, y=counts, width=width, name=f"{group} ({int(in_group.sum()):,})",
                       marker_color=GROUP_COLOURS.get(group), opacity=0.65)
            )
    if threshold is not None:
        figure.add_vline(x=threshold, line_dash="dash", line_color="black", annotation_text=f"threshold {threshold:.3g}")
    figure.update_layout(
        title=title, barmode="overlay", bargap=0, height=300, xaxis_title=title, yaxis_title="pairs",
        margin=dict(l=40, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.3),
    )
    return figure


def joint_scatter(
    energy: np.ndarray,
    entropy: np.ndarray,
    labels: np.ndarray,
    energy_threshold: float | None,
    entropy_threshold: float | None,
    hover: np.ndarray | None = None,
    max_points: int = MAX_SCATTER_POINTS,
    seed: int = 0,
) -> go.Figure:
    """WebGL scatter of energy (x) against swapped entropy (y), one trace per group, with threshold lines."""
    positions = sample_positions(len(energy), max_points, seed)
    figure = go.Figure()
    for group in _ordered_groups(labels[positions]):
        chosen = positions[labels[positions] == group]
        figure.add_trace(
            go.Scattergl(
                x=energy[chosen], y=entropy[chosen], mode="markers", name=group,
                marker=dict(size=4, color=GROUP_COLOURS.get(group), opacity=0.6),
                text=None if hover is None else hover[chosen],
                hovertemplate="energy %{x:.3f}<br>swapped entropy %{y:.3f}<br>%{text}<extra></extra>",
            )
        )
    if energy_threshold is not None:
        figure.add_vline(x=energy_threshold, line_dash="dash", line_color="black")
    if entropy_threshold is not None:
        figure.add_hline(y=entropy_threshold, line_dash="dash", line_color="black")
    shown = f"{len(positions):,} of {len(energy):,} pairs (random sample)" if len(positions) < len(energy) else f"{len(energy):,} pairs"
    figure.update_layout(
        title=f"Energy against swapped entropy: {shown}", xaxis_title="energy (lower: more logit mass)",
        yaxis_title="swapped entropy (lower: confident and consistent)", height=460,
        margin=dict(l=40, r=20, t=50, b=40),
    )
    return figure


def flips_chart(flips: pd.DataFrame, selected_epoch: int | None = None) -> go.Figure:
    """Bars per epoch of pairs that became flagged and became clean, compared with the epoch before."""
    figure = go.Figure()
    series = [("became_flagged", "became flagged", GROUP_COLOURS["flagged"]),
              ("became_clean", "became clean", GROUP_COLOURS["kept"]),
              ("injected_cleared", "injected noise that became clean", GROUP_COLOURS["injected noise"])]
    for column, name, colour in series:
        if column in flips:
            figure.add_trace(go.Bar(x=flips["epoch"], y=flips[column], name=name, marker_color=colour))
    if selected_epoch is not None:
        figure.add_vline(x=selected_epoch, line_dash="dot", line_color="black")
    figure.update_layout(
        title="Flag changes between consecutive epochs", barmode="group", height=300,
        xaxis_title="epoch", yaxis_title="pairs", margin=dict(l=40, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.3),
    )
    return figure


def embedding_map(
    points: pd.DataFrame,
    colour_mode: str,
    links: list[tuple[float, float, float, float]] = (),
    max_points: int = MAX_SCATTER_POINTS,
    seed: int = 0,
) -> go.Figure:
    """WebGL map of image and caption embeddings.

    ``points`` has columns ``x``, ``y``, ``kind`` ("image" or "caption"), ``row`` (row of
    images.parquet or scores.parquet), ``colour`` (a float in [0, 1] when ``colour_mode`` is
    "continuous", else a label) and ``hover``. Every marker's ``customdata`` is its ``map_point_ids``
    value, so that a selection can be mapped back to images and pairs. ``links`` are segments (x0, y0, x1, y1) drawn
    between a pair's image and caption.
    """
    if colour_mode not in ("continuous", "categorical"):
        raise ValueError(f"colour_mode must be 'continuous' or 'categorical'; got {colour_mode!r}")
    shown = points.iloc[sample_positions(len(points), max_points, seed)]
    figure = go.Figure()
    symbols = {"image": "square", "caption": "circle"}
    if colour_mode == "categorical":
        shown = shown.assign(colour=_top_categories(shown["colour"]))
        order = shown["colour"].value_counts().index.tolist()
        order = [label for label in order if label != "other"] + (["other"] if "other" in order else [])
        palette = {label: CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)] for i, label in enumerate(order)}
        palette["other"] = "#c7c7c7"
    for kind in ("image", "caption"):
        part = shown[shown["kind"] == kind]
        if part.empty:
            continue
        if colour_mode == "continuous":
            traces = [(f"{kind}s", part, dict(color=part["colour"], colorscale=CLEAN_PROB_COLOURSCALE, cmin=0, cmax=1,
                                              colorbar=dict(title="clean prob") if kind == "caption" else None,
                                              showscale=kind == "caption"))]
        else:
            traces = [
                (f"{kind}s: {label}", part[part["colour"] == label], dict(color=palette[label]))
                for label in order if (part["colour"] == label).any()
            ]
        for name, subset, marker in traces:
            figure.add_trace(
                go.Scattergl(
                    x=subset["x"], y=subset["y"], mode="markers", name=name,
                    marker=dict(size=5 if kind == "caption" else 7, symbol=symbols[kind], opacity=0.7, **marker),
                    customdata=map_point_ids(kind, subset["row"].to_numpy()),
                    text=subset["hover"], hovertemplate="%{text}<extra></extra>",
                )
            )
    for x0, y0, x1, y1 in links:
        figure.add_trace(go.Scattergl(x=[x0, x1], y=[y0, y1], mode="lines+markers", showlegend=False,
                                      line=dict(color="black", width=2), marker=dict(size=10, color="black"),
                                      hoverinfo="skip"))
    title = f"{len(shown):,} of {len(points):,} points (random sample)" if len(shown) < len(points) else f"{len(points):,} points"
    figure.update_layout(
        title=f"UMAP of image (squares) and caption (circles) embeddings: {title}", height=620,
        dragmode="lasso", xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False),
        margin=dict(l=20, r=20, t=50, b=20), legend=dict(orientation="h", y=-0.05),
    )
    return figure


def _top_categories(labels: pd.Series) -> np.ndarray:
    """Keep the ``MAX_MAP_CATEGORIES - 1`` largest labels and name the rest "other"."""
    labels = labels.fillna("none").astype(str)
    counts = labels.value_counts()
    if len(counts) <= MAX_MAP_CATEGORIES:
        return labels.to_numpy()
    keep = set(counts.index[: MAX_MAP_CATEGORIES - 1])
    return np.where(labels.isin(keep), labels, "other")
