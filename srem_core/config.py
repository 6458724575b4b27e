"""Frozen configuration dataclasses for training, with validation that names the field and the fix.

Every free choice of the SREM reading in ``docs/method.md`` is a field here, so that another reading of
the paper can be selected without code changes. Configs round-trip through plain JSON (``to_dict`` /
``from_dict``); they are never pickled.
"""

from __future__ import annotations

import dataclasses
from typing import Any

METHODS = ("srem", "infonce", "triplet", "ncr")
ENERGY_RULES = ("mean", "gmm", "quantile", "off")
SELECTIONS = ("per_epoch", "per_batch")
WEIGHTINGS = ("confidence", "inverse", "off")
BIASES = ("uniform", "dissimilar", "similar")
CLEAN_TERMS = ("hard", "soft")
CMBCL_FORMS = ("sum", "expected")
NOISE_LEVELS = ("caption", "image")
DEVICES = ("auto", "cpu", "cuda", "mps")
HEADS = ("linear", "mlp")


def _check_choice(field: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _check_range(field: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    below = value <= low if low_open else value < low
    if below or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{field} must be in {bracket}{low}, {high}]; got {value!r}")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Switches of the SREM objective (``srem_core.objective``); the baselines ignore most of them."""

    tau: float = 0.05
    """Temperature of the in-batch classification logits ``S / tau``."""
    lambda_cmbcl: float = 0.0
    """Weight of the cross-modal biased complementary loss (0 by default: it cost detection on the demo)."""
    bias: str = "uniform"
    """Transition matrix of the complementary loss: uniform, dissimilar or similar."""
    tau_q: float = 0.2
    """Temperature of the biased transition matrix."""
    cmbcl_form: str = "expected"
    """sum: every candidate is an observed complementary label; expected: labels weighted by Q."""
    energy_rule: str = "quantile"
    """Energy filter on the small-loss pairs: mean, gmm, quantile or off."""
    energy_quantile: float = 0.7
    """Quantile of the small-loss pairs' energies used by ``energy_rule="quantile"``."""
    selection: str = "per_epoch"
    """When the clean set is chosen: per_epoch (a scoring pass before each epoch) or per_batch."""
    weighting: str = "off"
    """Per-pair weight from the swapped entropy: confidence, inverse or off."""
    weight_floor: float = 0.0
    """Lowest weight a selected clean pair can get."""
    clean_term: str = "hard"
    """hard: cross-entropy on the selected clean set only; soft: every pair weighted by clean_prob."""
    gmm_threshold: float = 0.5
    """Posterior of the low-loss mixture component above which a pair counts as clean."""
    warmup_epochs: int = 1
    """Epochs on all pairs before filtration starts (memorisation of noisy pairs sets in after about two)."""
    warmup_clean_weight: float = 1.0
    """Weight of plain cross-entropy on all pairs during warm-up (0 = complementary loss only)."""

    def __post_init__(self) -> None:
        _check_range("tau", self.tau, 0.0, 10.0, low_open=True)
        _check_range("tau_q", self.tau_q, 0.0, 10.0, low_open=True)
        _check_range("lambda_cmbcl", self.lambda_cmbcl, 0.0, 1e3)
        _check_choice("bias", self.bias, BIASES)
        _check_choice("cmbcl_form", self.cmbcl_form, CMBCL_FORMS)
        _check_choice("energy_rule", self.energy_rule, ENERGY_RULES)
        _check_range("energy_quantile", self.energy_quantile, 0.0, 1.0, low_open=True)
        _check_choice("selection", self.selection, SELECTIONS)
        _check_choice("weighting", self.weighting, WEIGHTINGS)
        _check_range("weight_floor", self.weight_floor, 0.0, 1.0)
        _check_choice("clean_term", self.clean_term, CLEAN_TERMS)
        _check_range("gmm_threshold", self.gmm_threshold, 0.0, 1.0, low_open=True)
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be 0 or more; got {self.warmup_epochs}")
        _check_range("warmup_clean_weight", self.warmup_clean_weight, 0.0, 1e3)


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Synthetic noise injected into the training split for benchmarking."""

    rate: float = 0.0
    """Fraction of training captions (caption level) or images (image level) to shuffle; 0 = none."""
    level: str = "caption"
    """caption (NCR convention) or image (DECL/RCL convention)."""
    seed: int = 0
    noise_file: str | None = None
    """A saved noise index (.npy) to load instead of sampling; overrides rate and level."""

    def __post_init__(self) -> None:
        _check_range("noise rate", self.rate, 0.0, 1.0)
        _check_choice("noise level", self.level, NOISE_LEVELS)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and model settings shared by SREM and the baselines."""

    method: str = "srem"
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    embed_dim: int = 256
    """Size of the joint embedding space."""
    head: str = "linear"
    """Projection head on top of the frozen towers: linear or mlp (one hidden layer)."""
    triplet_margin: float = 0.2
    """Margin of the VSE++ triplet baseline and the ncr baseline."""
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    """Mixed precision (bfloat16 autocast) on CUDA; ignored on CPU."""
    unfreeze: bool = False
    """Train the pretrained towers too (GPU fine-tuning); default trains the heads on cached features."""
    score_batch_size: int = 128
    """Batch size of the fixed, seeded scoring context; energy depends on the batch."""
    noise_threshold: float = 0.5
    """``is_noisy = clean_prob < noise_threshold``."""

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("head", self.head, HEADS)
        for name in ("epochs", "batch_size", "embed_dim", "score_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 for in-batch negatives; got {self.batch_size}")
        _check_range("learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        _check_range("noise_threshold", self.noise_threshold, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``srem train`` needs: data, encoder, noise, objective and optimisation."""

    data: str = "demo"
    """A manifest path, a research-features folder, or ``demo``."""
    encoder: str = "offline"
    """``offline`` or ``open_clip:<model name>``."""
    pretrained: str | None = None
    """open_clip weights: a hub tag or a local file; None = random initialisation."""
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    cache_dir: str | None = None
    """Feature cache folder; None = ``~/.cache/srem``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """Build a config from ``to_dict`` output; unknown keys are an error naming them."""
        values = dict(values)
        parts = {"noise": NoiseConfig, "objective": ObjectiveConfig, "train": TrainConfig}
        for key, part in parts.items():
            if key in values:
                values[key] = _build(part, values[key], key)
        return _build(cls, values, "config")


def _build(cls: type, values: dict[str, Any], where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {where} field(s) {unknown}; valid fields: {sorted(known)}")
    return cls(**values)
