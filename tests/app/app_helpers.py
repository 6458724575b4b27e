"""Helpers shared by the app tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "app.py"
SYNTHETIC_SCRIPT = REPO_ROOT / "scripts" / "make_synthetic_run.py"

# app_support lives next to app.py and is not part of the installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SYNTHETIC_PAIRS = 400
"""Pairs of the test run: enough for several table pages (50 rows each) and a UMAP fit, small enough
that the run is written in seconds."""

APP_TIMEOUT_SECONDS = 240
"""AppTest time limit per script run. The first run of the map page compiles UMAP's numba code and the
first search loads the encoder, which takes about a minute on a loaded 2-core machine."""


def make_synthetic_run(out: Path, pairs: int = SYNTHETIC_PAIRS, *extra: str) -> Path:
    """Write a synthetic run of drawn shapes with ``scripts/make_synthetic_run.py`` and return its path."""
    command = [sys.executable, str(SYNTHETIC_SCRIPT), "--shapes", "--pairs", str(pairs), "--out", str(out), *extra]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}"
    return out


def edit_config(run: Path, **changes) -> None:
    """Change top-level fields of a run's config.json in place."""
    path = run / "config.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def shadow_copy_run(source: Path, target: Path) -> Path:
    """Make ``target`` a run that reads ``source``'s files through symbolic links and return it.

    ``config.json`` is rewritten with an absolute data root and ``index/`` is copied, so the app's
    decisions, exports and caches go to ``target`` and ``source`` is never written.
    """
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name in ("config.json", "decisions.json", "exports"):
            continue
        if item.name == "index":
            shutil.copytree(item, target / "index")
        else:
            (target / item.name).symlink_to(item.resolve())
    meta = json.loads((source / "config.json").read_text())
    root = Path(meta["data"]["root"])
    meta["data"]["root"] = str(root if root.is_absolute() else (source / root).resolve())
    (target / "config.json").write_text(json.dumps(meta))
    return target
