"""Inner-product (cosine) nearest-neighbour search over L2-normalised embeddings.

``SearchIndex`` follows scikit-learn's estimator conventions: ``__init__`` only stores parameters,
``fit(vectors)`` builds the index and returns self, and fitted attributes end in ``_``. Small
collections are searched exactly with a matrix product. Large ones go to FAISS (IVF-flat or HNSW),
and ``fit`` tunes the FAISS search parameter until recall@10 against exact search reaches
``target_recall``.

Scores are inner products of unit vectors, so cosine similarities in [-1, 1]; higher is more similar.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("auto", "exact", "ivf", "hnsw")

EXACT_MAX_VECTORS = 100_000
"""Largest collection that ``kind="auto"`` searches exactly. One exact query over 100,000 vectors of
dimension 256 took 16 ms (median) and one over 200,000 took 85 ms on a busy 2-core AMD EPYC
(bench/bench_search.py, docs/benchmarks.md), and 20 ms is the latency budget of one interactive query."""

AUTO_FAISS_KIND = "ivf"
"""FAISS index that ``kind="auto"`` builds above ``EXACT_MAX_VECTORS``. At 1M vectors of dimension 256,
IVF-flat built in 289 s and reached recall@10 0.98 at 0.2 ms per query. HNSW built in 1028 s and
reached only 0.93 at efSearch 2048 (docs/benchmarks.md)."""

NORM_TOLERANCE = 1e-2
"""Largest accepted ``|norm - 1|`` when ``normalize=False``. Embeddings stored as float16 come back
with norms about 1e-3 away from 1, and they must still pass."""

EXACT_BLOCK_ELEMENTS = 2**25
"""Score-matrix entries computed at once by exact search (128 MiB of float32), which bounds its
memory use for large query batches."""

IVF_LISTS_PER_SQRT_N = 4
"""IVF list count is this times sqrt(n). A query scans all list centroids plus nprobe lists of about
n / n_lists vectors, and sqrt(n) lists balance the two. A small factor keeps k-means training short."""

IVF_TRAIN_POINTS_PER_LIST = 64
"""k-means training sample per IVF list. More points barely move the centroids but multiply the
training time, which dominates the build."""

IVF_MIN_POINTS_PER_LIST = 39
"""FAISS k-means warns when it has fewer than 39 training points per centroid, so the list count is
capped at n / 39."""

HNSW_NEIGHBORS = 32
"""Graph degree ``M`` of HNSW. A larger M raises recall at a given efSearch but builds slower and
stores 2 * M links (8 * M bytes) per vector."""

HNSW_EF_CONSTRUCTION = 40
"""Candidate list size while building HNSW (FAISS 1.15's default)."""

TUNING_K = 10
"""The k of the recall@k that ``fit`` tunes nprobe or efSearch for."""

TUNING_QUERIES = 500
"""Maximum number of vectors that ``fit`` holds out as tuning queries. 500 * 10 neighbours give a recall estimate
with a standard error near 0.003 at recall 0.95, if the queries' misses were independent."""

TUNING_CONFIDENCE_Z = 2.0
"""Standard errors subtracted from the tuning recall before it is compared with ``target_recall``.
Without the margin, held-out queries reached recall@10 0.945 where the tuning queries reached 0.95."""

FAISS_MIN_VECTORS = 100
"""Minimum number of vectors for a FAISS kind, because tuning holds out a tenth of them and exact
search is faster on collections this small anyway."""

ADD_CHUNK_ROWS = 100_000
"""Rows copied and added to a FAISS index at once (100 MB at dimension 256)."""

NPROBE_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""IVF lists to visit, tried in order until the target recall is met."""

EF_SEARCH_CANDIDATES = (16, 32, 64, 128, 256, 512, 1024, 2048)
"""HNSW efSearch values, tried in order until the target recall is met."""

FORMAT_VERSION = 1
"""Version of the folder that ``save`` writes. ``load`` rejects any other."""

METADATA_FILE = "index.json"
VECTORS_FILE = "vectors.npy"
FAISS_FILE = "index.faiss"


class SearchIndex:
    """Top-k inner-product search over L2-normalised float32 vectors.

    Parameters
    ----------
    kind : {"auto", "exact", "ivf", "hnsw"}
        ``"exact"`` scores every vector with a matrix product. ``"ivf"`` is FAISS IndexIVFFlat with
        about ``4 * sqrt(n)`` lists. ``"hnsw"`` is FAISS IndexHNSWFlat. ``"auto"`` is exact up to
        ``exact_max_vectors`` vectors and ``AUTO_FAISS_KIND`` above.
    exact_max_vectors : int
        Threshold for ``kind="auto"``.
    target_recall : float
        Recall@10 against exact search that ``fit`` tunes nprobe (IVF) or efSearch (HNSW) to reach.
    normalize : bool
        If False, vectors and queries whose L2 norm differs from 1 by more than ``NORM_TOLERANCE``
        raise ValueError, because inner-product search on them is not cosine search. If True, they
        are divided by their norm (all-zero rows still raise).
    n_threads : int or None
        OpenMP threads for FAISS during ``fit`` and ``search``. The previous FAISS setting is
        restored afterwards. None keeps FAISS's current setting. Exact search uses numpy's BLAS
        threads, which this parameter does not change.

        NOTE: on a machine busier than its core count, threaded BLAS made single exact queries over
        10,000 vectors take 0.1 ms or 16 ms at random, and ``OPENBLAS_NUM_THREADS=1`` kept them
        under 1 ms.
    random_state : int
        Seed for the IVF training sample, k-means and the tuning queries.

    Attributes
    ----------
    kind_ : str
        The kind that was built ("exact", "ivf" or "hnsw").
    n_vectors_ : int
        Number of indexed vectors.
    n_features_in_ : int
        Vector dimension.
    vectors_ : ndarray of shape (n_vectors_, n_features_in_) or None
        The indexed vectors for exact search; None for FAISS kinds. It is the input array itself
        when that was already C-contiguous float32 with unit rows and ``normalize=False``.
    index_ : faiss.Index or None
        The FAISS index; None for exact search.
    search_param_ : int or None
        Tuned nprobe (IVF) or efSearch (HNSW); None for exact search.
    tuned_recall_ : float or None
        Mean recall@10 that the tuning queries reached with ``search_param_``; None for exact
        search. Tuning stops at the first parameter whose recall, less two standard errors, reaches
        ``target_recall``.
    """

    def __init__(
        self,
        kind: str = "auto",
        exact_max_vectors: int = EXACT_MAX_VECTORS,
        target_recall: float = 0.95,
        normalize: bool = False,
        n_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.kind = kind
        self.exact_max_vectors = exact_max_vectors
        self.target_recall = target_recall
        self.normalize = normalize
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, vectors: np.ndarray, tuning_queries: np.ndarray | None = None) -> "SearchIndex":
        """Build the index over ``vectors`` (n, D) and return self.

        FAISS kinds tune nprobe or efSearch on ``tuning_queries`` (m, D), which should look like the
        real queries, for example text embeddings when captions search images. By default ``fit``
        holds out a random tenth of the vectors (at most ``TUNING_QUERIES``), adds the rest, tunes
        with the held-out vectors as queries and then adds them too.
        """
        self._check_params()
        vectors = _as_unit_matrix(vectors, "vectors", None, self.normalize)
        if tuning_queries is not None:
            tuning_queries = _as_unit_matrix(
                tuning_queries, "tuning_queries", vectors.shape[1], self.normalize
            )

        self.n_vectors_, self.n_features_in_ = vectors.shape
        self.kind_ = self._resolve_kind(len(vectors))
        self.vectors_ = None
        self.index_ = None
        self.search_param_ = None
        self.tuned_recall_ = None
        logger.info("Building %s index over %d vectors of dim %d", self.kind_, *vectors.shape)

        if self.kind_ == "exact":
            self.vectors_ = vectors
            return self
        if len(vectors) < FAISS_MIN_VECTORS:
            raise ValueError(
                f"kind={self.kind_!r} needs at least {FAISS_MIN_VECTORS} vectors, got "
                f"{len(vectors)}. Use kind='exact' for so few."
            )
        with _faiss_threads(self.n_threads):
            self.index_ = self._empty_faiss_index(vectors)
            self._add_and_tune(vectors, tuning_queries)
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` highest-scoring indexed vectors for each query.

        ``queries`` is (n_queries, D), or (D,) for one query. Returns ``(scores, indices)``, both
        (n_queries, k) and sorted by descending score; scores are float32 and indices int64. FAISS
        kinds return index -1 and score -inf in the slots they could not fill, which happens when
        the visited IVF lists hold fewer than ``k`` vectors.
        """
        self._check_fitted()
        if np.ndim(queries) == 1:
            queries = np.asarray(queries)[None, :]
        queries = _as_unit_matrix(queries, "queries", self.n_features_in_, self.normalize)
        _check_k(k, self.n_vectors_)

        if self.kind_ == "exact":
            return exact_top_k(self.vectors_, queries, k)
        with _faiss_threads(self.n_threads):
            scores, indices = self.index_.search(queries, k)
        scores[indices < 0] = -np.inf
        return scores, indices.astype(np.int64, copy=False)

    def save(self, folder: str | os.PathLike) -> None:
        """Write the fitted index to ``folder`` (created if missing).

        The data file is written first and ``index.json`` last, each through a temporary file and
        ``os.replace``, so a folder with ``index.json`` contains a complete index.
        """
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind_ == "exact":
            _write_atomic(folder / VECTORS_FILE, lambda path: _save_npy(path, self.vectors_))
        else:
            _write_atomic(folder / FAISS_FILE, lambda path: faiss.write_index(self.index_, path))

        metadata = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind_,
            "n_vectors": self.n_vectors_,
            "dim": self.n_features_in_,
            "search_param": self.search_param_,
            "tuned_recall": self.tuned_recall_,
            "params": self.get_params(),
        }
        text = json.dumps(metadata, indent=2)
        _write_atomic(folder / METADATA_FILE, lambda path: Path(path).write_text(text))
        logger.info("Saved %s index of %d vectors to %s", self.kind_, self.n_vectors_, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SearchIndex":
        """Read an index that ``save`` wrote, checking format version, kind, count and dimension."""
        folder = Path(folder)
        metadata = _read_metadata(folder / METADATA_FILE)
        estimator = cls(**metadata["params"])
        estimator.kind_ = metadata["kind"]
        estimator.n_vectors_ = metadata["n_vectors"]
        estimator.n_features_in_ = metadata["dim"]
        estimator.search_param_ = metadata["search_param"]
        estimator.tuned_recall_ = metadata["tuned_recall"]
        estimator.vectors_ = None
        estimator.index_ = None

        if estimator.kind_ == "exact":
            estimator.vectors_ = np.load(folder / VECTORS_FILE, allow_pickle=False)
            shape = estimator.vectors_.shape
        else:
            estimator.index_ = faiss.read_index(str(folder / FAISS_FILE))
            shape = (estimator.index_.ntotal, estimator.index_.d)
            estimator._set_search_param(estimator.search_param_)
        _check_loaded_shape(folder, estimator, shape)
        return estimator

    def get_params(self, deep: bool = True) -> dict:
        """Return the constructor parameters (scikit-learn's ``get_params``)."""
        return {
            "kind": self.kind,
            "exact_max_vectors": self.exact_max_vectors,
            "target_recall": self.target_recall,
            "normalize": self.normalize,
            "n_threads": self.n_threads,
            "random_state": self.random_state,
        }

    def set_params(self, **params) -> "SearchIndex":
        """Set constructor parameters and return self (scikit-learn's ``set_params``)."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter `{name}` for SearchIndex; valid: {sorted(valid)}.")
            setattr(self, name, value)
        return self

    # -- building -------------------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {self.kind!r}.")
        if not 0.0 < self.target_recall <= 1.0:
            raise ValueError(f"`target_recall` must be in (0, 1], got {self.target_recall!r}.")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"`n_threads` must be None or at least 1, got {self.n_threads!r}.")

    def _resolve_kind(self, n_vectors: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "exact" if n_vectors <= self.exact_max_vectors else AUTO_FAISS_KIND

    def _empty_faiss_index(self, vectors: np.ndarray) -> faiss.Index:
        """Return a FAISS index that contains no vectors yet (IVF already trained)."""
        if self.kind_ == "hnsw":
            graph = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            # HNSW numbers vectors in the order they are added, so an id map restores the row ids.
            return faiss.IndexIDMap(graph)
        return _trained_ivf(vectors, self.random_state)

    def _add_and_tune(self, vectors: np.ndarray, tuning_queries: np.ndarray | None) -> None:
        """Add ``vectors`` with their row numbers as ids, tuning the search parameter on the way."""
        held_out = np.empty(0, dtype=np.int64)
        queries = tuning_queries
        if tuning_queries is None:
            rng = np.random.default_rng(self.random_state)
            n_held_out = min(TUNING_QUERIES, len(vectors) // 10)
            held_out = np.sort(rng.choice(len(vectors), n_held_out, replace=False))
            queries = vectors[held_out]
        rows_before_tuning = np.setdiff1d(np.arange(len(vectors)), held_out)

        _add_rows(self.index_, vectors, rows_before_tuning)
        k = min(TUNING_K, len(rows_before_tuning))
        _, truth = exact_top_k(vectors, queries, k, excluded=held_out)
        self._tune(queries, truth)
        _add_rows(self.index_, vectors, held_out)

    def _tune(self, queries: np.ndarray, truth: np.ndarray) -> None:
        """Keep the first candidate search parameter whose recall lower bound reaches the target.

        The bound is mean recall minus ``TUNING_CONFIDENCE_Z`` standard errors over the tuning
        queries, so that recall on other queries from the same distribution also tends to reach it.
        """
        k = truth.shape[1]
        if self.kind_ == "ivf":
            n_lists = self.index_.nlist
            candidates = [c for c in NPROBE_CANDIDATES if c < n_lists] + [n_lists]
        else:
            candidates = list(EF_SEARCH_CANDIDATES)
        for param in candidates:
            self._set_search_param(param)
            _, found = self.index_.search(queries, k)
            recall, lower_bound = _recall_with_lower_bound(found, truth)
            logger.debug(
                "%s search parameter %d: recall@%d %.4f (lower bound %.4f)",
                self.kind_, param, k, recall, lower_bound,
            )
            if lower_bound >= self.target_recall:
                break
        else:
            logger.warning(
                "%s index reached recall@%d %.4f with its largest search parameter %d, below "
                "target_recall %.4f",
                self.kind_, k, recall, param, self.target_recall,
            )
        self.search_param_ = param
        self.tuned_recall_ = float(recall)
        logger.info("Tuned %s search parameter to %d (recall@%d %.4f)", self.kind_, param, k, recall)

    def _set_search_param(self, value: int) -> None:
        if self.kind_ == "ivf":
            self.index_.nprobe = value
        else:
            faiss.downcast_index(self.index_.index).hnsw.efSearch = value

    def _check_fitted(self) -> None:
        if not hasattr(self, "kind_"):
            raise ValueError("This SearchIndex is not fitted yet; call `fit(vectors)` first.")


# -- exact search -------------------------------------------------------------------------------


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, excluded: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` largest inner products of each query with ``vectors``, best first.

    ``vectors`` is (n, D) and ``queries`` (m, D), both float32. Rows of ``vectors`` listed in
    ``excluded`` are never returned, and ``k`` must not exceed the rows left. Queries go through in
    blocks of ``EXACT_BLOCK_ELEMENTS // n`` so the score matrix stays bounded. Returns float32 scores
    and int64 indices, both (m, k). The order of tied scores is not specified.
    """
    block = max(1, EXACT_BLOCK_ELEMENTS // len(vectors))
    scores = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        stop = start + block
        block_scores = queries[start:stop] @ vectors.T
        if excluded is not None:
            block_scores[:, excluded] = -np.inf
        scores[start:stop], indices[start:stop] = _top_k_rows(block_scores, k)
    return scores, indices


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < scores.shape[1]:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    return (
        np.take_along_axis(candidate_scores, order, axis=1),
        np.take_along_axis(candidates, order, axis=1),
    )


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Return the fraction of ``truth``'s neighbours (m, k) that appear in the same row of ``found``."""
    hits = sum(len(np.intersect1d(row_found, row_truth)) for row_found, row_truth in zip(found, truth))
    return hits / truth.size


def _recall_with_lower_bound(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Return mean recall and the mean minus ``TUNING_CONFIDENCE_Z`` standard errors."""
    per_query = np.array([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)])
    standard_error = per_query.std(ddof=1) / math.sqrt(len(per_query)) if len(per_query) > 1 else 0.0
    return float(per_query.mean()), float(per_query.mean() - TUNING_CONFIDENCE_Z * standard_error)


# -- FAISS builders -----------------------------------------------------------------------------


def _trained_ivf(vectors: np.ndarray, random_state: int) -> faiss.Index:
    n, dim = vectors.shape
    n_lists = int(IVF_LISTS_PER_SQRT_N * math.sqrt(n))
    n_lists = max(1, min(n_lists, n // IVF_MIN_POINTS_PER_LIST))
    index = faiss.index_factory(dim, f"IVF{n_lists},Flat", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = random_state

    n_train = min(n, n_lists * IVF_TRAIN_POINTS_PER_LIST)
    rng = np.random.default_rng(random_state)
    sample = vectors[np.sort(rng.choice(n, n_train, replace=False))]
    logger.info("Training IVF with %d lists on %d vectors", n_lists, n_train)
    index.train(sample)
    return index


def _add_rows(index: faiss.Index, vectors: np.ndarray, rows: np.ndarray) -> None:
    """Add ``vectors[rows]`` with ids ``rows``, in chunks so the copy stays small."""
    for start in range(0, len(rows), ADD_CHUNK_ROWS):
        chunk = rows[start:start + ADD_CHUNK_ROWS].astype(np.int64)
        index.add_with_ids(vectors[chunk], chunk)


@contextlib.contextmanager
def _faiss_threads(n_threads: int | None) -> Iterator[None]:
    """Set FAISS's OpenMP thread count inside the block and restore the previous count after it."""
    if n_threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


# -- input checks -------------------------------------------------------------------------------


def _as_unit_matrix(array, name: str, dim: int | None, normalize: bool) -> np.ndarray:
    """Return ``array`` as a C-contiguous float32 (n, D) matrix of unit rows, or raise ValueError."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array (n, dim), got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}); pass at least one row.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"`{name}` has dimension {array.shape[1]} but the index was built with dimension {dim}."
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"`{name}` must contain real numbers, got dtype {array.dtype}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(f"`{name}` contains NaN or infinite values (first in row {row}).")
    return _check_unit_norm(array, name, normalize)


def _check_unit_norm(array: np.ndarray, name: str, normalize: bool) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1)
    if normalize:
        if (norms == 0).any():
            row = int(np.flatnonzero(norms == 0)[0])
            raise ValueError(f"`{name}` row {row} is all zeros and cannot be normalised.")
        return array / norms[:, None]
    bad = np.abs(norms - 1.0) > NORM_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"`{name}` must be L2-normalised, but row {row} has norm {norms[row]:.4g}. Divide each "
            f"row by its norm first, or build the index with `normalize=True`."
        )
    return array


def _check_k(k, n_vectors: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"`k` must be an integer, got {k!r}.")
    if not 1 <= k <= n_vectors:
        raise ValueError(f"`k` must be between 1 and the number of indexed vectors ({n_vectors}), got {k}.")


# -- files --------------------------------------------------------------------------------------


def _write_atomic(path: Path, write) -> None:
    """Call ``write(temporary_path)`` and move the result onto ``path`` with ``os.replace``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _save_npy(path: str, array: np.ndarray) -> None:
    # np.save appends ".npy" to a path without that suffix, so write through an open file instead.
    with open(path, "wb") as file:
        np.save(file, array, allow_pickle=False)


def _read_metadata(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path} not found, so the folder contains no saved index. Save one with `SearchIndex.save`.")
    metadata = json.loads(path.read_text())
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version!r}, but this srem_core reads version "
            f"{FORMAT_VERSION}. Rebuild the index with `SearchIndex.fit` and save it again."
        )
    if metadata.get("kind") not in KINDS[1:]:
        raise ValueError(f"{path} has an invalid kind {metadata.get('kind')!r}; rebuild and save the index.")
    return metadata


def _check_loaded_shape(folder: Path, estimator: SearchIndex, shape: tuple[int, int]) -> None:
    expected = (estimator.n_vectors_, estimator.n_features_in_)
    if tuple(shape) != expected:
        data_file = VECTORS_FILE if estimator.kind_ == "exact" else FAISS_FILE
        raise ValueError(
            f"{folder / data_file} contains {shape[0]} vectors of dimension {shape[1]}, but "
            f"{folder / METADATA_FILE} records {expected[0]} of dimension {expected[1]}. The files "
            f"come from different saves; rebuild the index and save it again."
        )
