import logging

import numpy as np
import pytest

from srem_core.projection import EmbeddingProjector

DIM = 16


def two_clusters(n_per_cluster, seed=0):
    """Two tight clusters around opposite unit vectors, with labels 0 and 1."""
    rng = np.random.default_rng(seed)
    center = np.zeros(DIM, dtype=np.float32)
    center[0] = 1.0
    noise = 0.1 * rng.standard_normal((2 * n_per_cluster, DIM)).astype(np.float32)
    labels = np.repeat([0, 1], n_per_cluster)
    vectors = np.where(labels[:, None] == 0, center, -center) + noise
    return vectors.astype(np.float32), labels


def nearest_neighbour_agreement(coordinates, labels):
    """Fraction of points whose nearest other point in 2-D has the same label."""
    distances = ((coordinates[:, None, :] - coordinates[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[distances.argmin(axis=1)] == labels))


@pytest.fixture(scope="module")
def clusters():
    return two_clusters(150)


@pytest.fixture(scope="module")
def fitted(clusters):
    """A projector fitted on all 300 points (below the cap) and its output."""
    vectors, _ = clusters
    projector = EmbeddingProjector(random_state=0)
    return projector, projector.fit_transform(vectors)


def test_output_shape_and_dtype(fitted):
    projector, coordinates = fitted
    assert len(projector.fit_indices_) == 300
    assert coordinates.shape == (300, 2)
    assert coordinates.dtype == np.float32
    assert np.isfinite(coordinates).all()


def test_fixed_random_state_is_deterministic(clusters):
    vectors, _ = clusters
    first = EmbeddingProjector(random_state=3).fit_transform(vectors)
    second = EmbeddingProjector(random_state=3).fit_transform(vectors)
    np.testing.assert_array_equal(first, second)


def test_clusters_stay_separated(clusters, fitted):
    _, labels = clusters
    _, coordinates = fitted
    # Random coordinates would score about 0.5 here.
    assert nearest_neighbour_agreement(coordinates, labels) >= 0.95


def test_sample_then_transform_above_cap(clusters, caplog):
    vectors, labels = clusters
    projector = EmbeddingProjector(max_fit_points=100, transform_chunk_size=80, random_state=0)
    with caplog.at_level(logging.INFO, logger="srem_core.projection"):
        coordinates = projector.fit_transform(vectors)

    assert len(projector.fit_indices_) == 100
    assert projector.reducer_.embedding_.shape == (100, 2)
    np.testing.assert_array_equal(coordinates[projector.fit_indices_], projector.reducer_.embedding_)
    assert coordinates.shape == (300, 2)
    assert np.isfinite(coordinates).all()
    # 200 transformed points in chunks of 80 give three progress lines.
    placed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Placed")]
    assert placed == [
        "Placed 80 of 200 points with UMAP transform",
        "Placed 160 of 200 points with UMAP transform",
        "Placed 200 of 200 points with UMAP transform",
    ]
    assert nearest_neighbour_agreement(coordinates, labels) >= 0.95


def test_transform_new_points(clusters, fitted):
    _, labels = clusters
    projector, _ = fitted
    new_vectors, new_labels = two_clusters(20, seed=5)
    placed = projector.transform(new_vectors)
    assert placed.shape == (40, 2)
    assert placed.dtype == np.float32

    # Each new point lands nearer the centre of its own cluster's fitted points.
    fitted = projector.reducer_.embedding_
    centres = np.stack([fitted[labels == 0].mean(axis=0), fitted[labels == 1].mean(axis=0)])
    nearest_centre = ((placed[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert np.mean(nearest_centre == new_labels) >= 0.95


def test_init_stores_params_only():
    projector = EmbeddingProjector(n_neighbors=5, random_state=1)
    assert projector.get_params()["n_neighbors"] == 5
    assert projector.get_params()["metric"] == "cosine"
    assert not hasattr(projector, "reducer_")


@pytest.mark.parametrize(
    "vectors, params, message",
    [
        (np.zeros(DIM), {}, "`vectors` must be a 2-D array (n, dim), got shape (16,)."),
        (
            np.full((30, DIM), np.nan),
            {},
            "`vectors` contains NaN or infinite values (first in row 0).",
        ),
        (
            np.ones((10, DIM)),
            {},
            "`vectors` has 10 rows, but n_neighbors=15 needs at least 16. Pass more rows or lower "
            "`n_neighbors`.",
        ),
        (
            np.ones((30, DIM)),
            {"max_fit_points": 15},
            "`max_fit_points` (15) must exceed `n_neighbors` (15), because UMAP needs that many "
            "neighbours per point.",
        ),
        (
            np.ones((30, DIM)),
            {"transform_chunk_size": 0},
            "`transform_chunk_size` must be at least 1, got 0.",
        ),
    ],
)
def test_fit_bad_input(vectors, params, message):
    with pytest.raises(ValueError) as error:
        EmbeddingProjector(**params).fit_transform(vectors)
    assert str(error.value) == message


def test_transform_before_fit(clusters):
    vectors, _ = clusters
    with pytest.raises(ValueError) as error:
        EmbeddingProjector().transform(vectors)
    assert str(error.value) == "This EmbeddingProjector is not fitted yet; call `fit(vectors)` first."


def test_transform_dimension_mismatch(clusters, fitted):
    vectors, _ = clusters
    projector, _ = fitted
    with pytest.raises(ValueError) as error:
        projector.transform(vectors[:, :8])
    assert str(error.value) == "`vectors` has dimension 8 but the projector was fitted on dimension 16."
