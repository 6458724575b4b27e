"""The app's search index is tuned on queries of the other modality, the way the Search page queries it."""

from __future__ import annotations

import numpy as np

from app_support import loading
from srem_core.runs import load_run
from srem_core.search_index import SearchIndex


def test_index_tuned_on_other_modality(synthetic_run, monkeypatch):
    run = load_run(synthetic_run)
    recorded = {}
    original_fit = SearchIndex.fit

    def spy_fit(self, vectors, tuning_queries=None):
        recorded[len(recorded)] = (np.asarray(vectors), tuning_queries)
        return original_fit(self, vectors, tuning_queries)

    monkeypatch.setattr(SearchIndex, "fit", spy_fit)
    loading.search_index.clear()
    loading.search_index(run, "image")
    loading.search_index(run, "caption")

    (image_vectors, caption_queries), (caption_vectors, image_queries) = recorded[0], recorded[1]
    assert np.array_equal(image_vectors, run.image_embeddings)
    assert np.array_equal(caption_vectors, run.text_embeddings)
    # Every tuning query is one of the other modality's embeddings.
    text_rows = {row.tobytes() for row in np.asarray(run.text_embeddings, dtype=np.float32)}
    image_rows = {row.tobytes() for row in np.asarray(run.image_embeddings, dtype=np.float32)}
    assert len(caption_queries) == min(500, len(run.text_embeddings))
    assert all(row.tobytes() in text_rows for row in caption_queries)
    assert all(row.tobytes() in image_rows for row in image_queries)
