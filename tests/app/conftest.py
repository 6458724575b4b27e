"""Fixtures for the app tests: a small synthetic run per session and AppTest sessions on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_helpers import APP, APP_TIMEOUT_SECONDS, make_synthetic_run


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    """A synthetic run shared by the session. Pages may add caches under its index/ folder; tests that
    save decisions or exports use ``writable_run``."""
    return make_synthetic_run(tmp_path_factory.mktemp("runs") / "shapes")


@pytest.fixture
def writable_run(synthetic_run, tmp_path) -> Path:
    """A private copy of the synthetic run for tests that save decisions or exports."""
    copy = tmp_path / "run"
    shutil.copytree(synthetic_run, copy)
    return copy


@pytest.fixture
def app_on():
    """Return a function that opens an AppTest session of ``app.py`` on a run directory and one page."""
    from streamlit.testing.v1 import AppTest

    def open_app(run_path: Path | str | None, page: str | None = None) -> AppTest:
        app = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_SECONDS)
        if run_path is not None:
            app.session_state["run_path"] = str(run_path)
        app.run()
        if page is not None:
            app.switch_page(page).run()
        return app

    return open_app
