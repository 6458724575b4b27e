"""Export the pairs of a run with their scores: the cleaned manifest, the flagged pairs, or everything."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from srem_core import atomic
from srem_core.runs import Run

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("csv", "jsonl", "parquet")
KEEP_CHOICES = ("clean", "noisy", "all")
SCORE_COLUMNS = ("energy", "swapped_entropy", "per_pair_loss", "clean_prob", "is_noisy", "is_injected_noise")


def apply_decisions(scores: pd.DataFrame, decisions: dict[str, str]) -> pd.DataFrame:
    """Return a copy with ``decision`` (a person's choice or empty) and ``is_flagged`` (the final flag).

    ``confirmed_noisy`` sets the flag, ``cleared`` removes it; pairs without a decision keep ``is_noisy``.
    """
    table = scores.copy()
    table["decision"] = [decisions.get(pair_id, "") for pair_id in table["pair_id"]]
    flagged = table["is_noisy"].to_numpy().copy()
    flagged[table["decision"].to_numpy() == "confirmed_noisy"] = True
    flagged[table["decision"].to_numpy() == "cleared"] = False
    table["is_flagged"] = flagged
    return table


def _manifest_extras(run: Run) -> pd.DataFrame | None:
    """Extra columns of the original manifest (keywords and the like), keyed by pair_id, when readable."""
    source = run.meta.get("data", {}).get("source")
    if not source or not Path(source).is_file():
        return None
    from srem_core.data import load_dataset

    try:
        pairs = load_dataset(source).pairs
    except (ValueError, OSError) as error:
        logger.warning("could not re-read %s for its extra columns (%s); exporting the run's columns only", source, error)
        return None
    known = {"pair_id", "image_id", "caption", "category", "split", "image_index", "image_path"}
    extras = [column for column in pairs.columns if column not in known]
    return pairs[["pair_id", *extras]].astype({"pair_id": str}) if extras else None


def _relocate_paths(run: Run, paths: pd.Series, out: Path, absolute_paths: bool) -> pd.Series:
    """Rewrite image paths relative to the output file's folder (or as absolute paths)."""
    target = out.resolve().parent

    def relocate(value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return value
        absolute = Path(value) if Path(value).is_absolute() else run.data_root / value
        if absolute_paths:
            return str(absolute.resolve())
        try:
            return os.path.relpath(absolute, target)
        except ValueError:
            return str(absolute)

    return paths.map(relocate)


def select_rows(run: Run, keep: str, *, apply_saved_decisions: bool = True) -> pd.DataFrame:
    """Return the run's pairs with scores and the final flag, filtered to ``keep`` (clean, noisy or all)."""
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep must be one of {KEEP_CHOICES}; got {keep!r}")
    table = apply_decisions(run.scores, run.decisions() if apply_saved_decisions else {})
    if keep == "clean":
        table = table[~table["is_flagged"]]
    elif keep == "noisy":
        table = table[table["is_flagged"]]
    return table.reset_index(drop=True)


def export_pairs(
    run: Run, *, keep: str = "clean", fmt: str = "csv", out: str | Path, apply_decisions: bool = True,
    absolute_paths: bool = False,
) -> Path:
    """Write the run's pairs (manifest columns plus scores) to ``out`` atomically and return the path.

    ``keep="clean"`` drops the flagged pairs (the cleaned manifest), ``"noisy"`` keeps only them, ``"all"``
    writes every pair. Decisions saved in the app override the model's flag unless ``apply_decisions`` is
    False. Image paths are rewritten relative to the output file's folder, or made absolute with
    ``absolute_paths`` (for a file that will be moved, such as a browser download).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}; got {fmt!r}")
    out = Path(out)
    table = select_rows(run, keep, apply_saved_decisions=apply_decisions)
    extras = _manifest_extras(run)
    if extras is not None:
        table = table.merge(extras, on="pair_id", how="left")
    table["image_path"] = _relocate_paths(run, table["image_path"], out, absolute_paths)
    columns = ["pair_id", "image_id", "image_path", "caption", "category", "split", *SCORE_COLUMNS, "decision", "is_flagged"]
    columns += [column for column in table.columns if column not in columns and column not in ("image_index", "original_image_id")]
    table = table[columns]
    if fmt == "csv":
        atomic.write_with(out, lambda path: table.to_csv(path, index=False))
    elif fmt == "parquet":
        atomic.write_parquet(out, table)
    else:
        records = json.loads(table.to_json(orient="records"))
        atomic.write_text(out, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    logger.info("wrote %d pairs (%s) to %s", len(table), keep, out)
    return out
