"""The whole app in a real browser: a Streamlit server on 127.0.0.1 driven by headless Chromium.

The test opens every page, moves a threshold, runs a text search and writes an export, and saves a
screenshot of each page to ``test-artifacts/screenshots/<run>/``. It uses the bundled demo run when
``demo/run`` exists (through a copy of links, so the repository is never written), else the
session's synthetic run.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from app_helpers import REPO_ROOT, shadow_copy_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic",
]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1800}
"""Tall enough that most of each page fits: Streamlit scrolls inside its own container, so a
full-page screenshot shows only the viewport."""

SERVER_START_SECONDS = 120
PAGE_SECONDS = 300
"""Maximum wait for one page to finish running. The first map page fits UMAP and compiles its numba
code, and the first search loads the encoder. Each took up to a minute on a loaded 2-core machine."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM}, which is not installed"),
]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit did not answer within {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser_run(synthetic_run, tmp_path_factory) -> tuple[str, Path]:
    """Return (label, run directory): the demo run when it exists, else the synthetic run."""
    demo = REPO_ROOT / "demo" / "run"
    if (demo / "config.json").is_file():
        return "demo", shadow_copy_run(demo, tmp_path_factory.mktemp("demo") / "run")
    return "synthetic", synthetic_run


@pytest.fixture(scope="module")
def server_url(browser_run, tmp_path_factory):
    _, run = browser_run
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", "--", "--run", str(run),
    ]
    with open(log, "w") as handle:
        server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def page(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        browser_page = context.new_page()
        browser_page.set_default_timeout(PAGE_SECONDS * 1000)
        yield browser_page
        context.close()
        browser.close()


def wait_until_idle(page) -> None:
    """Wait until the script run ends: no running indicator and no spinner; then let plots draw."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid^=\"stStatusWidgetRunning\"]')"
        " && !document.querySelector('[data-testid=\"stSpinner\"]')",
        timeout=PAGE_SECONDS * 1000,
    )
    page.wait_for_timeout(1500)


def open_page(page, url: str, title: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title, level=1).wait_for()
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()


def screenshot(page, browser_run, name: str) -> None:
    folder = SCREENSHOTS / browser_run[0]
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def metric_text(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]', has=page.get_by_text(label, exact=True)).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def test_page_link_opens_on_new_server(page, server_url):
    """The server's first session opens a page's URL (Streamlit then runs the page without app.py)."""
    open_page(page, f"{server_url}/search", "Search")
    assert page.get_by_label("Describe the image you are looking for").count() == 1


def test_overview_page(page, server_url, browser_run):
    open_page(page, server_url, "Overview")
    assert metric_text(page, "Pairs").replace(",", "").isdigit()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    screenshot(page, browser_run, "1-overview")


def test_distributions_threshold_moves_counts(page, server_url, browser_run):
    open_page(page, f"{server_url}/distributions", "Distributions")
    before = metric_text(page, "Flagged")
    thumb = page.get_by_role("slider").first
    thumb.focus()
    for _ in range(20):
        thumb.press("ArrowRight")
    page.wait_for_function(
        "(before) => { const v = document.querySelector('[data-testid=\"stMetricValue\"]'); return v && v.innerText !== before; }",
        arg=before,
    )
    wait_until_idle(page)
    assert int(metric_text(page, "Flagged").replace(",", "")) > int(before.replace(",", ""))
    screenshot(page, browser_run, "2-distributions")


def test_flagged_pairs_export(page, server_url, browser_run, tmp_path):
    open_page(page, f"{server_url}/flagged_pairs", "Flagged pairs")
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    screenshot(page, browser_run, "3-flagged-pairs")

    folder = page.get_by_label("Folder to write to")
    folder.fill(str(tmp_path))
    folder.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Write pairs-cleaned.csv").click()
    page.get_by_text("Wrote", exact=False).wait_for()
    written = tmp_path / "pairs-cleaned.csv"
    assert written.is_file()
    assert written.read_text().startswith("pair_id,")
    page.get_by_text("Wrote", exact=False).scroll_into_view_if_needed()
    screenshot(page, browser_run, "3b-flagged-pairs-export")


def lasso_whole_plot(page) -> None:
    """Drag a lasso along the edges of the map's plotting area, which selects every drawn point."""
    area = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.bounding_box()
    left, top = area["x"] + 3, area["y"] + 3
    right, bottom = area["x"] + area["width"] - 3, area["y"] + area["height"] - 3
    page.mouse.move(left, top)
    page.mouse.down()
    for x, y in ((right, top), (right, bottom), (left, bottom), (left, top + 5)):
        page.mouse.move(x, y, steps=12)
    page.mouse.up()


def test_embedding_map_selection(page, server_url, browser_run):
    open_page(page, f"{server_url}/embedding_map", "Embedding map")
    page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.wait_for()
    screenshot(page, browser_run, "4-embedding-map")

    lasso_whole_plot(page)
    page.get_by_text(re.compile(r"^[\d,]+ points selected")).wait_for()
    wait_until_idle(page)
    assert page.get_by_role("button", name="Link").count() >= 1
    page.get_by_role("button", name="Link").first.click()
    wait_until_idle(page)
    assert page.get_by_label("Link a pair's image and caption (pair id)").input_value() != ""
    screenshot(page, browser_run, "4b-embedding-map-selection")


def test_text_search(page, server_url, browser_run):
    open_page(page, f"{server_url}/search", "Search")
    query = page.get_by_label("Describe the image you are looking for")
    query.fill("a red circle")
    query.press("Enter")
    page.get_by_text("query encoding", exact=False).wait_for()
    wait_until_idle(page)
    assert page.locator('[data-testid="stImage"]').count() >= 10
    screenshot(page, browser_run, "5-search")
