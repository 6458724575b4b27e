"""AppTest runs of every page of the app on a small synthetic run."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from app_helpers import SYNTHETIC_PAIRS, edit_config, make_synthetic_run
from PIL import Image

from srem_core.runs import load_run

DISTRIBUTIONS = "pages/distributions.py"
FLAGGED = "pages/flagged_pairs.py"
MAP = "pages/embedding_map.py"
SEARCH = "pages/search.py"

pytestmark = pytest.mark.slow


def metric_value(app, label: str) -> str:
    values = [metric.value for metric in app.metric if metric.label == label]
    assert values, f"no metric labelled {label!r}; labels: {[metric.label for metric in app.metric]}"
    return values[0]


def as_int(text: str) -> int:
    return int(text.replace(",", ""))


def assert_clean(app) -> None:
    assert not app.exception, [element.value for element in app.exception]
    assert not app.error, [element.value for element in app.error]


def table_with(app, *columns: str) -> pd.DataFrame:
    """Return the first table that has all ``columns`` (tables without selection carry no key)."""
    for frame in app.dataframe:
        value = frame.value
        if all(column in value.columns for column in columns):
            return value
    raise AssertionError(f"no table with columns {columns}; tables: {[list(f.value.columns) for f in app.dataframe]}")


def png_bytes(size=(64, 64), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "white" if mode == "RGB" else 0).save(buffer, "PNG")
    return buffer.getvalue()


# -- overview -----------------------------------------------------------------------------------


def test_overview_shows_headline_numbers(app_on, synthetic_run):
    app = app_on(synthetic_run)
    scores = load_run(synthetic_run).scores
    assert_clean(app)
    assert app.title[0].value == "Overview"
    assert as_int(metric_value(app, "Pairs")) == len(scores)
    assert as_int(metric_value(app, "Flagged pairs")) == int(scores["is_noisy"].sum())
    assert metric_value(app, "Flag threshold") == "0.50"
    assert metric_value(app, "Estimated noise rate").endswith("%")
    assert metric_value(app, "Precision") != "–"
    assert float(metric_value(app, "rSum")) > 0
    assert app.get("plotly_chart"), "training curves are missing"
    assert app.json, "the run's config is missing"


def test_overview_without_ground_truth(app_on, tmp_path):
    run = make_synthetic_run(tmp_path / "clean-run", 120, "--noise-rate", "0")
    app = app_on(run)
    assert_clean(app)
    assert any("No ground truth" in info.value for info in app.info)


# -- bad run directories ------------------------------------------------------------------------


def test_missing_run_directory_message(app_on, tmp_path):
    app = app_on(tmp_path / "nowhere")
    assert not app.exception
    assert "not found" in app.error[0].value
    assert "srem train" in app.error[0].value


def test_incomplete_run_message(app_on, writable_run):
    (writable_run / "scores.parquet").unlink()
    app = app_on(writable_run)
    assert not app.exception
    assert "incomplete" in app.error[0].value
    assert "scores.parquet" in app.error[0].value


def test_old_format_version_message(app_on, writable_run):
    edit_config(writable_run, format_version=0)
    app = app_on(writable_run)
    assert not app.exception
    assert "format version 0" in app.error[0].value
    assert "retrain" in app.error[0].value


def test_damaged_table_message(app_on, writable_run):
    (writable_run / "scores.parquet").write_bytes(b"not parquet")
    app = app_on(writable_run)
    assert not app.exception
    assert "could not be read" in app.error[0].value


def test_missing_demo_run_message(app_on, monkeypatch, tmp_path):
    from app_support import loading

    monkeypatch.setattr(loading, "DEMO_RUN", tmp_path / "demo" / "run")
    app = app_on(None)
    assert not app.exception
    assert "demo run" in app.error[0].value
    assert "srem train" in app.error[0].value


def test_sidebar_path_opens_run(app_on, synthetic_run, writable_run):
    app = app_on(synthetic_run)
    app.sidebar.text_input(key="run_path_input").input(str(writable_run)).run()
    assert_clean(app)
    assert app.session_state["run_path"] == str(writable_run)
    assert str(writable_run.name) in app.caption[0].value


# -- distributions ------------------------------------------------------------------------------


def test_distributions_threshold_changes_counts(app_on, synthetic_run):
    app = app_on(synthetic_run, DISTRIBUTIONS)
    assert_clean(app)
    flagged_before = as_int(metric_value(app, "Flagged"))
    assert flagged_before == int(load_run(synthetic_run).scores["is_noisy"].sum())
    precision_before = metric_value(app, "Precision")

    app.slider(key="clean_prob_threshold").set_value(0.95).run()
    assert_clean(app)
    flagged_after = as_int(metric_value(app, "Flagged"))
    assert flagged_after > flagged_before
    assert as_int(metric_value(app, "Kept")) == SYNTHETIC_PAIRS - flagged_after
    assert metric_value(app, "Precision") != precision_before


def test_distributions_energy_threshold_adds_flags(app_on, synthetic_run):
    app = app_on(synthetic_run, DISTRIBUTIONS)
    flagged_before = as_int(metric_value(app, "Flagged"))
    energy = load_run(synthetic_run).scores["energy"]
    slider = app.slider(key="energy_threshold")
    step = slider.step
    app.slider(key="energy_threshold").set_value(float(energy.min() + step * round((energy.median() - energy.min()) / step))).run()
    assert_clean(app)
    assert as_int(metric_value(app, "Flagged")) > flagged_before


def test_distributions_epoch_lists_flips(app_on, synthetic_run):
    app = app_on(synthetic_run, DISTRIBUTIONS)
    app.select_slider(key="epoch").set_value(3).run()
    assert_clean(app)
    summary = [markdown.value for markdown in app.markdown if "changed flag" in markdown.value]
    assert summary and "between epoch 2 and epoch 3" in summary[0]
    flips = table_with(app, "change", "clean_prob_before")
    history = load_run(synthetic_run).history
    before = history[history["epoch"] == 2].set_index("pair_id")["is_noisy"]
    after = history[history["epoch"] == 3].set_index("pair_id")["is_noisy"]
    assert len(flips) == int((before != after.reindex(before.index)).sum())


def test_distributions_history_with_pair_index(app_on, writable_run):
    history = pd.read_parquet(writable_run / "history.parquet")
    scores = load_run(writable_run).scores
    row_of = {pair_id: row for row, pair_id in enumerate(scores["pair_id"])}
    history["pair_index"] = history.pop("pair_id").map(row_of).astype("int64")
    history.to_parquet(writable_run / "history.parquet", index=False)
    app = app_on(writable_run, DISTRIBUTIONS)
    app.select_slider(key="epoch").set_value(3).run()
    assert_clean(app)
    flips = table_with(app, "change", "clean_prob_before")
    assert flips["caption"].notna().all()
    assert len(flips) > 0


# -- flagged pairs ------------------------------------------------------------------------------


def flagged_table(app) -> pd.DataFrame:
    tables = [frame for frame in app.dataframe if frame.key and frame.key.startswith("pairs_table_")]
    assert tables, "the flagged-pairs table is missing"
    return tables[0].value


def test_flagged_table_lists_flagged_pairs(app_on, synthetic_run):
    app = app_on(synthetic_run, FLAGGED)
    assert_clean(app)
    scores = load_run(synthetic_run).scores
    table = flagged_table(app)
    n_flagged = int(scores["is_noisy"].sum())
    assert len(table) == min(50, n_flagged)
    assert table["flagged"].all()
    assert table["clean_prob"].is_monotonic_increasing
    assert table["image"].str.startswith("data:image/webp;base64,").all()
    assert table["why"].str.contains("clean prob").all()
    assert table["best_caption"].notna().all()
    assert any(f"{n_flagged:,} pairs match" in caption.value for caption in app.caption)


def test_flagged_filter_and_sort(app_on, synthetic_run):
    app = app_on(synthetic_run, FLAGGED)
    app.selectbox(key="show").set_value("all")
    app.text_input(key="caption_contains").input("circle")
    app.selectbox(key="sort_by").set_value("per_pair_loss")
    app.toggle(key="descending").set_value(True).run()
    assert_clean(app)
    table = flagged_table(app)
    assert table["caption"].str.contains("circle").all()
    assert table["per_pair_loss"].is_monotonic_decreasing


def test_flagged_pages_through_all_pairs(app_on, synthetic_run):
    app = app_on(synthetic_run, FLAGGED)
    app.selectbox(key="show").set_value("all").run()
    first_page = flagged_table(app)
    pagination = app.pagination[0]
    assert pagination.num_pages == -(-SYNTHETIC_PAIRS // 50)
    pagination.set_value(2).run()
    assert_clean(app)
    second_page = flagged_table(app)
    assert not set(first_page["pair_id"]) & set(second_page["pair_id"])
    assert any("rows 51–100" in caption.value for caption in app.caption)


def test_decision_saved_and_reloaded(app_on, writable_run):
    app = app_on(writable_run, FLAGGED)
    pair_id = app.selectbox(key="inspect_pair").value
    app.button(key="confirm_one").click().run()
    assert_clean(app)
    assert load_run(writable_run).decisions() == {pair_id: "confirmed_noisy"}

    reopened = app_on(writable_run, FLAGGED)
    assert any("confirmed noisy" in caption.value for caption in reopened.caption)
    assert flagged_table(reopened).set_index("pair_id").loc[pair_id, "decision"] == "confirmed noisy"

    reopened.button(key="clear_one").click().run()
    assert load_run(writable_run).decisions() == {pair_id: "cleared"}
    assert pair_id not in set(flagged_table(reopened)["pair_id"])

    reopened.selectbox(key="show").set_value("cleared").run()
    assert reopened.selectbox(key="inspect_pair").value == pair_id
    reopened.button(key="undo_one").click().run()
    assert load_run(writable_run).decisions() == {}


def test_page_decisions_change_flagged_set(app_on, writable_run):
    app = app_on(writable_run, FLAGGED)
    page_ids = set(flagged_table(app)["pair_id"])
    app.button(key="clear_page").click().run()
    assert_clean(app)
    assert set(load_run(writable_run).decisions()) == page_ids
    assert not page_ids & set(flagged_table(app)["pair_id"])


def test_decision_save_failure_message(app_on, writable_run, monkeypatch):
    from srem_core.runs import Run

    def refuse(self, decisions):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Run, "save_decisions", refuse)
    app = app_on(writable_run, FLAGGED)
    app.button(key="confirm_one").click().run()
    assert not app.exception
    assert "Could not save the decision" in app.error[0].value
    assert "writable" in app.error[0].value
    assert not (writable_run / "decisions.json").exists()


def test_export_to_unwritable_folder_message(app_on, writable_run, tmp_path):
    pytest.importorskip("srem_core.export")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = app_on(writable_run, FLAGGED)
    app.text_input(key="export_folder").input(str(blocker / "exports"))
    app.button(key="export_write").click().run()
    assert not app.exception
    assert "Could not write" in app.error[0].value


def test_repair_suggestions_shown(app_on, synthetic_run):
    app = app_on(synthetic_run, FLAGGED)
    suggestions = table_with(app, "similarity", "caption", "pair id")
    assert len(suggestions) == 5
    assert suggestions["similarity"].is_monotonic_decreasing
    assert len(app.image) >= 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_writes_cleaned_manifest(app_on, writable_run, tmp_path, fmt):
    pytest.importorskip("srem_core.export")
    app = app_on(writable_run, FLAGGED)
    out_folder = tmp_path / "exports"
    app.text_input(key="export_folder").input(str(out_folder))
    app.radio(key="export_format").set_value(fmt)
    app.button(key="export_write").click().run()
    assert_clean(app)
    written = out_folder / f"pairs-cleaned.{fmt}"
    assert written.is_file()
    readers = {"csv": pd.read_csv, "jsonl": lambda path: pd.read_json(path, lines=True), "parquet": pd.read_parquet}
    exported = readers[fmt](written)
    scores = load_run(writable_run).scores
    assert len(exported) == int((~scores["is_noisy"]).sum())
    assert any(str(written) in success.value for success in app.success)


def test_export_removed_pairs(app_on, writable_run, tmp_path):
    pytest.importorskip("srem_core.export")
    app = app_on(writable_run, FLAGGED)
    app.text_input(key="export_folder").input(str(tmp_path))
    app.radio(key="export_keep").set_value("noisy")
    app.button(key="export_write").click().run()
    exported = pd.read_csv(tmp_path / "pairs-removed.csv")
    assert set(exported["pair_id"]) == set(load_run(writable_run).scores.query("is_noisy")["pair_id"])


# -- embedding map ------------------------------------------------------------------------------


def test_embedding_map_renders_and_is_saved(app_on, writable_run):
    app = app_on(writable_run, MAP)
    assert_clean(app)
    charts = app.get("plotly_chart")
    assert charts, "the map is missing"
    coordinates = np.load(writable_run / "index" / "embedding_map.npy")
    run = load_run(writable_run)
    assert coordinates.shape == (len(run.images) + len(run.scores), 2)
    assert any("No points selected" in info.value for info in app.info)


def test_embedding_map_colour_and_link(app_on, synthetic_run):
    app = app_on(synthetic_run, MAP)
    pair_id = load_run(synthetic_run).scores["pair_id"].iat[3]
    app.radio(key="colour_by").set_value("category")
    app.text_input(key="link_pair").input(pair_id).run()
    assert_clean(app)
    assert not app.warning
    app.text_input(key="link_pair").input("no-such-pair").run()
    assert "no-such-pair" in app.warning[0].value


# -- search -------------------------------------------------------------------------------------


def test_text_search_returns_hits(app_on, synthetic_run):
    app = app_on(synthetic_run, SEARCH)
    assert_clean(app)
    app.text_input(key="text_query").input("a red circle").run()
    assert_clean(app)
    assert len(app.tabs[0].image) == 10
    latency = [caption.value for caption in app.caption if "query encoding" in caption.value]
    assert latency and latency[0].startswith("10 images in")


def test_dataset_image_search_returns_captions(app_on, synthetic_run):
    app = app_on(synthetic_run, SEARCH)
    app.radio(key="image_source").set_value("dataset")
    app.number_input(key="image_row").set_value(4).run()
    assert_clean(app)
    hits = table_with(app, "similarity", "image")
    assert len(hits) == 10
    assert hits["similarity"].is_monotonic_decreasing


def test_uploaded_image_search(app_on, synthetic_run):
    app = app_on(synthetic_run, SEARCH)
    app.radio(key="image_source").set_value("upload").run()
    app.file_uploader(key="image_upload").set_value(("red.png", png_bytes(), "image/png")).run()
    assert_clean(app)
    hits = table_with(app, "similarity", "image")
    assert len(hits) == 10


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("notes.png", b"this is not an image", "not a readable image"),
        ("empty.webp", b"", "empty"),
        ("bomb.png", None, "decompression bomb"),
        ("huge.jpg", b"\xff" * (20 * 1024 * 1024 + 1), "limited to 20 MB"),
    ],
)
def test_bad_upload_gets_message(app_on, synthetic_run, name, content, expected):
    if content is None:
        content = png_bytes((8_000, 8_000), mode="1")  # 64 megapixels, a few kB compressed
    app = app_on(synthetic_run, SEARCH)
    app.radio(key="image_source").set_value("upload").run()
    app.file_uploader(key="image_upload").set_value((name, content, "image/png")).run()
    assert not app.exception
    assert expected in app.error[0].value
    assert name in app.error[0].value

    app.radio(key="image_source").set_value("dataset").run()
    assert_clean(app)
    assert table_with(app, "similarity", "image").shape[0] == 10


def test_cli_run_argument():
    from app_support.loading import cli_run_path

    assert cli_run_path(["--run", "runs/a"]) == "runs/a"
    assert cli_run_path(["--other", "x"]) is None
    assert cli_run_path([]) is None


def test_discover_runs_finds_nested(tmp_path, synthetic_run):
    from app_support.loading import discover_runs

    (tmp_path / "group" / "one").mkdir(parents=True)
    (tmp_path / "group" / "one" / "config.json").write_text(json.dumps({}))
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "config.json").write_text(json.dumps({}))
    (tmp_path / "two" / "index").mkdir()
    (tmp_path / "two" / "index" / "config.json").write_text(json.dumps({}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "a" / "b" / "too-deep").mkdir(parents=True)
    (tmp_path / "a" / "b" / "too-deep" / "config.json").write_text(json.dumps({}))
    found = discover_runs([tmp_path, tmp_path / "missing"])
    assert found == sorted([(tmp_path / "group" / "one").resolve(), (tmp_path / "two").resolve()])


def test_search_one_drops_unfilled_slots(monkeypatch):
    from app_support import loading

    class PartlyFilledIndex:
        def search(self, queries, k):
            assert queries.shape == (1, 4)
            return np.array([[0.9, 0.5, -np.inf]], dtype=np.float32), np.array([[3, 1, -1]])

    monkeypatch.setattr(loading, "search_index", lambda run, modality: PartlyFilledIndex())
    similarities, rows = loading.search_one(None, "image", np.ones(4, dtype=np.float32), 3)
    assert rows.tolist() == [3, 1]
    assert similarities.tolist() == pytest.approx([0.9, 0.5])
