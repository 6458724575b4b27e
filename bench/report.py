"""Regenerate the tables and key numbers of docs/benchmarks.md from bench/results/*.json.

The doc marks each generated block with ``<!-- generated:NAME -->`` and ``<!-- /generated -->``.
This script replaces what lies between the two markers and leaves every other line as written.

    python bench/report.py                 # rewrite docs/benchmarks.md in place
    python bench/report.py --check         # exit 1 and print a diff when the doc is out of date
    python bench/report.py --results-dir /tmp/results --output /tmp/benchmarks.md
"""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))  # report_search reads SearchIndex's constants from srem_core

import report_app  # noqa: E402
import report_core  # noqa: E402
import report_search  # noqa: E402
import report_steps  # noqa: E402
from report_format import ResultsFolder  # noqa: E402

logger = logging.getLogger("report")

DEFAULT_RESULTS = BENCH_DIR / "results"
DEFAULT_DOC = REPO_ROOT / "docs" / "benchmarks.md"
START = "<!-- generated:"
END = "<!-- /generated -->"
START_LINE = re.compile(r"^<!-- generated:", re.M)
"""Markers count only at the start of a line, so prose can quote a marker in backticks."""
BLOCK = re.compile(
    r"^(?P<start><!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)^(?P<end><!-- /generated -->)$", re.S | re.M
)


class ReportError(ValueError):
    """The doc's markers do not match the known blocks (unknown, missing, repeated or unclosed)."""


def all_blocks() -> dict:
    """Return every block name -> function of a ResultsFolder that returns the block's lines."""
    registry: dict = {}
    for module in (report_core, report_steps, report_search, report_app):
        for name, render in module.blocks().items():
            if name in registry:
                raise ReportError(f"block {name!r} is defined twice (again in {module.__name__})")
            registry[name] = render
    return registry


def render(doc: str, results_dir: Path, registry: dict | None = None) -> str:
    """Return ``doc`` with the content of every generated block rendered from ``results_dir``."""
    registry = all_blocks() if registry is None else registry
    folder = ResultsFolder(results_dir)
    seen: list[str] = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in registry:
            raise ReportError(f"unknown generated block {name!r} in the doc; known blocks: {', '.join(sorted(registry))}")
        if START_LINE.search(match["body"]):
            raise ReportError(f"block {name!r} is not closed with {END} before the next block starts")
        seen.append(name)
        lines = registry[name](folder)
        body = "\n" + "\n".join(lines) + "\n\n" if lines else ""
        return match["start"] + body + match["end"]

    rendered = BLOCK.sub(replace, doc)
    starts = len(START_LINE.findall(doc))
    if starts != len(seen):
        raise ReportError(f"the doc has {starts} lines starting with {START} but only {len(seen)} closed blocks")
    repeated = sorted({name for name in seen if seen.count(name) > 1})
    if repeated:
        raise ReportError(f"blocks appear more than once in the doc: {', '.join(repeated)}")
    missing = [name for name in registry if name not in seen]
    if missing:
        raise ReportError(
            f"the doc lacks blocks {', '.join(missing)}; add a {START}NAME --> line and a {END} line for each"
        )
    return rendered


def diff(current: str, expected: str, path: Path) -> str:
    return "".join(difflib.unified_diff(
        current.splitlines(keepends=True), expected.splitlines(keepends=True),
        fromfile=f"{path} (as committed)", tofile=f"{path} (rendered from the results)",
    ))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS,
                        help="folder with the results JSON files (default bench/results)")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC,
                        help="markdown file whose generated blocks are rendered (default docs/benchmarks.md)")
    parser.add_argument("--output", type=Path, help="write the rendered doc here instead of rewriting --doc")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and print a diff when --doc differs from the rendered doc")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every build it tries at INFO
    if not args.doc.is_file():
        logger.error("doc %s not found; pass --doc with the markdown file that contains the generated blocks", args.doc)
        return 2
    current = args.doc.read_text()
    try:
        rendered = render(current, args.results_dir)
    except ReportError as error:
        logger.error("cannot render %s: %s", args.doc, error)
        return 2
    if args.check:
        if rendered == current:
            logger.info("%s is up to date with %s", args.doc, args.results_dir)
            return 0
        sys.stdout.write(diff(current, rendered, args.doc))
        logger.error("%s is out of date with %s; run python bench/report.py to regenerate it", args.doc, args.results_dir)
        return 1
    output = args.output or args.doc
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(rendered)
    logger.info("wrote %s from %s", output, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
