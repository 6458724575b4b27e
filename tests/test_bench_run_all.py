"""bench/run_all.py: step selection, run order, output paths and failure reporting, with fake tiny scripts."""

import logging
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402

FAKE_SCRIPT = """import sys
from pathlib import Path
with open({log!r}, "a") as log:
    log.write({name!r} + " " + " ".join(sys.argv[1:]) + "\\n")
sys.exit({code})
"""


def fake_step(folder: Path, name: str, group: str | None = None, code: int = 0) -> run_all.Step:
    """Return a step whose script appends its name and arguments to folder/calls.log, then exits with ``code``."""
    script = folder / f"{name}.py"
    script.write_text(FAKE_SCRIPT.format(log=str(folder / "calls.log"), name=name, code=code))
    return run_all.Step(name, group or name, script, "--out", f"{name}.json", quick_args=("--quick",))


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture()
def fake_steps(tmp_path, monkeypatch):
    steps = (fake_step(tmp_path, "first"), fake_step(tmp_path, "second", code=3), fake_step(tmp_path, "third"))
    monkeypatch.setattr(run_all, "STEPS", steps)
    monkeypatch.setattr(run_all, "REPORT_SCRIPT", fake_step(tmp_path, "report").script)
    return tmp_path


def test_only_runs_named_steps_in_order_then_report(fake_steps):
    results = fake_steps / "results"
    assert run_all.main(["--only", "third", "first", "--results-dir", str(results)]) == 0
    names = [line.split()[0] for line in calls(fake_steps)]
    assert names == ["first", "third", "report"]
    assert calls(fake_steps)[0] == f"first --out {results / 'first.json'}"
    assert f"--results-dir {results}" in calls(fake_steps)[2]


def test_failing_step_stops_run_and_is_named(fake_steps, caplog):
    with caplog.at_level(logging.ERROR, logger="run_all"):
        code = run_all.main(["--results-dir", str(fake_steps / "results")])
    assert code == 1
    assert [line.split()[0] for line in calls(fake_steps)] == ["first", "second"]
    assert "step second failed" in caplog.text
    assert "second.py exited with code 3" in caplog.text


def test_keep_going_runs_rest_and_report(fake_steps, caplog):
    with caplog.at_level(logging.ERROR, logger="run_all"):
        code = run_all.main(["--keep-going", "--results-dir", str(fake_steps / "results")])
    assert code == 1
    assert [line.split()[0] for line in calls(fake_steps)] == ["first", "second", "third", "report"]
    assert "failed steps: second" in caplog.text


def test_quick_uses_temporary_folder_and_report_output(fake_steps, tmp_path, monkeypatch):
    monkeypatch.setattr(run_all.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "quick"))
    assert run_all.main(["--quick", "--skip", "second", "--doc", str(tmp_path / "doc.md")]) == 0
    lines = calls(fake_steps)
    assert lines[0] == f"first --quick --out {tmp_path / 'quick' / 'first.json'}"
    assert lines[-1].endswith(f"--doc {tmp_path / 'doc.md'} --output {tmp_path / 'quick' / 'benchmarks.md'}")


def test_report_only_runs_no_benchmark(fake_steps):
    assert run_all.main(["--report-only", "--results-dir", str(fake_steps / "results")]) == 0
    assert [line.split()[0] for line in calls(fake_steps)] == ["report"]


def test_missing_script_is_a_named_failure(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(run_all, "STEPS", (run_all.Step("ghost", "ghost", tmp_path / "ghost.py", "--out", "g.json"),))
    with caplog.at_level(logging.ERROR, logger="run_all"):
        assert run_all.main(["--results-dir", str(tmp_path)]) == 1
    assert f"step ghost failed: script {tmp_path / 'ghost.py'} not found" in caplog.text


def test_unknown_step_name_is_rejected(caplog):
    with caplog.at_level(logging.ERROR, logger="run_all"):
        assert run_all.main(["--only", "nosuch"]) == 2
    assert "unknown step nosuch" in caplog.text


def test_group_name_selects_all_its_steps():
    names = [step.name for step in run_all.select_steps(run_all.STEPS, ["search", "app"], None)]
    assert names == ["search", "search-one-blas-thread", "search-real", "app"]
    skipped = [step.name for step in run_all.select_steps(run_all.STEPS, None, ["streaming-1m", "core"])]
    assert "streaming-100k" in skipped
    assert "streaming-1m" not in skipped
    assert "core" not in skipped


def test_default_folder_omits_output_option():
    step = next(step for step in run_all.STEPS if step.name == "search-real")
    assert step.command(run_all.DEFAULT_RESULTS, quick=False)[1:] == ["bench/bench_search.py", "--real", "demo/run"]
    assert step.command(Path("/tmp/r"), quick=False)[-2:] == ["--output", "/tmp/r/search_umap.json"]


def test_quick_app_run_builds_inside_results_folder():
    step = next(step for step in run_all.STEPS if step.name == "app")
    command = step.command(Path("/tmp/r"), quick=True)
    assert command[command.index("--run-dir") + 1] == "/tmp/r/bench-app-run"
    assert command[-2:] == ["--out", "/tmp/r/app.json"]
