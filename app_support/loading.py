"""Run discovery and the app's cached loaders.

Models, runs and search indexes are shared objects (``st.cache_resource``); tables, coordinates and
thumbnails are copied values (``st.cache_data``). A run is cached under its resolved path plus the
modification times of its files, so a retrained run reloads and an unchanged one does not.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app_support import analysis
from srem_core import atomic
from srem_core.runs import REQUIRED_FILES, Run, load_run

logger = logging.getLogger(__name__)

APP_ROOT = Path(__file__).resolve().parent.parent
"""The folder of ``app.py``; the bundled demo run and ``runs/`` are looked up relative to it."""

DEMO_RUN = APP_ROOT / "demo" / "run"
RUNS_FOLDER = "runs"
RUN_SEARCH_DEPTH = 2
"""Folder levels below ``runs/`` searched for run directories (``runs/<name>`` and ``runs/<group>/<name>``)."""

SIGNATURE_FILES = (*REQUIRED_FILES, "history.parquet", "metrics.jsonl")
THUMBNAIL_PIXELS = 96
"""Longer side of table thumbnails: sharp at the table's row height, 1 to 4 KB each as WebP for the demo images."""

GRID_PIXELS = 224
"""Side of the square thumbnails in result grids: the demo images' own size, so they are not enlarged."""

MAP_FILE = "embedding_map.npy"
"""Cached UMAP coordinates inside the run's ``index/`` folder: image rows first, then caption rows."""


# -- finding and opening runs -------------------------------------------------------------------


def cli_run_path(argv: Sequence[str]) -> str | None:
    """Return the ``--run PATH`` given after ``--`` to ``streamlit run app.py``, or None."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run")
    known, _ = parser.parse_known_args(list(argv))
    return known.run


def discover_runs(folders: Sequence[Path]) -> list[Path]:
    """Return the run directories (folders with a config.json) in and below ``folders``, sorted.

    A run directory's own subfolders are not searched, so image folders inside runs are never listed.
    """
    found = set()
    for folder in folders:
        level = [folder] if folder.is_dir() else []
        for depth in range(RUN_SEARCH_DEPTH + 1):
            runs = [candidate for candidate in level if (candidate / "config.json").is_file()]
            found.update(candidate.resolve() for candidate in runs)
            if depth == RUN_SEARCH_DEPTH:
                break
            level = [child for parent in level if parent not in runs for child in _subfolders(parent)]
    return sorted(found)


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(entry.path) for entry in entries if entry.is_dir() and not entry.name.startswith(".")]
    except OSError:
        return []


def default_run_folders() -> list[Path]:
    folders = [APP_ROOT / RUNS_FOLDER, Path.cwd() / RUNS_FOLDER]
    return list(dict.fromkeys(folder.resolve() for folder in folders))


def display_path(path: Path) -> str:
    """Return ``path`` relative to the app folder when it is inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(APP_ROOT))
    except ValueError:
        return str(path.resolve())


def run_signature(path: Path) -> tuple:
    """Return (file name, size, modification time) of the run's files; absent files are skipped."""
    signature = []
    for name in SIGNATURE_FILES:
        try:
            stat = (path / name).stat()
        except OSError:
            continue
        signature.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def run_cache_key(run: Run) -> str:
    """Cache key of a loaded run: its path and file signature (used as a ``hash_funcs`` entry)."""
    return f"{run.path.resolve()}|{run_signature(run.path)}"


HASH_FUNCS = {Run: run_cache_key}


@st.cache_resource(max_entries=4, show_spinner="Loading the run…")
def _load_run(resolved_path: str, signature: tuple) -> Run:
    run = load_run(resolved_path)
    logger.info("loaded run %s (%d pairs)", resolved_path, len(run.scores))
    return run


def open_run(path: str | os.PathLike) -> Run:
    """Load a run directory through the cache; raises ``RunFormatError`` like ``load_run``."""
    resolved = Path(path).expanduser().resolve()
    return _load_run(str(resolved), run_signature(resolved))


# -- decisions ----------------------------------------------------------------------------------


def decisions_stamp(run: Run) -> tuple[int, int, int]:
    """Return (inode, size, modification time) of decisions.json, or zeros when there is none.

    Every atomic save replaces the file, so the inode changes even when two saves share a timestamp.
    """
    try:
        stat = (run.path / "decisions.json").stat()
    except OSError:
        return (0, 0, 0)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=8)
def _cached_decisions(run: Run, stamp: tuple) -> dict[str, str]:
    return run.decisions()


def decisions(run: Run) -> dict[str, str]:
    """Return the run's saved decisions, re-read only when decisions.json changes."""
    return _cached_decisions(run, decisions_stamp(run))


_DECISIONS_LOCK = threading.Lock()
"""Serialises the read-modify-write of decisions.json between the sessions of one server."""


def save_decision(run: Run, pair_ids: Sequence[str], decision: str | None) -> None:
    """Set (or with None, remove) the decision of ``pair_ids`` and save all decisions atomically."""
    # NOTE: two server processes on the same run can still overwrite each other's latest decision.
    with _DECISIONS_LOCK:
        updated = dict(run.decisions())
        for pair_id in pair_ids:
            if decision is None:
                updated.pop(pair_id, None)
            else:
                updated[pair_id] = decision
        run.save_decisions(updated)


# -- derived tables -----------------------------------------------------------------------------


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=4)
def percentiles(run: Run) -> pd.DataFrame:
    return analysis.noisiness_percentiles(run.scores)


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=4)
def image_noise(run: Run) -> pd.DataFrame:
    return analysis.image_noise_table(run.scores)


@st.cache_resource(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=4)
def history(run: Run) -> pd.DataFrame:
    """Return the run's history with a ``pair_id`` column (shared, so callers must not modify it)."""
    return analysis.with_pair_ids(run.history, run.scores)


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=4)
def flips_per_epoch(run: Run) -> pd.DataFrame:
    return analysis.flips_per_epoch(history(run), run.scores)


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=32)
def flag_flips(run: Run, epoch: int) -> pd.DataFrame:
    flips = analysis.flag_flips(history(run), epoch)
    extra = ["pair_id", "caption", "is_noisy", *(["is_injected_noise"] if "is_injected_noise" in run.scores else [])]
    return flips.merge(run.scores[extra], on="pair_id", how="left")


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=16)
def filtered_positions(run: Run, spec: analysis.PairFilter, decisions_stamp: tuple) -> np.ndarray:
    return analysis.filter_pairs(run.scores, decisions(run), spec)


# -- images -------------------------------------------------------------------------------------


def image_path(run: Run, image_index: int) -> str | None:
    """Return the absolute path of one image of the run as a string, or None when it has no file."""
    path = run.image_file(int(image_index))
    return None if path is None else str(path)


def _thumbnail_webp(path: str, pixels: int, square: bool) -> bytes | None:
    """Return a WebP thumbnail of at most ``pixels`` a side, padded with white to a square if asked."""
    from PIL import Image

    from srem_core.data.images import ImageLoadError, load_image

    try:
        image = load_image(path)
    except ImageLoadError as error:
        logger.warning("no thumbnail for %s: %s", path, error.reason)
        return None
    image.thumbnail((pixels, pixels))
    if square:
        canvas = Image.new("RGB", (pixels, pixels), (255, 255, 255))
        canvas.paste(image, ((pixels - image.width) // 2, (pixels - image.height) // 2))
        image = canvas
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


@st.cache_data(show_spinner=False, max_entries=20_000)
def thumbnail_uri(path: str | None, pixels: int = THUMBNAIL_PIXELS) -> str | None:
    """Return a small WebP thumbnail of an image file as a data URI, or None when it cannot be read."""
    data = None if path is None else _thumbnail_webp(path, pixels, square=False)
    if data is None:
        return None
    return "data:image/webp;base64," + base64.b64encode(data).decode("ascii")


@st.cache_data(show_spinner=False, max_entries=2_000)
def square_thumbnail(path: str | None, pixels: int = GRID_PIXELS) -> bytes | None:
    """Return a square WebP thumbnail (image centred on white) for result grids, or None."""
    return None if path is None else _thumbnail_webp(path, pixels, square=True)


# -- model, search indexes, map -----------------------------------------------------------------


QUERY_TORCH_THREADS = 1
"""Torch intra-op threads in the app process, which runs torch only to encode one query at a time.
That is too little work to split: on a busy 2-core machine two threads took several times longer
than one, waiting for each other (bench/bench_app.py records both)."""


@st.cache_resource(hash_funcs=HASH_FUNCS, show_spinner="Loading the encoder and the run's projection heads…", max_entries=2)
def model(run: Run):
    """Return the run's ``RetrievalModel`` on CPU (the app never needs a GPU)."""
    import torch

    torch.set_num_threads(QUERY_TORCH_THREADS)
    return run.load_model(device="cpu")


@st.cache_resource(hash_funcs=HASH_FUNCS, show_spinner="Building the search index…", max_entries=4)
def search_index(run: Run, modality: str):
    """Return a fitted ``SearchIndex`` over the run's image or caption embeddings.

    A FAISS index saved in the run's ``index/<modality>`` folder is reused when it is newer than the
    embeddings. A newly built FAISS index is saved there when the folder is writable. Exact indexes
    (up to ``srem_core.search_index.EXACT_MAX_VECTORS`` vectors) are rebuilt in memory, which takes no
    longer than reading them.
    """
    from srem_core.search_index import TUNING_QUERIES, SearchIndex

    if modality not in ("image", "caption"):
        raise ValueError(f"modality must be 'image' or 'caption'; got {modality!r}")
    vectors = run.image_embeddings if modality == "image" else run.text_embeddings
    folder = run.path / "index" / modality
    if _is_fresh(folder / "index.json", run):
        try:
            loaded = SearchIndex.load(folder)
            if loaded.n_vectors_ == len(vectors):
                return loaded
        except (OSError, ValueError) as error:
            logger.warning("ignoring saved index %s: %s", folder, error)
    # The app queries images with caption embeddings and captions with image embeddings, so FAISS
    # tunes its recall on a sample of the other modality. On the demo run, tuning on the indexed
    # modality itself gave caption-query recall@10 of 0.93 instead of 0.97 (bench_search.py --real).
    others = run.text_embeddings if modality == "image" else run.image_embeddings
    sample = np.random.default_rng(0).choice(len(others), min(TUNING_QUERIES, len(others)), replace=False)
    index = SearchIndex(random_state=0).fit(vectors, tuning_queries=np.asarray(others[np.sort(sample)], dtype=np.float32))
    if index.kind_ != "exact":
        try:
            index.save(folder)
        except OSError as error:
            logger.warning("could not save the search index to %s: %s", folder, error)
    return index


def search_one(run: Run, modality: str, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search one query (D,) or (1, D) and return ``(similarities, rows)`` of its hits, best first.

    FAISS indexes mark slots they could not fill with row -1; those are dropped, so fewer than ``k``
    hits can come back.
    """
    similarities, rows = search_index(run, modality).search(np.asarray(query).reshape(1, -1), k)
    found = rows[0] >= 0
    return similarities[0][found], rows[0][found]


@dataclasses.dataclass(frozen=True)
class CaptionMatches:
    """Captions of the whole run that best match the images of some pairs."""

    rows: np.ndarray
    """Rows of scores.parquet, (n_pairs, k), best first; -1 where a FAISS index found fewer than k."""
    similarities: np.ndarray
    """Cosine similarity of each pair's image with each caption in ``rows``, (n_pairs, k)."""
    own_similarity: np.ndarray
    """Cosine similarity of each pair's image with the pair's own caption, (n_pairs,)."""


def caption_matches(run: Run, positions: np.ndarray, k: int) -> CaptionMatches:
    """Return the ``k`` best captions of the run for the images of the pairs at ``positions``."""
    image_indices = run.scores["image_index"].to_numpy()[positions]
    image_vectors = run.image_embeddings[image_indices]
    similarities, rows = search_index(run, "caption").search(image_vectors, k)
    own = np.einsum("ij,ij->i", run.text_embeddings[positions], image_vectors)
    return CaptionMatches(rows=rows, similarities=similarities, own_similarity=own)


def _is_fresh(path: Path, run: Run) -> bool:
    try:
        return path.stat().st_mtime_ns >= (run.path / "embeddings.safetensors").stat().st_mtime_ns
    except OSError:
        return False


@st.cache_data(hash_funcs=HASH_FUNCS, show_spinner=False, max_entries=2)
def map_coordinates(run: Run) -> np.ndarray:
    """Return UMAP coordinates (n_images + n_pairs, 2): image rows first, then caption rows.

    Coordinates saved in ``index/embedding_map.npy`` are reused when newer than the embeddings;
    new ones are saved there when the folder is writable.
    """
    from srem_core.projection import EmbeddingProjector

    n_rows = len(run.image_embeddings) + len(run.text_embeddings)
    saved = run.path / "index" / MAP_FILE
    if _is_fresh(saved, run):
        try:
            coordinates = np.load(saved, allow_pickle=False)
            if coordinates.shape == (n_rows, 2):
                return coordinates
        except (OSError, ValueError) as error:
            logger.warning("ignoring saved map %s: %s", saved, error)
    vectors = np.vstack([run.image_embeddings, run.text_embeddings])
    coordinates = EmbeddingProjector(random_state=0).fit_transform(vectors)
    try:
        atomic.write_npy(saved, coordinates)
    except OSError as error:
        logger.warning("could not save the embedding map to %s: %s", saved, error)
    return coordinates
