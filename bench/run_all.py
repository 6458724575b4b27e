"""Run every benchmark script in sequence, then regenerate docs/benchmarks.md with report.py.

    python bench/run_all.py                        # every step, then the report: about 2.5 hours on 2 busy cores
    python bench/run_all.py --quick                # smoke runs into a temporary folder; the doc is not touched
    python bench/run_all.py --only search umap     # some steps, then the report
    python bench/run_all.py --skip core app        # every step but these, then the report
    python bench/run_all.py --report-only          # only report.py

Each step runs as its own subprocess and writes its JSON under the results folder. A step that fails
stops the run with an error naming its script, unless --keep-going is given. --only and --skip take
step names or script groups: "search" selects all three search steps, "streaming" both sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_RESULTS = BENCH_DIR / "results"
DEFAULT_DOC = REPO_ROOT / "docs" / "benchmarks.md"
REPORT_SCRIPT = BENCH_DIR / "report.py"
RESULTS_PLACEHOLDER = "{results}"
"""Replaced in a step's arguments by the results folder of the run."""

logger = logging.getLogger("run_all")


@dataclasses.dataclass(frozen=True)
class Step:
    """One benchmark command: a script, its arguments for a full and a smoke run, and where it writes."""

    name: str
    group: str
    script: Path
    output_option: str
    output_file: str
    full_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)
    expected_minutes: float | None = None
    """Expected minutes of the full run on the 2-core development machine, or None where nothing is known
    yet. bench/README.md lists which values were measured and which are estimates."""

    def command(self, results_dir: Path, quick: bool) -> list[str]:
        """Return the command line. The output option is left out for a full run into bench/results,
        so the command that the script records in its JSON is the plain one that the doc shows."""
        arguments = [argument.replace(RESULTS_PLACEHOLDER, str(results_dir))
                     for argument in (self.quick_args if quick else self.full_args)]
        if quick or results_dir.resolve() != DEFAULT_RESULTS:
            arguments += [self.output_option, str(results_dir / self.output_file)]
        return [sys.executable, shown_path(self.script), *arguments]


def shown_path(path: Path) -> str:
    """Return ``path`` relative to the repository root when it lies inside it (commands run from there)."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


SEARCH_ONE_BLAS_THREAD = ("--kinds", "exact", "--blas-threads", "1", "--section", "search_exact_one_blas_thread")

STEPS = (
    Step("core", "core", BENCH_DIR / "bench_core.py", "--out", "core.json", expected_minutes=60),
    Step("steps", "steps", BENCH_DIR / "bench_steps.py", "--out", "steps.json", expected_minutes=5),
    Step("encoders", "encoders", BENCH_DIR / "bench_encoders.py", "--out", "encoders.json", expected_minutes=10),
    Step("search", "search", BENCH_DIR / "bench_search.py", "--output", "search_umap.json", expected_minutes=45),
    Step("search-one-blas-thread", "search", BENCH_DIR / "bench_search.py", "--output", "search_umap.json",
         full_args=(*SEARCH_ONE_BLAS_THREAD, "--sizes", "10000", "100000", "200000"),
         quick_args=("--quick", *SEARCH_ONE_BLAS_THREAD), expected_minutes=3),
    Step("search-real", "search", BENCH_DIR / "bench_search.py", "--output", "search_umap.json",
         full_args=("--real", "demo/run"), quick_args=("--quick", "--real", "demo/run"), expected_minutes=0.5),
    Step("umap", "umap", BENCH_DIR / "bench_umap.py", "--output", "search_umap.json", expected_minutes=11),
    Step("streaming-100k", "streaming", BENCH_DIR / "bench_streaming.py", "--output", "streaming.json",
         full_args=("--quick",), quick_args=("--rows", "10000"), expected_minutes=1),
    Step("streaming-1m", "streaming", BENCH_DIR / "bench_streaming.py", "--output", "streaming.json",
         quick_args=("--rows", "20000"), expected_minutes=2),
    Step("app", "app", BENCH_DIR / "bench_app.py", "--out", "app.json",
         quick_args=("--pairs", "5000", "--repeats", "1", "--queries", "10",
                     "--run-dir", f"{RESULTS_PLACEHOLDER}/bench-app-run"),
         expected_minutes=15),
)
"""Every benchmark in the order run_all runs them. The two quick streaming sizes differ, so a smoke run
still writes two entries. The quick app run builds its synthetic run inside the results folder, so it
leaves the recorded 100,000-pair run in runs/bench-app alone."""


class StepFailed(RuntimeError):
    """A benchmark or the report exited with a non-zero status, or its script is missing."""


def select_steps(steps, only: list[str] | None, skip: list[str] | None) -> list[Step]:
    """Return the steps named in ``only`` (all when None), minus those in ``skip``, in run order."""
    known = {step.name for step in steps} | {step.group for step in steps}
    unknown = sorted((set(only or []) | set(skip or [])) - known)
    if unknown:
        raise ValueError(f"unknown step {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    chosen = [step for step in steps if only is None or step.name in only or step.group in only]
    return [step for step in chosen if not skip or (step.name not in skip and step.group not in skip)]


def run_command(name: str, command: list[str]) -> float:
    """Run one step's command from the repository root; return its seconds, or raise StepFailed."""
    script = command[1]
    if not (REPO_ROOT / script).is_file():
        raise StepFailed(f"step {name} failed: script {script} not found")
    logger.info("step %s: %s", name, " ".join(command))
    started = time.perf_counter()
    returncode = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
    seconds = time.perf_counter() - started
    logger.info("step %s finished in %.1f s with exit code %d", name, seconds, returncode)
    if returncode != 0:
        raise StepFailed(f"step {name} failed: {script} exited with code {returncode} after {seconds:.1f} s")
    return seconds


def report_command(results_dir: Path, doc: Path, output: Path | None) -> list[str]:
    command = [sys.executable, shown_path(REPORT_SCRIPT), "--results-dir", str(results_dir), "--doc", str(doc)]
    return command + (["--output", str(output)] if output else [])


def run(steps: list[Step], results_dir: Path, quick: bool, keep_going: bool, report: list[str]) -> list[str]:
    """Run ``steps`` in order, then ``report``; return the names of the failed steps.

    Without ``keep_going`` the first failure raises StepFailed and nothing after it runs.
    """
    failed = []
    for position, step in enumerate(steps, start=1):
        expected = "" if quick or step.expected_minutes is None else f" (expected: about {step.expected_minutes:g} min)"
        logger.info("starting step %d/%d: %s%s", position, len(steps), step.name, expected)
        try:
            run_command(step.name, step.command(results_dir, quick))
        except StepFailed as error:
            if not keep_going:
                raise
            logger.error("%s; continuing because of --keep-going", error)
            failed.append(step.name)
    try:
        run_command("report", report)
    except StepFailed as error:
        if not keep_going:
            raise
        logger.error("%s", error)
        failed.append("report")
    return failed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="each script's smoke run, into a temporary results folder (unless --results-dir), "
                             "and the report into benchmarks.md in that folder instead of --doc")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these steps or groups")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="leave out these steps or groups")
    parser.add_argument("--report-only", action="store_true", help="run no benchmark, only report.py")
    parser.add_argument("--keep-going", action="store_true",
                        help="run the remaining steps and the report after a failed step; exit 1 at the end")
    parser.add_argument("--results-dir", type=Path,
                        help="folder for the results JSON files (default bench/results, or a new temporary folder with --quick)")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC,
                        help="markdown file with the generated blocks (default docs/benchmarks.md); "
                             "rewritten in place except with --quick")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.quick and args.report_only and args.results_dir is None:
        logger.error("--report-only with --quick requires --results-dir, because a new temporary folder contains no results")
        return 2
    try:
        steps = [] if args.report_only else select_steps(STEPS, args.only, args.skip)
    except ValueError as error:
        logger.error("%s", error)
        return 2

    results_dir = args.results_dir or (Path(tempfile.mkdtemp(prefix="srem_bench_quick_")) if args.quick else DEFAULT_RESULTS)
    results_dir.mkdir(parents=True, exist_ok=True)
    output = results_dir / "benchmarks.md" if args.quick else None
    logger.info("running %s into %s", ", ".join(step.name for step in steps) or "no benchmark", results_dir)
    started = time.perf_counter()
    try:
        failed = run(steps, results_dir, args.quick, args.keep_going, report_command(results_dir, args.doc, output))
    except StepFailed as error:
        logger.error("%s; stopping (use --keep-going to run the remaining steps)", error)
        return 1
    minutes = (time.perf_counter() - started) / 60
    if failed:
        logger.error("finished in %.1f min; failed steps: %s", minutes, ", ".join(failed))
        return 1
    logger.info("finished in %.1f min; report: %s", minutes, output or args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
