"""Search: captions to images and images to captions in the run's joint embedding space."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app_support import loading, widgets
from srem_core.data.images import ImageLoadError, load_image
from srem_core.runs import Run, RunFormatError

# Largest accepted upload; the same limit as server.maxUploadSize in .streamlit/config.toml.
MAX_UPLOAD_MEGABYTES = 20

# Largest decoded upload (width x height): a 40-megapixel photo passes, a decompression bomb does not.
UPLOAD_MAX_PIXELS = 40_000_000

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp"]
# Longer side of the query image shown above the results, in pixels.
PREVIEW_PIXELS = 224
DEFAULT_RESULTS = 10


def load_model(run: Run):
    """Return the run's model, or None after showing why it cannot be loaded."""
    try:
        return loading.model(run)
    except (RunFormatError, ImportError, OSError, RuntimeError, KeyError, ValueError) as error:
        st.error(
            f"The run's encoder could not be loaded, so queries cannot be embedded ({type(error).__name__}: {error}). "
            "Check that the encoder named in config.json is installed; search from a dataset image still works.",
            icon=":material/error:",
        )
        return None


def image_results(run: Run, similarities: np.ndarray, rows: np.ndarray) -> None:
    noise = loading.image_noise(run)
    first_caption = run.scores.drop_duplicates("image_index").set_index("image_index")["caption"]
    items = []
    for rank, (similarity, index) in enumerate(zip(similarities, rows), start=1):
        lines = [first_caption.get(index, "")[:80]]
        if index in noise.index:
            lines.append(widgets.image_noise_line(noise.loc[index]))
        items.append({"path": loading.image_path(run, index), "title": f"{rank}. similarity {similarity:.3f}", "lines": lines})
    widgets.image_grid(items)


def caption_results(run: Run, similarities: np.ndarray, rows: np.ndarray) -> None:
    found = run.scores.iloc[rows]
    table = pd.DataFrame({
        "image": [loading.thumbnail_uri(loading.image_path(run, index)) for index in found["image_index"]],
        "caption": found["caption"].to_numpy(),
        "similarity": similarities,
        "clean prob": found["clean_prob"].to_numpy(),
        "flagged": found["is_noisy"].to_numpy(),
        "pair id": found["pair_id"].to_numpy(),
    })
    st.dataframe(table, hide_index=True, row_height=60, key="caption_hits", column_config={
        "image": st.column_config.ImageColumn("paired image", width="small"),
        "caption": st.column_config.TextColumn(width="large"),
        "similarity": st.column_config.NumberColumn(format="%.3f"),
        "clean prob": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
    })


def uploaded_image(upload):
    """Decode an uploaded file with the library's checks; return an RGB image or None after an error message."""
    if upload.size > MAX_UPLOAD_MEGABYTES * 1024 * 1024:
        st.error(f"`{upload.name}` has {upload.size / 2**20:.1f} MB; uploads are limited to {MAX_UPLOAD_MEGABYTES} MB.")
        return None
    suffix = Path(upload.name).suffix.lower()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"upload{suffix}"
        path.write_bytes(upload.getvalue())
        try:
            return load_image(path, max_pixels=UPLOAD_MAX_PIXELS)
        except ImageLoadError as error:
            st.error(f"`{upload.name}` cannot be used: {error.reason}", icon=":material/broken_image:")
            return None


def text_to_image(run: Run) -> None:
    query = st.text_input("Describe the image you are looking for", key="text_query", placeholder="a red car")
    k = st.slider("Results", 1, min(50, len(run.image_embeddings)), min(DEFAULT_RESULTS, len(run.image_embeddings)), key="text_k")
    if not query.strip():
        st.caption("Type a description and press Enter. Captions of the run make good test queries.")
        return
    model = load_model(run)
    if model is None:
        return
    started = time.perf_counter()
    vector = model.embed_texts([query.strip()])
    encoded = time.perf_counter()
    similarities, rows = loading.search_one(run, "image", vector, k)
    finished = time.perf_counter()
    st.caption(
        f"{len(rows)} images in {1000 * (finished - started):.0f} ms: query encoding {1000 * (encoded - started):.0f} ms, "
        f"search over {len(run.image_embeddings):,} images {1000 * (finished - encoded):.0f} ms."
    )
    image_results(run, similarities, rows)


def image_to_text(run: Run) -> None:
    source = st.radio("Image from", ["dataset", "upload"], horizontal=True, key="image_source",
                      format_func={"dataset": "the dataset", "upload": "an upload (PNG, JPEG or WebP)"}.get)
    k = st.slider("Results", 1, min(50, len(run.text_embeddings)), min(DEFAULT_RESULTS, len(run.text_embeddings)), key="image_k")
    if source == "dataset":
        index = st.number_input("Image row (0-based row of images.parquet)", 0, len(run.images) - 1, 0, key="image_row")
        path = loading.image_path(run, index)
        if path:
            st.image(path, width=PREVIEW_PIXELS, caption=f"image {run.images['image_id'].iat[index]}")
        started = time.perf_counter()
        vector, encoding = run.image_embeddings[index][None, :], "stored embedding"
    else:
        upload = st.file_uploader("Upload an image", type=UPLOAD_TYPES, key="image_upload", max_upload_size=MAX_UPLOAD_MEGABYTES)
        if upload is None:
            return
        image = uploaded_image(upload)
        model = load_model(run) if image is not None else None
        if model is None:
            return
        preview = image.copy()
        preview.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
        st.image(preview, caption=upload.name)
        started = time.perf_counter()
        vector = model.embed_images([image])
        encoding = f"image encoding {1000 * (time.perf_counter() - started):.0f} ms"
    searched = time.perf_counter()
    similarities, rows = loading.search_one(run, "caption", vector, k)
    finished = time.perf_counter()
    st.caption(
        f"{len(rows)} captions in {1000 * (finished - started):.0f} ms ({encoding}, search over "
        f"{len(run.text_embeddings):,} captions {1000 * (finished - searched):.0f} ms)."
    )
    caption_results(run, similarities, rows)


run = widgets.current_run()
st.title("Search")
st.caption("Search the run's images with a caption, or its captions with an image. Each hit shows its noise scores.")
text_tab, image_tab = st.tabs(["Text → image", "Image → text"])
with text_tab:
    text_to_image(run)
with image_tab:
    image_to_text(run)
