"""Image-caption datasets: manifests, research-format features, image files and injected noise.

``load_dataset`` is the entry point: it takes a manifest file, a research-format features folder or the
keyword ``"demo"`` and returns a ``PairDataset``.
"""

from __future__ import annotations

import os
from pathlib import Path

from srem_core.data import shard_specs, webdataset
from srem_core.data.images import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, ImageLoadError, load_image
from srem_core.data.manifest import MANIFEST_FORMATS, read_manifest
from srem_core.data.noise import (
    NOISE_LEVELS,
    NoiseInjection,
    inject_noise,
    load_noise_index,
    save_noise_index,
)
from srem_core.data.pairs import SPLITS, PairDataset, SkippedItem, build_dataset
from srem_core.data.research import (
    default_cache_dir,
    find_nonfinite_rows,
    open_feature_array,
    pooled_image_features,
    read_research_folder,
    read_research_split,
)

DEMO_KEYWORD = "demo"
"""``load_dataset`` argument that selects the demo bundled with the source repository."""

DEMO_MANIFEST = Path(__file__).resolve().parents[2] / "demo" / "pairs.csv"
"""Path of the bundled demo manifest in a source checkout; an installed wheel does not include it."""

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEMO_KEYWORD",
    "DEMO_MANIFEST",
    "ImageLoadError",
    "MANIFEST_FORMATS",
    "MAX_FILE_BYTES",
    "NOISE_LEVELS",
    "NoiseInjection",
    "PairDataset",
    "SPLITS",
    "SkippedItem",
    "build_dataset",
    "default_cache_dir",
    "find_nonfinite_rows",
    "inject_noise",
    "load_dataset",
    "load_image",
    "load_noise_index",
    "open_feature_array",
    "pooled_image_features",
    "read_manifest",
    "read_research_folder",
    "read_research_split",
    "save_noise_index",
]


def load_dataset(spec: str | os.PathLike, **options) -> PairDataset:
    """Load a dataset from a manifest file, a research-format folder, or the keyword ``"demo"``.

    ``"demo"`` means ``DEMO_MANIFEST`` and takes priority over a file or folder named ``demo`` in the
    working directory. A folder is read with ``read_research_folder``, a file with ``read_manifest``;
    ``options`` are passed on to that reader.

    Raises:
        FileNotFoundError: the path does not exist, or the demo is not present (installed package).
        ValueError: the reader rejects the input (see ``read_manifest`` and ``read_research_folder``).
    """
    if str(spec) == DEMO_KEYWORD:
        if not DEMO_MANIFEST.is_file():
            raise FileNotFoundError(
                f"The bundled demo is not available: {DEMO_MANIFEST} not found. The demo ships with "
                "the source repository, not with an installed package. Run from a clone of the "
                "repository, or pass the path of a manifest."
            )
        return read_manifest(DEMO_MANIFEST, **options)
    if shard_specs.is_webdataset_spec(spec):
        return webdataset.read_webdataset_index(spec, **options)
    path = Path(spec)
    if path.is_dir():
        return read_research_folder(path, **options)
    if path.is_file():
        return read_manifest(path, **options)
    raise FileNotFoundError(
        f"Dataset {path} not found. Pass a manifest ({', '.join(MANIFEST_FORMATS)}), a folder of "
        f"research-format features ({{split}}_ims.npy and {{split}}_caps.txt), or {DEMO_KEYWORD!r}."
    )
