"""Unit tests of the pure figure builders in app_support.figures."""

from __future__ import annotations

import app_helpers  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from app_support import figures


def test_group_labels():
    flags = np.array([True, False, True, False])
    known = np.array([True, True, False, True])
    injected = np.array([True, False, False, True])
    assert figures.group_labels(flags, known, injected, "flag").tolist() == ["flagged", "kept", "flagged", "kept"]
    assert figures.group_labels(flags, known, injected, "truth").tolist() == [
        "injected noise", "not injected", "unknown", "injected noise"]
    assert figures.group_labels(flags, known, injected, "flag and truth").tolist() == [
        "flagged, injected", "kept, not injected", "flagged, unknown", "kept, injected"]
    assert all(label in figures.GROUP_COLOURS for label in figures.group_labels(flags, known, injected, "flag and truth"))
    with pytest.raises(ValueError, match="by must be"):
        figures.group_labels(flags, known, injected, "split")


def test_sample_positions():
    assert figures.sample_positions(5, 10).tolist() == [0, 1, 2, 3, 4]
    sample = figures.sample_positions(1_000, 100, seed=3)
    assert len(sample) == 100
    assert len(np.unique(sample)) == 100
    assert np.all(np.diff(sample) > 0)
    assert sample.tolist() == figures.sample_positions(1_000, 100, seed=3).tolist()


def test_training_curves_panels():
    epochs = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "loss_clean": [1.5, 0.7], "val_rsum": [100.0, 200.0],
                           "fraction_selected": [0.0, 0.8]})
    figure = figures.training_curves(epochs)
    assert [trace.name for trace in figure.data] == ["loss", "loss_clean", "val_rsum", "fraction_selected"]
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == ["Loss terms", "Validation rSum", "Fraction selected clean"]
    with_detection = figures.training_curves(epochs.assign(train_auroc=[0.6, 0.8]), best_epoch=2)
    assert "Detection on the training split" in [a.text for a in with_detection.layout.annotations]
    assert [shape.x0 for shape in with_detection.layout.shapes] == [2, 2, 2, 2]


def test_score_histogram_counts_match_numpy():
    values = np.array([0.0, 0.1, 0.1, 0.5, 0.9, 1.0, np.nan])
    labels = np.array(["kept", "flagged", "kept", "kept", "flagged", "kept", "kept"], dtype=object)
    figure = figures.score_histogram(values, labels, "Clean probability", threshold=0.5, bins=4)
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"flagged (2)", "kept (4)"}
    assert list(by_name["kept (4)"].y) == [2, 0, 1, 1]
    assert list(by_name["flagged (2)"].y) == [1, 0, 0, 1]
    assert sum(by_name["kept (4)"].y) + sum(by_name["flagged (2)"].y) == 6
    assert all(isinstance(trace, go.Bar) for trace in figure.data)
    assert figure.layout.shapes[0].x0 == 0.5


def test_score_histogram_constant_and_empty_values():
    constant = figures.score_histogram(np.ones(3), np.array(["kept"] * 3, dtype=object), "Energy")
    assert sum(constant.data[0].y) == 3
    empty = figures.score_histogram(np.array([np.nan]), np.array(["kept"], dtype=object), "Energy")
    assert len(empty.data) == 0


def test_joint_scatter_samples_with_webgl():
    n = 500
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(n) < 0.3, "flagged", "kept").astype(object)
    figure = figures.joint_scatter(rng.normal(size=n), rng.random(n), labels, 0.1, 0.5, max_points=100)
    assert all(isinstance(trace, go.Scattergl) for trace in figure.data)
    assert sum(len(trace.x) for trace in figure.data) == 100
    assert "100 of 500 pairs (random sample)" in figure.layout.title.text
    assert {shape.type for shape in figure.layout.shapes} == {"line"}
    assert len(figure.layout.shapes) == 2


def test_joint_scatter_without_thresholds_draws_all():
    labels = np.array(["kept"] * 10, dtype=object)
    figure = figures.joint_scatter(np.arange(10.0), np.arange(10.0), labels, None, None)
    assert len(figure.data[0].x) == 10
    assert len(figure.layout.shapes) == 0
    assert figure.layout.title.text.endswith("10 pairs")


def test_flips_chart_series():
    flips = pd.DataFrame({"epoch": [2, 3], "became_flagged": [4, 1], "became_clean": [0, 2], "injected_cleared": [0, 1]})
    figure = figures.flips_chart(flips, selected_epoch=3)
    assert [trace.name for trace in figure.data] == ["became flagged", "became clean", "injected noise that became clean"]
    assert list(figure.data[2].y) == [0, 1]


def map_points(n_images: int = 4, n_captions: int = 6, colour=None) -> pd.DataFrame:
    rows = n_images + n_captions
    return pd.DataFrame({
        "x": np.arange(rows, dtype=float), "y": np.arange(rows, dtype=float),
        "kind": ["image"] * n_images + ["caption"] * n_captions,
        "row": list(range(n_images)) + list(range(n_captions)),
        "colour": colour if colour is not None else np.linspace(0, 1, rows),
        "hover": [f"point {i}" for i in range(rows)],
    })


def test_map_point_ids_round_trip():
    ids = figures.map_point_ids("caption", np.array([0, 7, 123_456]))
    assert ids.dtype == np.int64
    assert [figures.decode_map_point(value) for value in ids] == [("caption", 0), ("caption", 7), ("caption", 123_456)]
    assert figures.decode_map_point(figures.map_point_ids("image", np.array([5]))[0]) == ("image", 5)
    assert len(set(figures.map_point_ids("image", np.arange(10))) & set(figures.map_point_ids("caption", np.arange(10)))) == 0


def test_embedding_map_continuous_customdata_and_link():
    figure = figures.embedding_map(map_points(), "continuous", links=[(0.0, 0.0, 5.0, 5.0)])
    images, captions, link = figure.data
    assert images.name == "images"
    assert captions.name == "captions"
    assert images.marker.symbol == "square"
    assert [figures.decode_map_point(value) for value in captions.customdata[:2]] == [("caption", 0), ("caption", 1)]
    assert [figures.decode_map_point(value) for value in images.customdata[:2]] == [("image", 0), ("image", 1)]
    assert list(link.x) == [0.0, 5.0]
    assert captions.marker.showscale and not images.marker.showscale


def test_embedding_map_category_colours():
    labels = [f"c{i}" for i in range(figures.MAX_MAP_CATEGORIES + 3)]
    colour = (labels * 3)[: 4 + len(labels) * 2]
    points = map_points(4, len(colour) - 4, colour=np.array(colour, dtype=object))
    figure = figures.embedding_map(points, "categorical")
    colours = {}
    for trace in figure.data:
        label = trace.name.split(": ", 1)[1]
        colours.setdefault(label, set()).add(trace.marker.color)
    assert "other" in colours
    assert len(colours) == figures.MAX_MAP_CATEGORIES
    assert all(len(found) == 1 for found in colours.values())
    assert sum(len(trace.x) for trace in figure.data) == len(points)


def test_embedding_map_samples_large_input():
    figure = figures.embedding_map(map_points(300, 700), "continuous", max_points=200)
    assert sum(len(trace.x) for trace in figure.data) == 200
    assert "200 of 1,000 points" in figure.layout.title.text
    with pytest.raises(ValueError, match="colour_mode"):
        figures.embedding_map(map_points(), "gradient")
