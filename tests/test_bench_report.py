"""bench/report.py: the committed doc matches the committed results, and hand-made results render as expected."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from report_format import by_magnitude, fixed, significant  # noqa: E402

DOC = BENCH.parent / "docs" / "benchmarks.md"


def block(rendered: str, name: str) -> list[str]:
    """Return the non-empty lines between one block's markers."""
    start = rendered.index(f"<!-- generated:{name} -->\n") + len(f"<!-- generated:{name} -->\n")
    end = rendered.index("<!-- /generated -->", start)
    return [line for line in rendered[start:end].splitlines() if line]


def write_json(folder: Path, name: str, content: dict) -> None:
    (folder / name).write_text(json.dumps(content))


def test_committed_doc_matches_committed_results():
    assert report.render(DOC.read_text(), BENCH / "results") == DOC.read_text()


def test_check_exits_1_with_diff_on_stale_doc(tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC.read_text().replace("| InfoNCE | 0.587", "| InfoNCE | 0.999", 1))
    assert report.main(["--check", "--doc", str(doc)]) == 1
    output = capsys.readouterr().out
    assert "-| InfoNCE | 0.999" in output
    assert "+| InfoNCE | 0.587" in output
    assert doc.read_text().count("0.999") == 1  # --check writes nothing


def test_check_exits_0_on_current_doc(tmp_path):
    doc = tmp_path / "benchmarks.md"
    shutil.copy(DOC, doc)
    assert report.main(["--check", "--doc", str(doc)]) == 0


def test_output_option_leaves_doc_alone(tmp_path):
    doc, output = tmp_path / "benchmarks.md", tmp_path / "rendered.md"
    doc.write_text(DOC.read_text().replace("| InfoNCE | 0.587", "| InfoNCE | 0.999", 1))
    assert report.main(["--doc", str(doc), "--output", str(output)]) == 0
    assert "0.999" in doc.read_text()
    assert output.read_text() == DOC.read_text()


def test_unknown_block_is_rejected(tmp_path):
    doc = DOC.read_text() + "\n<!-- generated:no-such-table -->\n<!-- /generated -->\n"
    with pytest.raises(report.ReportError, match="unknown generated block 'no-such-table'"):
        report.render(doc, tmp_path)


def test_missing_block_is_rejected(tmp_path):
    doc = DOC.read_text().replace("<!-- generated:umap-table -->\n", "", 1)
    with pytest.raises(report.ReportError, match="umap-table"):
        report.render(doc, tmp_path)


def test_unclosed_block_is_rejected(tmp_path):
    doc = DOC.read_text() + "\n<!-- generated:core-main -->\n"
    with pytest.raises(report.ReportError):
        report.render(doc, tmp_path)


def test_empty_results_folder_says_not_measured(tmp_path):
    rendered = report.render(DOC.read_text(), tmp_path)
    assert block(rendered, "encoders-run") == ["Not measured yet: run `python bench/bench_encoders.py`."]
    assert block(rendered, "encoders-table") == []
    assert block(rendered, "core-run") == ["Not measured yet: run `python bench/bench_core.py`."]
    assert block(rendered, "core-main") == []


def metrics(auroc, rsum, epoch, scoring, val=None):
    return {"detection_auroc": auroc, "test_rsum": rsum, "epoch_seconds": epoch, "scoring_seconds": scoring, "val_rsum": val}


@pytest.fixture()
def results(tmp_path):
    write_json(tmp_path, "core.json", {
        "machine": {"cpu": "Test CPU", "cores": 4, "python": "3.11.0", "torch": "2.0"}, "date": "2026-01-02",
        "command": "python bench/bench_core.py", "threads": 1, "load_average": [1.0, 2.0, 3.0],
        "table": {
            "srem|0.4|0": metrics(0.8, 200.0, 1.0, 0.5), "srem|0.4|1": metrics(0.9, 210.0, 3.0, 0.7),
            "infonce|0.4|0": metrics(0.5, 150.0, 0.5, 0.1), "infonce|0.4|1": metrics(0.6, 160.0, 0.5, 0.1),
            "ncr|0.4|0": metrics(0.7, 190.0, 2.0, 1.0), "ncr|0.4|1": metrics(0.7, 200.0, 2.0, 1.0),
            "clean_only|0.4|0": metrics(math.nan, 240.0, 0.5, 0.1), "clean_only|0.4|1": metrics(math.nan, 250.0, 0.5, 0.1),
        },
        "ablation": {
            "zzz custom variant|0": metrics(0.6, 100.0, 1.0, 0.5, 110.0),
            "shipped defaults|0": metrics(0.8, 200.0, 1.0, 0.5, 220.0),
            "shipped defaults|1": metrics(0.9, 210.0, 1.0, 0.5, 230.0),
        },
    })
    write_json(tmp_path, "steps.json", {
        "machine": {"cpu": "Test CPU", "cores": 4, "python": "3.11.0", "torch": "2.0", "torch_threads": 4},
        "date": "2026-01-02", "command": "python bench/bench_steps.py",
        "steps": {"infonce|128": 0.004, "srem (shipped defaults)|128": 0.005, "ncr (2 networks)|128": 0.010},
        "matmul_flops_per_second": 100e9,
        "scoring": [{"n_pairs": 1000, "batch_size": 128, "seconds": 0.1, "flops_per_second": 2 * 1000 * 128 * 256 / 0.1}],
    })
    write_json(tmp_path, "encoders.json", {
        "machine": {"cpu": "Test CPU", "cores": 4, "python": "3.11.0", "torch": "2.0"}, "date": "2026-01-02",
        "command": "python bench/bench_encoders.py", "load_average": [0.5, 0.25, 0.125], "torch_threads": 2,
        "rows": [
            {"encoder": "enc", "modality": "images", "batch_size": 32, "items": 100, "repeats": 3,
             "seconds_median": 0.5, "items_per_second": 200.0, "peak_rss_mib": 1234.4},
            {"encoder": "enc", "modality": "texts", "batch_size": 32, "items": 100, "repeats": 3,
             "seconds_median": 8.1, "items_per_second": 12.345, "peak_rss_mib": 1234.4},
        ],
    })
    search_row = {"kind": "ivf", "n_vectors": 5000, "n_lists": 100, "build_seconds_median": 1.234,
                  "build_seconds_all": [1.0, 1.234, 2.0], "search_param": 100, "tuned_recall_at_10": 0.9,
                  "single_query_ms_median": 12.34, "single_query_ms_p90": 20.0, "batch_100_ms_median": 123.4,
                  "recall_at_10": 0.91, "peak_rss_mib": 500.0, "rss_after_loading_data_mib": 400.0}
    write_json(tmp_path, "search_umap.json", {"search": {"date": "2026-01-02T10:00:00+00:00", "command": "python bench/bench_search.py",
                                                        "machine": {"cpu_model": "Test CPU"}, "results": [search_row]}})
    return tmp_path


def test_core_tables_show_mean_std_and_medians(results):
    rendered = report.render(DOC.read_text(), results)
    main = block(rendered, "core-main")
    assert main[0] == "| method | AUROC 40% | rSum 40% |"
    assert "| SREM (shipped defaults) | 0.850 ± 0.071 | 205.0 ± 7.1 |" in main
    assert "| InfoNCE | 0.550 ± 0.071 | 155.0 ± 7.1 |" in main
    assert "| clean-only reference | n/a | 245.0 ± 7.1 |" in main
    assert not any(line.startswith("| VSE++ triplet") for line in main)
    epoch = block(rendered, "core-epoch")
    assert "| SREM (shipped defaults) | 2.00 | 0.60 | 1.00 |" in epoch
    assert "| ncr (NCR-style, 2 networks) | 2.00 | 1.00 | 1.00 |" in epoch
    ablation = block(rendered, "core-ablation")
    assert ablation[2] == "| shipped defaults | 0.850 ± 0.071 | 205.0 ± 7.1 | 225.0 ± 7.1 |"
    assert ablation[3] == "| zzz custom variant | 0.600 | 100.0 | 110.0 |"


def test_core_key_numbers_compute_gap_closed(results):
    numbers = "\n".join(block(report.render(DOC.read_text(), results), "core-key-numbers"))
    assert "closes 56% of the gap between InfoNCE (155.0) and the clean-only reference (245.0); target half: met" in numbers
    assert "(per seed: 200.0, 210.0)" in numbers
    assert "takes 1.00 times the ncr epoch (target 0.6: missed)" in numbers


def test_run_line_names_machine_command_and_load(results):
    line = block(report.render(DOC.read_text(), results), "core-run")[0]
    assert line.startswith("Machine: Test CPU (4 cores), Python 3.11.0, torch 2.0 (1 torch thread for training). ")
    assert "Date: 2026-01-02. Command: `python bench/bench_core.py`." in line
    assert line.endswith("Load average (1, 5, 15 min): 1.00, 2.00, 3.00 at the start.")


def test_steps_table_ratios_and_scoring_share(results):
    rendered = report.render(DOC.read_text(), results)
    steps = block(rendered, "steps-table")
    assert steps[2:] == [
        "| infonce | 4.00 | 1.00 |",
        "| srem (shipped defaults) | 5.00 | 1.25 |",
        "| ncr (2 networks) | 10.00 | 2.50 |",
    ]
    scoring = block(rendered, "steps-scoring")
    assert scoring[0] == "Raw float32 matrix product, (4096 x 256) @ (256 x 4096): 100.0 GFLOP/s."
    assert scoring[1].startswith("| scoring pass (1,000 pairs, D = 256) |")
    assert scoring[3] == "| batch 128 | 0.100 | 0.7 | 1% |"
    assert "Target for SREM at this batch size: 1.15, missed." in "\n".join(block(rendered, "steps-key-numbers"))


def test_encoder_table_rows(results):
    rendered = report.render(DOC.read_text(), results)
    assert block(rendered, "encoders-table") == [
        "| encoder | modality | batch | items/s (median of repeats) | peak RSS MiB |",
        "|---|---|---|---|---|",
        "| enc | images | 32 | 200 | 1,234 |",
        "| enc | texts | 32 | 12.3 | 1,234 |",
    ]
    assert "2.0 (2 threads)" in block(rendered, "encoders-run")[0]


def test_search_row_marks_all_lists_and_missed_target(results):
    rendered = report.render(DOC.read_text(), results)
    assert block(rendered, "search-table")[2] == (
        "| 5,000 | ivf | 1.23 | nprobe 100 (all lists, target missed) | 12.3 / 20.0 | 123 | 0.910 | 500 | 100 |"
    )
    assert block(rendered, "search-blas-run") == [
        "Not measured yet: run `python bench/bench_search.py --kinds exact --blas-threads 1 "
        "--section search_exact_one_blas_thread`."
    ]


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [(53.55, 1, "53.6"), (0.9705, 3, "0.971"), (8.05, 1, "8.1"), (783.5, 0, "784"), (2.0, 2, "2.00")],
)
def test_fixed_rounds_half_up_from_decimal_form(value, decimals, expected):
    assert fixed(value, decimals) == expected


def test_significant_and_magnitude_formats():
    assert significant(14.0654) == "14.1"
    assert significant(496.49) == "496"
    assert significant(1234.5) == "1,235"
    assert by_magnitude(0.003) == "< 0.01"
    assert by_magnitude(1027.79) == "1,028"
