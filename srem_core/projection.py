"""2-D map of embeddings with UMAP, for plotting image and caption collections.

``EmbeddingProjector`` follows scikit-learn's estimator conventions and wraps umap-learn's ``UMAP``.
UMAP's fit cost grows faster than linearly and its memory with n * n_neighbors, so collections above
``max_fit_points`` are projected by fitting on a seeded random sample and placing the remaining
points with ``UMAP.transform`` in chunks. Coordinates have no unit; only distances within one
projection mean anything.
"""

from __future__ import annotations

import logging

import numpy as np
import umap

logger = logging.getLogger(__name__)

MAX_FIT_POINTS = 20_000
"""Largest sample that UMAP is fitted on. A uniform sample of 20,000 still contains about 20 points
of any group that makes up 0.1% of the collection, and fit time stays bounded (bench/README.md)."""

TRANSFORM_CHUNK_SIZE = 50_000
"""Points placed by one ``UMAP.transform`` call, which bounds the memory of its neighbour graph and
sets how often progress is logged."""

N_COMPONENTS = 2
"""Output dimension: the projector exists to draw scatter plots."""


class EmbeddingProjector:
    """Project embeddings (n, D) to 2-D coordinates (n, 2) with UMAP.

    Parameters
    ----------
    n_neighbors : int
        UMAP's neighbourhood size. Larger values keep more global structure.
    min_dist : float
        UMAP's minimum distance between points in the output. Smaller values pack clusters tighter.
    metric : str
        Input metric passed to UMAP. ``"cosine"`` suits embeddings compared by cosine similarity.
    max_fit_points : int
        Largest number of points UMAP is fitted on. ``fit`` on more points uses a random sample of
        this size, and ``fit_transform`` places the remaining points with ``transform``.
    transform_chunk_size : int
        Points per ``UMAP.transform`` call.
    random_state : int or None
        Seed for the sample and for UMAP. An integer makes the output reproducible, but UMAP then
        runs single-threaded. None runs UMAP on all cores with non-reproducible output.

    Attributes
    ----------
    reducer_ : umap.UMAP
        The fitted UMAP model.
    fit_indices_ : ndarray of shape (n_fit,)
        Rows of the ``fit`` input that UMAP was fitted on, in increasing order.
    n_features_in_ : int
        Input dimension.
    """

    def __init__(
        self,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "cosine",
        max_fit_points: int = MAX_FIT_POINTS,
        transform_chunk_size: int = TRANSFORM_CHUNK_SIZE,
        random_state: int | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.max_fit_points = max_fit_points
        self.transform_chunk_size = transform_chunk_size
        self.random_state = random_state

    def fit(self, vectors: np.ndarray) -> "EmbeddingProjector":
        """Fit UMAP on ``vectors`` (n, D), or on a random sample of ``max_fit_points`` rows, and return self."""
        self._fit_sample(self._check_input(vectors, fitting=True))
        return self

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Fit on ``vectors`` (n, D) as ``fit`` does and return float32 coordinates (n, 2) for every row.

        Rows in the fit sample get UMAP's fitted embedding, and the other rows are placed with
        ``transform``.
        """
        vectors = self._check_input(vectors, fitting=True)
        self._fit_sample(vectors)

        coordinates = np.empty((len(vectors), N_COMPONENTS), dtype=np.float32)
        coordinates[self.fit_indices_] = self.reducer_.embedding_
        rest = np.ones(len(vectors), dtype=bool)
        rest[self.fit_indices_] = False
        if rest.any():
            coordinates[rest] = self._transform_chunks(vectors[rest])
        return coordinates

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Place new ``vectors`` (m, D) in the fitted map and return float32 coordinates (m, 2)."""
        if not hasattr(self, "reducer_"):
            raise ValueError("This EmbeddingProjector is not fitted yet; call `fit(vectors)` first.")
        return self._transform_chunks(self._check_input(vectors, fitting=False))

    def get_params(self, deep: bool = True) -> dict:
        """Return the constructor parameters (scikit-learn's ``get_params``)."""
        return {
            "n_neighbors": self.n_neighbors,
            "min_dist": self.min_dist,
            "metric": self.metric,
            "max_fit_points": self.max_fit_points,
            "transform_chunk_size": self.transform_chunk_size,
            "random_state": self.random_state,
        }

    def set_params(self, **params) -> "EmbeddingProjector":
        """Set constructor parameters and return self (scikit-learn's ``set_params``)."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter `{name}` for EmbeddingProjector; valid: {sorted(valid)}."
                )
            setattr(self, name, value)
        return self

    def _fit_sample(self, vectors: np.ndarray) -> None:
        n_fit = min(len(vectors), self.max_fit_points)
        rng = np.random.default_rng(self.random_state)
        self.fit_indices_ = np.sort(rng.choice(len(vectors), n_fit, replace=False))
        self.n_features_in_ = vectors.shape[1]
        self.reducer_ = umap.UMAP(
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            metric=self.metric,
            n_components=N_COMPONENTS,
            random_state=self.random_state,
            # umap-learn forces one thread when random_state is set and warns otherwise.
            n_jobs=1 if self.random_state is not None else -1,
        )
        logger.info("Fitting UMAP on %d of %d points (dim %d)", n_fit, len(vectors), vectors.shape[1])
        self.reducer_.fit(vectors[self.fit_indices_])

    def _transform_chunks(self, vectors: np.ndarray) -> np.ndarray:
        coordinates = np.empty((len(vectors), N_COMPONENTS), dtype=np.float32)
        for start in range(0, len(vectors), self.transform_chunk_size):
            stop = min(start + self.transform_chunk_size, len(vectors))
            coordinates[start:stop] = self.reducer_.transform(vectors[start:stop])
            logger.info("Placed %d of %d points with UMAP transform", stop, len(vectors))
        return coordinates

    def _check_input(self, vectors, fitting: bool) -> np.ndarray:
        self._check_params()
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ValueError(f"`vectors` must be a 2-D array (n, dim), got shape {vectors.shape}.")
        if not np.issubdtype(vectors.dtype, np.number) or np.iscomplexobj(vectors):
            raise ValueError(f"`vectors` must contain real numbers, got dtype {vectors.dtype}.")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            raise ValueError(f"`vectors` contains NaN or infinite values (first in row {row}).")
        if fitting and len(vectors) <= self.n_neighbors:
            raise ValueError(
                f"`vectors` has {len(vectors)} rows, but n_neighbors={self.n_neighbors} needs at "
                f"least {self.n_neighbors + 1}. Pass more rows or lower `n_neighbors`."
            )
        if not fitting and vectors.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`vectors` has dimension {vectors.shape[1]} but the projector was fitted on "
                f"dimension {self.n_features_in_}."
            )
        return vectors

    def _check_params(self) -> None:
        if self.max_fit_points <= self.n_neighbors:
            raise ValueError(
                f"`max_fit_points` ({self.max_fit_points}) must exceed `n_neighbors` "
                f"({self.n_neighbors}), because UMAP needs that many neighbours per point."
            )
        if self.transform_chunk_size < 1:
            raise ValueError(f"`transform_chunk_size` must be at least 1, got {self.transform_chunk_size}.")
