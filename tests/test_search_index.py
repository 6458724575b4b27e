import json

import numpy as np
import pytest

from srem_core import search_index
from srem_core.search_index import SearchIndex

DIM = 32


def unit_rows(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mixture(rng, n, n_clusters=100, dim=DIM, spread=1.0):
    """Unit vectors drawn around random unit centres; noise norm is about ``spread``."""
    centers = unit_rows(np.random.default_rng(123), n_clusters, dim)
    labels = rng.integers(0, n_clusters, n)
    x = centers[labels] + spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def naive_top_k(vectors, query, k):
    """Score every vector in a Python loop and keep the k best (ties by lower index)."""
    scored = []
    for i, v in enumerate(vectors):
        scored.append((float(sum(float(a) * float(b) for a, b in zip(query, v))), i))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [s for s, _ in scored[:k]], [i for _, i in scored[:k]]


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    return unit_rows(rng, 300), unit_rows(rng, 7)


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(1)
    return mixture(rng, 10_000), mixture(rng, 300)


# -- exact search ---------------------------------------------------------------------------------


def test_exact_matches_naive_loop(small):
    vectors, queries = small
    index = SearchIndex(kind="exact").fit(vectors)
    scores, indices = index.search(queries, 5)

    assert scores.shape == (7, 5)
    assert indices.shape == (7, 5)
    assert scores.dtype == np.float32
    assert indices.dtype == np.int64
    for row, query in enumerate(queries):
        expected_scores, expected_indices = naive_top_k(vectors, query, 5)
        assert indices[row].tolist() == expected_indices
        np.testing.assert_allclose(scores[row], expected_scores, rtol=0, atol=1e-5)


def test_exact_scores_sorted_descending(small):
    vectors, queries = small
    scores, _ = SearchIndex(kind="exact").fit(vectors).search(queries, 50)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_exact_k_equals_n(small):
    vectors, queries = small
    scores, indices = SearchIndex(kind="exact").fit(vectors[:10]).search(queries, 10)
    assert sorted(indices[0].tolist()) == list(range(10))
    assert (np.diff(scores, axis=1) <= 0).all()


def test_exact_blocks_queries(small, monkeypatch):
    vectors, queries = small
    expected = SearchIndex(kind="exact").fit(vectors).search(queries, 4)
    # A block of 600 score entries contains two queries against 300 vectors, so 7 queries take 4 blocks.
    monkeypatch.setattr(search_index, "EXACT_BLOCK_ELEMENTS", 600)
    blocked = SearchIndex(kind="exact").fit(vectors).search(queries, 4)
    np.testing.assert_array_equal(blocked[1], expected[1])
    # BLAS may sum in another order for another block shape, so scores can differ in the last bit.
    np.testing.assert_allclose(blocked[0], expected[0], rtol=0, atol=1e-6)


def test_single_query_vector(small):
    vectors, queries = small
    index = SearchIndex(kind="exact").fit(vectors)
    scores, indices = index.search(queries[0], 3)
    assert scores.shape == (1, 3)
    np.testing.assert_array_equal(indices[0], index.search(queries[:1], 3)[1][0])


def test_normalize_true_rescales(small):
    vectors, queries = small
    index = SearchIndex(kind="exact", normalize=True).fit(vectors * 3.0)
    scores, indices = index.search(queries * 0.5, 5)
    expected_scores, expected_indices = SearchIndex(kind="exact").fit(vectors).search(queries, 5)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_float16_norms_accepted(small):
    vectors, queries = small
    index = SearchIndex(kind="exact").fit(vectors.astype(np.float16))
    assert index.search(queries.astype(np.float16), 1)[1].shape == (7, 1)


# -- auto kind ------------------------------------------------------------------------------------


def test_auto_picks_exact_below_threshold(small):
    vectors, _ = small
    index = SearchIndex().fit(vectors)
    assert index.kind_ == "exact"
    assert index.index_ is None
    assert 300 <= search_index.EXACT_MAX_VECTORS


def test_auto_picks_faiss_above_threshold(small):
    vectors, _ = small
    index = SearchIndex(exact_max_vectors=299).fit(vectors)
    assert index.kind_ == search_index.AUTO_FAISS_KIND
    assert index.vectors_ is None


def test_auto_threshold_is_inclusive(small):
    vectors, _ = small
    assert SearchIndex(exact_max_vectors=300).fit(vectors).kind_ == "exact"


# -- FAISS kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_recall_at_10(clustered, kind):
    vectors, queries = clustered
    _, truth = SearchIndex(kind="exact").fit(vectors).search(queries, 10)
    index = SearchIndex(kind=kind).fit(vectors)
    scores, found = index.search(queries, 10)

    assert index.kind_ == kind
    assert index.search_param_ is not None
    assert index.tuned_recall_ >= 0.95
    assert recall(found, truth) >= 0.95
    assert (np.diff(scores, axis=1) <= 0).all()


def test_faiss_tuning_on_given_queries(clustered):
    vectors, queries = clustered
    index = SearchIndex(kind="ivf", target_recall=0.99).fit(vectors, tuning_queries=queries)
    _, truth = SearchIndex(kind="exact").fit(vectors).search(queries, 10)
    # Recall on the tuning queries themselves is what the tuner measured, so it must meet the target.
    assert recall(index.search(queries, 10)[1], truth) >= 0.99
    assert index.tuned_recall_ >= 0.99


def test_faiss_threads_restored(small):
    faiss = pytest.importorskip("faiss")
    vectors, queries = small
    before = faiss.omp_get_max_threads()
    index = SearchIndex(kind="hnsw", n_threads=1).fit(vectors)
    index.search(queries, 3)
    assert faiss.omp_get_max_threads() == before


# -- save / load ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_save_load_round_trip(clustered, tmp_path, kind):
    vectors, queries = clustered
    index = SearchIndex(kind=kind, random_state=3).fit(vectors[:5000])
    index.save(tmp_path / "index")
    loaded = SearchIndex.load(tmp_path / "index")

    assert loaded.kind_ == kind
    assert loaded.get_params() == index.get_params()
    assert loaded.search_param_ == index.search_param_
    assert (loaded.n_vectors_, loaded.n_features_in_) == (5000, DIM)
    expected_scores, expected_indices = index.search(queries, 10)
    scores, indices = loaded.search(queries, 10)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(scores, expected_scores)


def test_save_leaves_no_temporary_files(small, tmp_path):
    vectors, _ = small
    SearchIndex(kind="exact").fit(vectors).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "vectors.npy"]


def test_load_missing_folder(tmp_path):
    path = tmp_path / "index.json"
    with pytest.raises(ValueError) as error:
        SearchIndex.load(tmp_path)
    assert str(error.value) == (
        f"{path} not found, so the folder contains no saved index. Save one with `SearchIndex.save`."
    )


def test_load_wrong_format_version(small, tmp_path):
    vectors, _ = small
    SearchIndex(kind="exact").fit(vectors).save(tmp_path)
    path = tmp_path / "index.json"
    metadata = json.loads(path.read_text())
    metadata["format_version"] = 99
    path.write_text(json.dumps(metadata))
    with pytest.raises(ValueError) as error:
        SearchIndex.load(tmp_path)
    assert str(error.value) == (
        f"{path} has format_version 99, but this srem_core reads version 1. Rebuild the index "
        f"with `SearchIndex.fit` and save it again."
    )


def test_load_dimension_mismatch(small, tmp_path):
    vectors, _ = small
    SearchIndex(kind="exact").fit(vectors).save(tmp_path)
    np.save(tmp_path / "vectors.npy", vectors[:, :16])
    with pytest.raises(ValueError) as error:
        SearchIndex.load(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'vectors.npy'} contains 300 vectors of dimension 16, but "
        f"{tmp_path / 'index.json'} records 300 of dimension 32. The files come from different "
        f"saves; rebuild the index and save it again."
    )


# -- bad input ------------------------------------------------------------------------------------


def bad_input_cases(vectors):
    not_unit = vectors.copy()
    not_unit[4] *= 2.0
    with_nan = vectors.copy()
    with_nan[2, 5] = np.nan
    return [
        (vectors[0], "`vectors` must be a 2-D array (n, dim), got shape (32,)."),
        (vectors[:0], "`vectors` is empty (shape (0, 32)); pass at least one row."),
        (with_nan, "`vectors` contains NaN or infinite values (first in row 2)."),
        (
            not_unit,
            "`vectors` must be L2-normalised, but row 4 has norm 2. Divide each row by its norm "
            "first, or build the index with `normalize=True`.",
        ),
        (np.array([["a"] * 32]), "`vectors` must contain real numbers, got dtype <U1."),
    ]


def test_fit_bad_vectors(small):
    vectors, _ = small
    for bad, message in bad_input_cases(vectors):
        with pytest.raises(ValueError) as error:
            SearchIndex(kind="exact").fit(bad)
        assert str(error.value) == message


def test_fit_zero_row_with_normalize(small):
    vectors, _ = small
    zero = vectors.copy()
    zero[3] = 0.0
    with pytest.raises(ValueError) as error:
        SearchIndex(normalize=True).fit(zero)
    assert str(error.value) == "`vectors` row 3 is all zeros and cannot be normalised."


def test_search_dimension_mismatch(small):
    vectors, queries = small
    index = SearchIndex(kind="exact").fit(vectors)
    with pytest.raises(ValueError) as error:
        index.search(queries[:, :16] / np.linalg.norm(queries[:, :16], axis=1, keepdims=True), 3)
    assert str(error.value) == "`queries` has dimension 16 but the index was built with dimension 32."


def test_search_queries_not_normalised(small):
    vectors, queries = small
    index = SearchIndex(kind="exact").fit(vectors)
    with pytest.raises(ValueError) as error:
        index.search(queries * 0.5, 3)
    assert str(error.value).startswith("`queries` must be L2-normalised, but row 0 has norm 0.5.")


@pytest.mark.parametrize(
    "k, message",
    [
        (0, "`k` must be between 1 and the number of indexed vectors (300), got 0."),
        (301, "`k` must be between 1 and the number of indexed vectors (300), got 301."),
        (2.0, "`k` must be an integer, got 2.0."),
        (True, "`k` must be an integer, got True."),
    ],
)
def test_search_bad_k(small, k, message):
    vectors, queries = small
    index = SearchIndex(kind="exact").fit(vectors)
    with pytest.raises(ValueError) as error:
        index.search(queries, k)
    assert str(error.value) == message


def test_search_before_fit(small):
    _, queries = small
    with pytest.raises(ValueError) as error:
        SearchIndex().search(queries, 3)
    assert str(error.value) == "This SearchIndex is not fitted yet; call `fit(vectors)` first."


@pytest.mark.parametrize(
    "params, message",
    [
        ({"kind": "flat"}, "`kind` must be one of ('auto', 'exact', 'ivf', 'hnsw'), got 'flat'."),
        ({"target_recall": 0.0}, "`target_recall` must be in (0, 1], got 0.0."),
        ({"n_threads": 0}, "`n_threads` must be None or at least 1, got 0."),
    ],
)
def test_fit_bad_params(small, params, message):
    vectors, _ = small
    with pytest.raises(ValueError) as error:
        SearchIndex(**params).fit(vectors)
    assert str(error.value) == message


def test_set_params_unknown_name():
    with pytest.raises(ValueError) as error:
        SearchIndex().set_params(nprobe=4)
    assert str(error.value).startswith("Invalid parameter `nprobe` for SearchIndex; valid: [")


def test_init_stores_params_only():
    index = SearchIndex(kind="hnsw", n_threads=2, random_state=7)
    assert index.get_params()["kind"] == "hnsw"
    assert not hasattr(index, "kind_")


def test_faiss_too_few_vectors(small):
    vectors, _ = small
    with pytest.raises(ValueError) as error:
        SearchIndex(kind="hnsw").fit(vectors[:99])
    assert str(error.value) == "kind='hnsw' needs at least 100 vectors, got 99. Use kind='exact' for so few."


def test_exact_top_k_skips_excluded_rows(small):
    vectors, queries = small
    _, full = search_index.exact_top_k(vectors, queries, 3)
    excluded = np.unique(full[:, 0])
    _, indices = search_index.exact_top_k(vectors, queries, 3, excluded=excluded)
    assert not np.isin(indices, excluded).any()
    for row, query in enumerate(queries):
        kept = np.setdiff1d(np.arange(len(vectors)), excluded)
        _, expected = naive_top_k(vectors[kept], query, 3)
        assert indices[row].tolist() == kept[expected].tolist()
