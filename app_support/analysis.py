"""Pure helpers that turn a run's tables into the numbers and rows the app pages show.

Nothing here imports streamlit or computes a model score: the scores come from the run directory
(``docs/run_format.md``), and these functions count, filter, rank and label them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

DEFAULT_NOISE_THRESHOLD = 0.5
"""Flag threshold on ``clean_prob`` when the run records none (the training default)."""

SCORE_LABELS = {
    "clean_prob": "Clean probability",
    "energy": "Energy",
    "swapped_entropy": "Swapped entropy",
    "per_pair_loss": "Per-pair loss",
}
"""Display names of the per-pair score columns."""

NOISY_WHEN_HIGH = {"clean_prob": False, "energy": True, "swapped_entropy": True, "per_pair_loss": True}
"""Polarity of each score: True when a higher value points to a mismatched pair."""

NOTABLE_PERCENTILE = 75.0
"""A score is named in a pair's flag reason when it is noisier than this percentage of all pairs."""

DECISION_LABELS = {"confirmed_noisy": "confirmed noisy", "cleared": "cleared", "": ""}

SHOW_CHOICES = {
    "flagged": "Flagged (after your decisions)",
    "undecided": "Flagged, not reviewed yet",
    "confirmed": "Confirmed noisy",
    "cleared": "Cleared by you",
    "injected": "Injected noise (ground truth)",
    "all": "All pairs",
}
"""Row sets of the flagged-pairs table: key -> label."""

SORT_CHOICES = ("clean_prob", "per_pair_loss", "energy", "swapped_entropy", "pair_id")


# -- run-level numbers --------------------------------------------------------------------------


FINAL_PREFIXES = {"detection_": None, "test_": "test", "val_": "val"}
"""Key prefixes of a final record as ``srem train`` writes it, and the split each one names."""


def final_record(metrics: list[dict]) -> dict | None:
    """Return the last ``{"kind": "final"}`` record of metrics.jsonl with the names of docs/run_format.md.

    ``srem train`` writes ``detection_auroc`` and ``test_rsum`` where the format names ``auroc`` and
    ``rsum`` with ``"split": "test"``; both spellings are accepted, and a name already present wins.
    """
    finals = [record for record in metrics if record.get("kind") == "final"]
    if not finals:
        return None
    record = dict(finals[-1])
    for key, value in finals[-1].items():
        for prefix, split in FINAL_PREFIXES.items():
            if key.startswith(prefix):
                record.setdefault(key[len(prefix):], value)
                if split is not None:
                    record.setdefault("split", split)
    return record


def epoch_table(metrics: list[dict]) -> pd.DataFrame:
    """Return the per-epoch records of metrics.jsonl as a table sorted by epoch (empty if none)."""
    rows = [record for record in metrics if record.get("kind") == "epoch"]
    if not rows:
        return pd.DataFrame(columns=["epoch"])
    return pd.DataFrame(rows).sort_values("epoch").reset_index(drop=True)


RETRIEVAL_LABELS = {
    **{f"i2t_r{k}": f"image→text R@{k}" for k in (1, 5, 10)},
    **{f"t2i_r{k}": f"text→image R@{k}" for k in (1, 5, 10)},
    "rsum": "rSum",
}
"""Display names of the retrieval metrics of the final record, in display order."""


def retrieval_metrics(final: dict | None) -> list[tuple[str, float]]:
    """Return (label, value) for each retrieval metric the final record has, in ``RETRIEVAL_LABELS`` order."""
    final = final or {}
    return [(label, float(final[key])) for key, label in RETRIEVAL_LABELS.items() if final.get(key) is not None]


def noise_threshold(meta: dict, metrics: list[dict]) -> float:
    """Return the ``clean_prob`` threshold the run flagged with.

    The final metrics record wins (a threshold chosen on validation), then the training config's
    ``noise_threshold``, then ``DEFAULT_NOISE_THRESHOLD``.
    """
    final = final_record(metrics)
    if final is not None and final.get("threshold") is not None:
        return float(final["threshold"])
    train = meta.get("config", {}).get("train", {})
    return float(train.get("noise_threshold", DEFAULT_NOISE_THRESHOLD))


def ground_truth(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(known, injected)`` boolean arrays over pairs; ``known`` is False where truth is null."""
    if "is_injected_noise" not in scores:
        empty = np.zeros(len(scores), dtype=bool)
        return empty, empty
    column = scores["is_injected_noise"]
    known = column.notna().to_numpy()
    injected = column.fillna(False).to_numpy(dtype=bool)
    return known, injected


def has_ground_truth(scores: pd.DataFrame) -> bool:
    return bool(ground_truth(scores)[0].any())


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """Headline numbers of a run."""

    n_pairs: int
    n_images: int
    n_flagged: int
    flagged_fraction: float
    estimated_noise_rate: float
    """Mean of ``1 - clean_prob``: the expected fraction of mismatched pairs under the model."""
    injected_rate: float | None
    """Fraction of injected noise among pairs with known truth; None without ground truth."""


def summarize(scores: pd.DataFrame) -> RunSummary:
    n_pairs = len(scores)
    n_flagged = int(scores["is_noisy"].sum())
    known, injected = ground_truth(scores)
    return RunSummary(
        n_pairs=n_pairs,
        n_images=int(scores["image_index"].nunique()),
        n_flagged=n_flagged,
        flagged_fraction=n_flagged / n_pairs if n_pairs else 0.0,
        estimated_noise_rate=float(1.0 - scores["clean_prob"].mean()) if n_pairs else 0.0,
        injected_rate=float(injected[known].mean()) if known.any() else None,
    )


# -- thresholds and detection counts ------------------------------------------------------------


def threshold_flags(
    scores: pd.DataFrame,
    clean_prob_below: float,
    energy_above: float | None = None,
    entropy_above: float | None = None,
) -> np.ndarray:
    """Flag pairs with ``clean_prob < clean_prob_below``, or energy or swapped entropy above its threshold.

    A threshold of None adds no flags. With the run's threshold and None for the others this
    reproduces the run's ``is_noisy``.
    """
    flags = scores["clean_prob"].to_numpy() < clean_prob_below
    if energy_above is not None:
        flags |= scores["energy"].to_numpy() > energy_above
    if entropy_above is not None:
        flags |= scores["swapped_entropy"].to_numpy() > entropy_above
    return flags


@dataclasses.dataclass(frozen=True)
class DetectionCounts:
    """Flag counts, and precision and recall against injected noise where truth is known."""

    n_flagged: int
    n_kept: int
    n_known: int
    """Pairs with known truth (the training split of a run with injected noise)."""
    true_positives: int
    precision: float | None
    """Injected among flagged pairs with known truth; None without truth or without flagged pairs."""
    recall: float | None
    """Flagged among injected pairs; None without injected pairs."""

    @property
    def f1(self) -> float | None:
        if not self.precision or not self.recall:
            return None if self.precision is None or self.recall is None else 0.0
        return 2 * self.precision * self.recall / (self.precision + self.recall)


def detection_counts(flags: np.ndarray, scores: pd.DataFrame) -> DetectionCounts:
    known, injected = ground_truth(scores)
    flagged_known = flags & known
    injected_known = injected & known
    true_positives = int((flagged_known & injected_known).sum())
    n_flagged_known, n_injected = int(flagged_known.sum()), int(injected_known.sum())
    return DetectionCounts(
        n_flagged=int(flags.sum()),
        n_kept=int((~flags).sum()),
        n_known=int(known.sum()),
        true_positives=true_positives,
        precision=true_positives / n_flagged_known if n_flagged_known else None,
        recall=true_positives / n_injected if n_injected else None,
    )


# -- decisions and the flagged-pairs table ------------------------------------------------------


def decision_column(scores: pd.DataFrame, decisions: dict[str, str]) -> np.ndarray:
    """Return each pair's saved decision ("confirmed_noisy", "cleared" or "")."""
    if not decisions:
        return np.full(len(scores), "", dtype=object)
    return scores["pair_id"].map(decisions).fillna("").to_numpy(dtype=object)


def effective_flags(scores: pd.DataFrame, decisions: dict[str, str]) -> np.ndarray:
    """Return ``is_noisy`` with the person's decisions applied (confirmed -> flagged, cleared -> kept)."""
    flags = scores["is_noisy"].to_numpy(dtype=bool).copy()
    decided = decision_column(scores, decisions)
    flags[decided == "confirmed_noisy"] = True
    flags[decided == "cleared"] = False
    return flags


@dataclasses.dataclass(frozen=True)
class PairFilter:
    """Row set and sort order of the flagged-pairs table."""

    show: str = "flagged"
    """A key of ``SHOW_CHOICES``."""
    caption_contains: str = ""
    """Case-insensitive substring of the caption; empty matches every caption."""
    categories: tuple[str, ...] = ()
    """Categories to keep; empty keeps all."""
    splits: tuple[str, ...] = ()
    """Splits to keep; empty keeps all."""
    clean_prob_range: tuple[float, float] = (0.0, 1.0)
    sort_by: str = "clean_prob"
    ascending: bool = True

    def __post_init__(self) -> None:
        if self.show not in SHOW_CHOICES:
            raise ValueError(f"show must be one of {sorted(SHOW_CHOICES)}; got {self.show!r}")
        if self.sort_by not in SORT_CHOICES:
            raise ValueError(f"sort_by must be one of {SORT_CHOICES}; got {self.sort_by!r}")


def filter_pairs(scores: pd.DataFrame, decisions: dict[str, str], spec: PairFilter) -> np.ndarray:
    """Return the row positions of ``scores`` that ``spec`` selects, in ``spec``'s sort order."""
    decided = decision_column(scores, decisions)
    flags = effective_flags(scores, decisions)
    row_sets = {
        "flagged": flags,
        "undecided": scores["is_noisy"].to_numpy(dtype=bool) & (decided == ""),
        "confirmed": decided == "confirmed_noisy",
        "cleared": decided == "cleared",
        "injected": ground_truth(scores)[1],
        "all": np.ones(len(scores), dtype=bool),
    }
    mask = row_sets[spec.show].copy()
    if spec.caption_contains.strip():
        mask &= scores["caption"].str.contains(spec.caption_contains.strip(), case=False, regex=False, na=False).to_numpy()
    if spec.categories and "category" in scores:
        mask &= scores["category"].isin(spec.categories).to_numpy()
    if spec.splits:
        mask &= scores["split"].isin(spec.splits).to_numpy()
    low, high = spec.clean_prob_range
    clean_prob = scores["clean_prob"].to_numpy()
    mask &= (clean_prob >= low) & (clean_prob <= high)

    positions = np.flatnonzero(mask)
    keys = scores[spec.sort_by].to_numpy()[positions]
    order = np.argsort(keys, kind="stable")
    if not spec.ascending:
        order = order[::-1]
    return positions[order]


def page_bounds(n_rows: int, page_size: int, page: int) -> tuple[int, int, int]:
    """Return ``(start, stop, n_pages)`` of 1-based ``page``; a page past the end shows the last page."""
    n_pages = max(1, math.ceil(n_rows / page_size))
    page = min(max(page, 1), n_pages)
    start = (page - 1) * page_size
    return start, min(start + page_size, n_rows), n_pages


def noisiness_percentiles(scores: pd.DataFrame) -> pd.DataFrame:
    """Return, per pair and score, the percentage of pairs that the pair is noisier than (0 to 100)."""
    columns = {}
    for name, noisy_when_high in NOISY_WHEN_HIGH.items():
        values = scores[name].to_numpy(dtype=np.float64)
        ranks = pd.Series(values if noisy_when_high else -values).rank(method="min").to_numpy() - 1
        columns[name] = 100.0 * ranks / max(len(values) - 1, 1)
    return pd.DataFrame(columns, index=scores.index)


def flag_reason(
    row: pd.Series,
    percentiles: pd.Series,
    threshold: float,
    own_similarity: float | None = None,
    best_similarity: float | None = None,
    best_is_own: bool = True,
) -> str:
    """Explain in a few words why a pair is (or is not) flagged.

    ``percentiles`` is the pair's row of ``noisiness_percentiles``. A score is named as "top X%" when
    the pair is among the X% noisiest pairs by that score, with X at most ``100 - NOTABLE_PERCENTILE``.
    ``own_similarity`` and ``best_similarity`` are the cosine similarities of the pair's image with its
    own caption and with the best-matching caption of the whole run.
    """
    comparison = "<" if row["clean_prob"] < threshold else "≥"
    parts = [f"clean prob {row['clean_prob']:.2f} {comparison} {threshold:.2f}"]
    for name, short in (("per_pair_loss", "loss"), ("swapped_entropy", "entropy"), ("energy", "energy")):
        if percentiles[name] >= NOTABLE_PERCENTILE:
            parts.append(f"{short} top {max(1, math.ceil(100.0 - percentiles[name]))}%")
    if not best_is_own and own_similarity is not None and best_similarity is not None:
        parts.append(f"another caption fits the image better ({best_similarity:.2f} vs {own_similarity:.2f})")
    return " · ".join(parts)


def image_noise_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per image (indexed by ``image_index``): captions, flagged captions and lowest ``clean_prob``."""
    grouped = scores.groupby("image_index")
    return pd.DataFrame(
        {
            "n_captions": grouped.size(),
            "n_flagged": grouped["is_noisy"].sum().astype(int),
            "min_clean_prob": grouped["clean_prob"].min(),
        }
    )


# -- history ------------------------------------------------------------------------------------


def with_pair_ids(history: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Return ``history`` with a ``pair_id`` column.

    History files name a pair by ``pair_id`` (docs/run_format.md) or by ``pair_index``, the pair's row
    of scores.parquet, which is what ``srem train`` writes. The second form gets its ids from ``scores``.
    """
    if history.empty or "pair_id" in history:
        return history
    if "pair_index" not in history:
        raise ValueError(f"history.parquet has neither pair_id nor pair_index; columns: {list(history.columns)}")
    pair_ids = scores["pair_id"].to_numpy()[history["pair_index"].to_numpy()]
    return history.assign(pair_id=pair_ids)


def history_epochs(history: pd.DataFrame) -> list[int]:
    if history.empty or "epoch" not in history:
        return []
    return sorted(int(epoch) for epoch in history["epoch"].unique())


def flag_flips(history: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """Return the pairs whose ``is_noisy`` changed between the epoch before ``epoch`` and ``epoch``.

    Columns: ``pair_id``, ``change`` ("flagged" or "cleared"), ``clean_prob_before``,
    ``clean_prob_after``. Empty for the first epoch.
    """
    epochs = history_epochs(history)
    columns = ["pair_id", "change", "clean_prob_before", "clean_prob_after"]
    if epoch not in epochs or epochs.index(epoch) == 0:
        return pd.DataFrame(columns=columns)
    previous = epochs[epochs.index(epoch) - 1]
    before = history.loc[history["epoch"] == previous, ["pair_id", "is_noisy", "clean_prob"]]
    after = history.loc[history["epoch"] == epoch, ["pair_id", "is_noisy", "clean_prob"]]
    merged = before.merge(after, on="pair_id", suffixes=("_before", "_after"))
    merged = merged[merged["is_noisy_before"] != merged["is_noisy_after"]]
    return pd.DataFrame(
        {
            "pair_id": merged["pair_id"].to_numpy(),
            "change": np.where(merged["is_noisy_after"].to_numpy(), "flagged", "cleared"),
            "clean_prob_before": merged["clean_prob_before"].to_numpy(),
            "clean_prob_after": merged["clean_prob_after"].to_numpy(),
        },
        columns=columns,
    )


def flips_per_epoch(history: pd.DataFrame, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Count per epoch the pairs that became flagged and became clean, compared with the epoch before.

    With ``scores`` that carry ground truth, ``injected_cleared`` counts injected-noise pairs that
    became clean: the model starting to trust a mismatched pair, the error that feeds on itself.
    """
    epochs = history_epochs(history)
    wide = history.pivot_table(index="pair_id", columns="epoch", values="is_noisy", aggfunc="first")
    rows = []
    truth = None
    if scores is not None and has_ground_truth(scores):
        known, injected = ground_truth(scores)
        truth = pd.Series(injected & known, index=scores["pair_id"]).reindex(wide.index).fillna(False).to_numpy(bool)
    for previous, epoch in zip(epochs, epochs[1:]):
        before = wide[previous].fillna(False).to_numpy(dtype=bool)
        after = wide[epoch].fillna(False).to_numpy(dtype=bool)
        row = {"epoch": epoch, "became_flagged": int((~before & after).sum()), "became_clean": int((before & ~after).sum())}
        if truth is not None:
            row["injected_cleared"] = int((before & ~after & truth).sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=["epoch", "became_flagged", "became_clean", *(["injected_cleared"] if truth is not None else [])])
