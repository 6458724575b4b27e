"""Read and write run directories (format described in ``docs/run_format.md``)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.numpy import load_file as load_numpy_file
from safetensors.numpy import save_file as save_numpy_file
from safetensors.torch import load_file as load_torch_file
from safetensors.torch import save_file as save_torch_file

from srem_core import __version__, atomic
from srem_core.model import HeadEnsemble, ProjectionHeads

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the run directory layout; bumped on any change a reader must know about."""

REQUIRED_FILES = ("config.json", "model.safetensors", "scores.parquet", "images.parquet", "embeddings.safetensors")
DECISION_VALUES = ("confirmed_noisy", "cleared")


class RunFormatError(ValueError):
    """A run directory is missing, incomplete, from another format version or from another encoder."""


def _stringify_metadata(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}


def save_heads(path: Path, heads: HeadEnsemble, encoder_identity: str, towers: torch.nn.Module | None = None) -> None:
    """Save projection-head weights as safetensors, with the encoder and sizes in the metadata.

    With ``towers`` (a fine-tuned run), the towers' weights are saved too, under the ``towers.`` prefix.
    """
    metadata = _stringify_metadata(
        {
            "format_version": FORMAT_VERSION,
            "encoder_identity": encoder_identity,
            "image_dim": heads.image_dim,
            "text_dim": heads.text_dim,
            "embed_dim": heads.member_dim,
            "head": heads.head_kind,
            "n_networks": len(heads.members),
            "fine_tuned_towers": int(towers is not None),
        }
    )
    tensors = {name: value.detach().cpu().contiguous() for name, value in heads.state_dict().items()}
    if towers is not None:
        tensors.update({f"towers.{name}": value.detach().cpu().contiguous() for name, value in towers.state_dict().items()})
    atomic.write_with(path, lambda temporary: save_torch_file(tensors, str(temporary), metadata=metadata))


def load_heads(path: Path, *, encoder_identity: str | None = None, device: str = "cpu") -> HeadEnsemble:
    """Load projection heads saved by ``save_heads`` onto ``device`` (a CUDA-trained run loads on CPU).

    Raises ``RunFormatError`` when the file was written for another encoder than ``encoder_identity``.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = handle.metadata() or {}
    saved_identity = metadata.get("encoder_identity")
    if encoder_identity is not None and saved_identity != encoder_identity:
        raise RunFormatError(
            f"checkpoint {path} was trained on features of encoder {saved_identity!r}, not {encoder_identity!r}; "
            "use the encoder the run was trained with (see its config.json) or train a new run"
        )
    try:
        sizes = (int(metadata["image_dim"]), int(metadata["text_dim"]), int(metadata["embed_dim"]))
        members = [ProjectionHeads(*sizes, metadata.get("head", "linear")) for _ in range(int(metadata.get("n_networks", 1)))]
        heads = HeadEnsemble(members)
    except KeyError as error:
        raise RunFormatError(f"checkpoint {path} lacks metadata field {error}; it was not written by srem") from None
    weights = load_torch_file(str(path), device="cpu")
    heads.load_state_dict({name: value for name, value in weights.items() if not name.startswith("towers.")})
    return heads.to(device).eval()


def load_fine_tuned_towers(path: Path, encoder) -> bool:
    """Load fine-tuned tower weights saved with the heads into ``encoder``; return False when there are none."""
    weights = load_torch_file(str(path), device="cpu")
    towers = {name[7:]: value for name, value in weights.items() if name.startswith("towers.")}
    if not towers:
        return False
    encoder.towers().load_state_dict(towers)
    return True


def save_embeddings(path: Path, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> None:
    tensors = {
        "image_embeddings": np.ascontiguousarray(image_embeddings, dtype=np.float16),
        "text_embeddings": np.ascontiguousarray(text_embeddings, dtype=np.float16),
    }
    atomic.write_with(path, lambda temporary: save_numpy_file(tensors, str(temporary)))


def write_config(run_dir: Path, *, config: dict, data: dict, encoder: dict, device: str, status: str) -> None:
    atomic.write_json(
        run_dir / "config.json",
        {
            "format_version": FORMAT_VERSION,
            "srem_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device,
            "status": status,
            "config": config,
            "data": data,
            "encoder": encoder,
        },
    )


class RetrievalModel:
    """A run's encoder plus its trained heads: maps raw captions and images into the joint space."""

    def __init__(self, encoder, heads: HeadEnsemble, device: str = "cpu") -> None:
        self.encoder, self.heads, self.device = encoder, heads, torch.device(device)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised text embeddings (n, D) float32."""
        features = self.encoder.encode_texts(list(texts)).to(self.device, torch.float32)
        return self.heads.embed_texts(features).cpu().numpy()

    @torch.no_grad()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return L2-normalised image embeddings (n, D) float32 for RGB PIL images."""
        features = self.encoder.encode_images(list(images)).to(self.device, torch.float32)
        return self.heads.embed_images(features).cpu().numpy()


@dataclasses.dataclass
class Run:
    """A loaded run directory. Tables load eagerly; the model loads on ``load_model``."""

    path: Path
    meta: dict
    scores: pd.DataFrame
    images: pd.DataFrame
    history: pd.DataFrame
    metrics: list[dict]
    image_embeddings: np.ndarray
    text_embeddings: np.ndarray

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def format_version(self) -> int:
        return int(self.meta["format_version"])

    @property
    def data_root(self) -> Path:
        root = Path(self.meta["data"]["root"])
        return root if root.is_absolute() else (self.path / root).resolve()

    def image_file(self, image_index: int) -> Path | None:
        """Return the absolute path of one image, or None when the run has no image files."""
        value = self.images["image_path"].iat[image_index]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        path = Path(value)
        return path if path.is_absolute() else self.data_root / path

    def load_model(self, device: str = "cpu") -> RetrievalModel:
        from srem_core.encoders import create_encoder

        encoder_meta = self.meta["encoder"]
        encoder = create_encoder(encoder_meta["name"], pretrained=encoder_meta.get("pretrained"), device=device)
        heads = load_heads(self.path / "model.safetensors", encoder_identity=encoder.identity, device=device)
        load_fine_tuned_towers(self.path / "model.safetensors", encoder)
        return RetrievalModel(encoder, heads, device)

    def decisions(self) -> dict[str, str]:
        """Return the pair decisions a person saved in the app: pair_id -> confirmed_noisy or cleared."""
        path = self.path / "decisions.json"
        if not path.exists():
            return {}
        stored = json.loads(path.read_text())
        return dict(stored.get("decisions", {}))

    def save_decisions(self, decisions: dict[str, str]) -> None:
        """Replace the saved decisions atomically; values must be confirmed_noisy or cleared."""
        invalid = {key: value for key, value in decisions.items() if value not in DECISION_VALUES}
        if invalid:
            raise ValueError(f"decisions must be one of {DECISION_VALUES}; invalid entries: {dict(list(invalid.items())[:5])}")
        atomic.write_json(self.path / "decisions.json", {"format_version": FORMAT_VERSION, "decisions": decisions})


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_run(path: str | Path) -> Run:
    """Load a run directory; raise ``RunFormatError`` with the fix when it is missing or incomplete."""
    path = Path(path)
    if not path.is_dir():
        raise RunFormatError(f"run directory {path} not found; pass the --out folder of `srem train`")
    missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
    if missing:
        raise RunFormatError(
            f"run directory {path} is incomplete (missing {', '.join(missing)}); "
            "training may still be running or was killed: finish it with `srem train --resume --out "
            f"{path}`"
        )
    meta = json.loads((path / "config.json").read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise RunFormatError(
            f"run directory {path} has format version {version}, this srem reads version {FORMAT_VERSION}; "
            "retrain it with this version of srem"
        )
    embeddings = load_numpy_file(str(path / "embeddings.safetensors"))
    history_path = path / "history.parquet"
    return Run(
        path=path,
        meta=meta,
        scores=pd.read_parquet(path / "scores.parquet"),
        images=pd.read_parquet(path / "images.parquet"),
        history=pd.read_parquet(history_path) if history_path.exists() else pd.DataFrame(),
        metrics=read_metrics(path / "metrics.jsonl"),
        image_embeddings=embeddings["image_embeddings"].astype(np.float32),
        text_embeddings=embeddings["text_embeddings"].astype(np.float32),
    )
