"""The training loop shared by SREM and the baselines: epochs, selection, validation, checkpoints, resume.

Determinism: the heads are initialised from ``torch.manual_seed(seed)``, each epoch's batch order comes
from ``numpy.random.default_rng([seed, epoch])`` and every mixture fit has a fixed random state. A
checkpoint is written after every epoch, so a run killed mid-epoch resumes by replaying that epoch and
ends with the same weights and scores as an uninterrupted run (on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file as load_torch_file
from safetensors.torch import save_file as save_torch_file
from tqdm.auto import tqdm

from srem_core import atomic, losses
from srem_core.config import RunConfig
from srem_core.distributed import DistributedContext, average_gradients, gather_with_grad
from srem_core.evaluation import detection_metrics, recall_at_k
from srem_core.model import HeadEnsemble, ProjectionHeads
from srem_core.objective import Objective, PairStatistics, Selection, create_objective
from srem_core.runs import read_metrics, save_heads
from srem_core.scoring import embed_inputs, score_pairs
from srem_core.selection import LossMixtureSplitter

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
TOWER_LR_SCALE = 0.1
"""Learning rate of fine-tuned towers relative to the heads: pretrained weights need smaller steps."""
REFRESH_BATCH = 64
"""Images or captions re-encoded at once when fine-tuned towers refresh the cached features."""


@dataclasses.dataclass
class TrainingData:
    """Encoder features and pair structure, after bad items were dropped and noise was injected."""

    image_inputs: torch.Tensor
    """Frozen image features (n_images, image_dim), float32."""
    text_inputs: torch.Tensor
    """Frozen text features (n_pairs, text_dim), float32."""
    caption_to_image: np.ndarray
    """Image row of each caption as trained on (after noise injection), int64 (n_pairs,)."""
    split: np.ndarray
    """Split name of each pair (n_pairs,)."""
    is_injected_noise: np.ndarray | None = None
    """Ground truth of injected noise per pair, or None when nothing was injected."""
    captions: np.ndarray | None = None
    """Caption text of each pair; needed only to fine-tune the towers (``unfreeze``)."""
    load_pixels: Callable[[np.ndarray], torch.Tensor] | None = None
    """Return preprocessed pixels (N, C, H, W) for image rows; needed only for ``unfreeze``."""

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


@dataclasses.dataclass
class TrainingOutcome:
    model: HeadEnsemble
    best_epoch: int
    best_val_rsum: float


def resolve_device(name: str) -> torch.device:
    """Resolve ``auto`` to cuda, then mps, then cpu; reject a device that is not available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but is not available; use --device cpu or auto")
    return torch.device(name)


def build_model(config: RunConfig, data: TrainingData, n_networks: int) -> HeadEnsemble:
    torch.manual_seed(config.train.seed)
    members = []
    train_rows = data.indices("train")
    train_images = data.image_inputs[np.unique(data.caption_to_image[train_rows])]
    for _ in range(n_networks):
        heads = ProjectionHeads(data.image_inputs.shape[1], data.text_inputs.shape[1], config.train.embed_dim, config.train.head)
        heads.fit_standardisation(train_images, data.text_inputs[train_rows])
        members.append(heads)
    return HeadEnsemble(members)


class Trainer:
    """Runs the epochs of one run, writing history, metrics and checkpoints into ``run_dir``."""

    def __init__(
        self, config: RunConfig, data: TrainingData, run_dir: Path, *, encoder_identity: str, progress: bool = True,
        context: DistributedContext | None = None, device: torch.device | None = None, encoder=None,
    ) -> None:
        self.config, self.data, self.run_dir = config, data, Path(run_dir)
        self.context = context or DistributedContext()
        self.progress = progress and self.context.is_main
        self.encoder_identity = encoder_identity
        self.device = device or resolve_device(config.train.device)
        self.objective: Objective = create_objective(config.objective, config.train)
        self.model = build_model(config, data, self.objective.n_networks).to(self.device)
        self.encoder = encoder if config.train.unfreeze else None
        groups = [{"params": list(self.model.parameters())}]
        if config.train.unfreeze:
            if encoder is None or data.captions is None or data.load_pixels is None:
                raise ValueError("unfreeze needs the encoder, the captions and an image loader; use srem_core.pipeline.train_run")
            self.towers = encoder.towers()
            groups.append({"params": list(self.towers.parameters()), "lr": config.train.learning_rate * TOWER_LR_SCALE})
        self.optimizer = torch.optim.AdamW(groups, lr=config.train.learning_rate, weight_decay=config.train.weight_decay)
        self.train_rows = data.indices("train")
        if len(self.train_rows) < 2:
            raise ValueError(f"training needs at least 2 training pairs; found {len(self.train_rows)}")
        self.start_epoch, self.best_val_rsum, self.best_epoch = 0, float("-inf"), -1
        self.history: list[pd.DataFrame] = []

    # ----- one epoch -----
    def _autocast(self):
        # NOTE: the CUDA path (bfloat16 autocast, NCCL under torchrun) has not been run on a GPU yet.
        if self.device.type == "cuda" and self.config.train.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _similarities(self, rows: np.ndarray) -> list[torch.Tensor]:
        """Return each network's (B, B) similarity over the global batch ``rows``.

        Under torchrun each rank embeds only its slice and the features are gathered with gradients.
        """
        local = self.context.local_slice(rows) if self.context.enabled else rows
        if self.encoder is not None:
            images = self.encoder.image_features_with_grad(self.data.load_pixels(self.data.caption_to_image[local]))
            texts = self.encoder.text_features_with_grad(list(self.data.captions[local]))
        else:
            images = self.data.image_inputs[self.data.caption_to_image[local]].to(self.device)
            texts = self.data.text_inputs[local].to(self.device)
        similarities = []
        for member in self.model.members:
            image_features, text_features = member(images, texts)
            if self.context.enabled:
                sizes = self.context.slice_sizes(len(rows))
                image_features = gather_with_grad(image_features, sizes)
                text_features = gather_with_grad(text_features, sizes)
            similarities.append((image_features @ text_features.T).float())
        return similarities

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        order = self.train_rows[np.random.default_rng([self.config.train.seed, epoch]).permutation(len(self.train_rows))]
        batch_size = self.config.train.batch_size
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches[-2] = np.concatenate([batches[-2], batches.pop()])
        position = np.empty(len(self.data.split), dtype=np.int64)
        position[self.train_rows] = np.arange(len(self.train_rows))
        forward_stats = PairStatistics(*(np.zeros(len(self.train_rows), np.float32) for _ in range(3)))
        totals: dict[str, float] = {}
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.config.train.epochs}", disable=not self.progress, leave=False)
        for rows in bar:
            with self._autocast():
                similarities = self._similarities(rows)
                loss, terms = self.objective.batch_loss(similarities, torch.as_tensor(position[rows]), epoch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.context.enabled:
                average_gradients(p for group in self.optimizer.param_groups for p in group["params"])
            self.optimizer.step()
            self._record_forward(forward_stats, position[rows], similarities[0].detach())
            for key, value in {"loss": float(loss.detach()), **terms}.items():
                totals[key] = totals.get(key, 0.0) + value * len(rows)
        self._forward_stats = forward_stats
        return {key: value / len(order) for key, value in totals.items()}

    def _record_forward(self, stats: PairStatistics, positions: np.ndarray, similarity: torch.Tensor) -> None:
        if self.config.objective.selection != "per_batch":
            return
        logits_per_image, logits_per_text = losses.similarity_logits(similarity, self.config.objective.tau)
        stats.energy[positions] = losses.free_energy(logits_per_image, logits_per_text, self.config.objective.tau).cpu().numpy()
        stats.swapped_entropy[positions] = losses.swapped_entropy(logits_per_image, logits_per_text).cpu().numpy()
        stats.per_pair_loss[positions] = losses.per_pair_cross_entropy(logits_per_image, logits_per_text).detach().cpu().numpy()

    @torch.no_grad()
    def _refresh_features(self) -> None:
        """Re-encode every image and caption with the fine-tuned towers, so that scoring uses their features."""
        n_images = self.data.image_inputs.shape[0]
        images = [self.encoder.encode_image_tensors(self.data.load_pixels(np.arange(i, min(i + REFRESH_BATCH, n_images)))).float().cpu()
                  for i in range(0, n_images, REFRESH_BATCH)]
        captions = list(self.data.captions)
        texts = [self.encoder.encode_texts(captions[i : i + REFRESH_BATCH]).float().cpu() for i in range(0, len(captions), REFRESH_BATCH)]
        self.data.image_inputs, self.data.text_inputs = torch.cat(images), torch.cat(texts)

    # ----- scoring, selection, validation -----
    def _training_statistics(self) -> list[PairStatistics]:
        """Score the training pairs once per network (or return the forward-pass values for per_batch)."""
        if self.config.objective.selection == "per_batch" and self.config.train.method == "srem":
            return [self._forward_stats]
        statistics = []
        for member in self.model.members:
            image_embeddings, text_embeddings = embed_inputs(member, self.data.image_inputs, self.data.text_inputs[self.train_rows], self.device)
            pair_images = image_embeddings[self.data.caption_to_image[self.train_rows]]
            statistics.append(
                score_pairs(pair_images, text_embeddings, tau=self.config.objective.tau, batch_size=self.config.train.score_batch_size, seed=self.config.train.seed)
            )
        return statistics

    def _clean_prob(self, statistics: list[PairStatistics]) -> np.ndarray:
        selection = self.objective.selection
        if isinstance(selection, Selection):
            return selection.clean_prob
        if isinstance(selection, list):
            return np.mean([item.clean_prob for item in selection], axis=0)
        splitter = LossMixtureSplitter(random_state=self.config.train.seed).fit(statistics[0].per_pair_loss)
        return splitter.clean_prob(statistics[0].per_pair_loss)

    def _validate(self) -> dict[str, float]:
        rows = self.data.indices("val")
        if len(rows) == 0:
            return {}
        images, caption_to_image = np.unique(self.data.caption_to_image[rows], return_inverse=True)
        image_embeddings, _ = embed_inputs(self.model, self.data.image_inputs[images], self.data.text_inputs[:0], self.device)
        _, text_embeddings = embed_inputs(self.model, self.data.image_inputs[:0], self.data.text_inputs[rows], self.device)
        result = recall_at_k(image_embeddings.numpy(), text_embeddings.numpy(), caption_to_image)
        return {f"val_{key}": value for key, value in result.items()}

    def _history_frame(self, epoch: int, statistics: PairStatistics, clean_prob: np.ndarray) -> pd.DataFrame:
        selection = self.objective.selection
        selected = selection.selected_clean if isinstance(selection, Selection) else np.zeros(len(clean_prob), bool)
        return pd.DataFrame(
            {
                "epoch": np.full(len(clean_prob), epoch, dtype=np.int32),
                "pair_index": self.train_rows.astype(np.int64),
                "energy": statistics.energy,
                "swapped_entropy": statistics.swapped_entropy,
                "per_pair_loss": statistics.per_pair_loss,
                "clean_prob": clean_prob.astype(np.float32),
                "is_noisy": clean_prob < self.config.train.noise_threshold,
                "selected_clean": selected,
            }
        )

    def _finish_epoch(self, epoch: int, terms: dict[str, float], seconds: float) -> dict:
        started = time.perf_counter()
        statistics = self._training_statistics()
        self.objective.update_selection(statistics, epoch)
        clean_prob = self._clean_prob(statistics)
        scoring_seconds = time.perf_counter() - started
        record = {"kind": "epoch", "epoch": epoch, **terms, "seconds": seconds + scoring_seconds, "scoring_seconds": scoring_seconds}
        selection = self.objective.selection
        if isinstance(selection, Selection) and not self.objective.in_warmup(epoch + 1):
            record["fraction_selected"] = float(selection.selected_clean.mean())
        if self.data.is_injected_noise is not None:
            detection = detection_metrics(clean_prob, self.data.is_injected_noise[self.train_rows], self.config.train.noise_threshold)
            record.update({f"train_{key}": detection[key] for key in ("auroc", "ap", "precision", "recall")})
        record.update(self._validate())
        self.history.append(self._history_frame(epoch, statistics[0], clean_prob))
        return record

    # ----- checkpoints -----
    def _save_checkpoint(self, epoch: int) -> None:
        folder = self.run_dir / CHECKPOINT_DIR
        tensors = {f"model.{key}": value.detach().cpu().contiguous() for key, value in self.model.state_dict().items()}
        if self.encoder is not None:
            tensors.update({f"towers.{key}": value.detach().cpu().contiguous() for key, value in self.towers.state_dict().items()})
        optimizer_state = self.optimizer.state_dict()
        for index, state in optimizer_state["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()

        selection = self.objective.selection
        if isinstance(selection, list):
            selections = selection
        elif selection is None:
            selections = []
        else:
            selections = [selection]
        for index, item in enumerate(selections):
            for field in ("clean_prob", "selected_clean", "weights"):
                tensors[f"selection.{index}.{field}"] = torch.as_tensor(np.asarray(getattr(item, field)))
        if self.config.objective.selection == "per_batch":
            for field in ("energy", "swapped_entropy", "per_pair_loss"):
                tensors[f"forward.{field}"] = torch.as_tensor(getattr(self._forward_stats, field))

        atomic.write_with(folder / "last.safetensors", lambda path: save_torch_file(tensors, str(path)))
        state = {
            "epoch": epoch,
            "best_val_rsum": self.best_val_rsum,
            "best_epoch": self.best_epoch,
            "param_groups": optimizer_state["param_groups"],
            "n_selections": len(selections),
            "selection_is_list": isinstance(selection, list),
            "config": self.config.to_dict(),
        }
        atomic.write_json(folder / "last.json", state)

    def _load_checkpoint(self) -> None:
        folder = self.run_dir / CHECKPOINT_DIR
        if not (folder / "last.json").exists():
            logger.info("no checkpoint in %s; starting from epoch 1", folder)
            return
        state = json.loads((folder / "last.json").read_text())
        # The epoch count only sets where the loop stops, so a run may be resumed with more epochs.
        saved_config, current_config = state["config"], self.config.to_dict()
        saved_config["train"]["epochs"] = current_config["train"]["epochs"]
        if saved_config != current_config:
            changes = _config_differences(saved_config, current_config)
            raise ValueError(
                f"the checkpoint in {folder} was written with a different config ({changes}); resume with the "
                "same options or train into a new --out folder"
            )
        tensors = load_torch_file(str(folder / "last.safetensors"), device="cpu")
        self.model.load_state_dict({key[6:]: value for key, value in tensors.items() if key.startswith("model.")})
        if self.encoder is not None:
            self.towers.load_state_dict({key[7:]: value for key, value in tensors.items() if key.startswith("towers.")})
            self._refresh_features()
        self.model.to(self.device)
        optimizer_state = {"state": {}, "param_groups": state["param_groups"]}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                optimizer_state["state"].setdefault(int(index), {})[name] = value.to(self.device) if name != "step" else value
        self.optimizer.load_state_dict(optimizer_state)
        selections = [
            Selection(*(tensors[f"selection.{index}.{field}"].numpy() for field in ("clean_prob", "selected_clean", "weights")))
            for index in range(state["n_selections"])
        ]
        if state["selection_is_list"]:
            self.objective.selection = selections
        else:
            self.objective.selection = selections[0] if selections else None
        if "forward.energy" in tensors:
            self._forward_stats = PairStatistics(*(tensors[f"forward.{f}"].numpy() for f in ("energy", "swapped_entropy", "per_pair_loss")))
        self.start_epoch, self.best_val_rsum, self.best_epoch = state["epoch"] + 1, state["best_val_rsum"], state["best_epoch"]
        self._restore_logs(state["epoch"])
        logger.info("resumed from the checkpoint after epoch %d", state["epoch"] + 1)

    def _restore_logs(self, last_epoch: int) -> None:
        metrics = [line for line in read_metrics(self.run_dir / "metrics.jsonl") if line.get("epoch", -1) <= last_epoch and line.get("kind") == "epoch"]
        if self.context.is_main:
            atomic.write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(line, sort_keys=True) + "\n" for line in metrics))
        history_path = self.run_dir / "history.parquet"
        if history_path.exists():
            history = pd.read_parquet(history_path)
            self.history = [history[history["epoch"] <= last_epoch]]

    # ----- the loop -----
    def fit(self, *, resume: bool = False, on_epoch: Callable[[dict], None] | None = None) -> TrainingOutcome:
        if resume:
            self._load_checkpoint()
        for epoch in range(self.start_epoch, self.config.train.epochs):
            started = time.perf_counter()
            terms = self._run_epoch(epoch)
            if self.encoder is not None:
                self._refresh_features()
            record = self._finish_epoch(epoch, terms, time.perf_counter() - started)
            val_rsum = record.get("val_rsum", -float(epoch))
            if val_rsum > self.best_val_rsum:
                self.best_val_rsum, self.best_epoch = val_rsum, epoch
                if self.context.is_main:
                    towers = self.towers if self.encoder is not None else None
                    save_heads(self.run_dir / "model.safetensors", self.model, self.encoder_identity, towers=towers)
            record["best_epoch"] = self.best_epoch
            if self.context.is_main:
                atomic.append_json_line(self.run_dir / "metrics.jsonl", record)
                atomic.write_parquet(self.run_dir / "history.parquet", pd.concat(self.history, ignore_index=True))
                self._save_checkpoint(epoch)
            self.context.barrier()
            logger.info(
                "epoch %d/%d loss %.4f val rSum %.1f train AUROC %s (%.1f s)",
                epoch + 1, self.config.train.epochs, record.get("loss", float("nan")), record.get("val_rsum", float("nan")),
                f"{record['train_auroc']:.3f}" if "train_auroc" in record else "n/a", record["seconds"],
            )
            if on_epoch is not None:
                on_epoch(record)
        return TrainingOutcome(self.model, self.best_epoch, self.best_val_rsum)


def _config_differences(saved: dict, current: dict, prefix: str = "") -> str:
    """Return the differing fields of two nested config dicts as ``name: saved -> current``, comma-separated."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        before, after = saved.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            nested = _config_differences(before, after, f"{prefix}{key}.")
            changes.extend([nested] if nested else [])
        elif before != after:
            changes.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return ", ".join(changes)
