"""Unit tests of app_support.analysis on small hand-made score tables."""

from __future__ import annotations

import app_helpers  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
import pandas as pd
import pytest

from app_support import analysis


def scores_table() -> pd.DataFrame:
    """Six pairs: p0-p2 training pairs with known truth, p3 training, p4-p5 validation (truth unknown)."""
    return pd.DataFrame(
        {
            "pair_id": ["p0", "p1", "p2", "p3", "p4", "p5"],
            "image_index": [0, 0, 1, 2, 3, 3],
            "caption": ["a red circle", "a blue square", "a red square", "a cat", "a dog", "a Red car"],
            "category": ["circle", "square", "square", None, None, "car"],
            "split": ["train", "train", "train", "train", "val", "val"],
            "clean_prob": np.array([0.9, 0.2, 0.4, 0.8, 0.1, 0.7], dtype=np.float32),
            "energy": np.array([-1.0, -0.2, -0.5, -0.9, -0.1, -0.6], dtype=np.float32),
            "swapped_entropy": np.array([0.1, 2.0, 1.0, 0.3, 2.5, 0.4], dtype=np.float32),
            "per_pair_loss": np.array([0.1, 3.0, 1.5, 0.2, 4.0, 0.5], dtype=np.float32),
            "is_noisy": [False, True, True, False, True, False],
            "is_injected_noise": pd.array([False, True, False, True, None, None], dtype="boolean"),
        }
    )


def test_noise_threshold_prefers_final_record():
    meta = {"config": {"train": {"noise_threshold": 0.3}}}
    assert analysis.noise_threshold(meta, [{"kind": "final", "threshold": 0.42}]) == 0.42
    assert analysis.noise_threshold(meta, [{"kind": "epoch", "epoch": 1}]) == 0.3
    assert analysis.noise_threshold({}, []) == analysis.DEFAULT_NOISE_THRESHOLD


def test_final_record_accepts_prefixed_names():
    metrics = [{"kind": "epoch", "epoch": 1}, {"kind": "final", "detection_auroc": 0.85, "detection_threshold": 0.4,
                                               "test_rsum": 218.4, "test_i2t_r1": 49.7}]
    final = analysis.final_record(metrics)
    assert final["auroc"] == 0.85
    assert final["threshold"] == 0.4
    assert final["rsum"] == 218.4
    assert final["split"] == "test"
    assert analysis.retrieval_metrics(final) == [("image→text R@1", 49.7), ("rSum", 218.4)]
    assert analysis.noise_threshold({}, metrics) == 0.4
    assert analysis.final_record([{"kind": "final", "auroc": 0.9, "detection_auroc": 0.1}])["auroc"] == 0.9
    assert analysis.final_record([{"kind": "epoch"}]) is None


def test_retrieval_metrics_order():
    final = {"kind": "final", "rsum": 300.0, "i2t_r10": 80.0, "i2t_r1": 40.0, "t2i_r5": 60.0, "auroc": 0.9}
    assert analysis.retrieval_metrics(final) == [
        ("image→text R@1", 40.0), ("image→text R@10", 80.0), ("text→image R@5", 60.0), ("rSum", 300.0)]
    assert analysis.retrieval_metrics(None) == []


def test_epoch_table_sorted_and_empty():
    metrics = [{"kind": "epoch", "epoch": 2, "loss": 1.0}, {"kind": "final"}, {"kind": "epoch", "epoch": 1, "loss": 2.0}]
    assert analysis.epoch_table(metrics)["epoch"].tolist() == [1, 2]
    assert analysis.epoch_table([]).empty


def test_summarize_counts():
    summary = analysis.summarize(scores_table())
    assert summary.n_pairs == 6
    assert summary.n_images == 4
    assert summary.n_flagged == 3
    assert summary.flagged_fraction == pytest.approx(0.5)
    assert summary.estimated_noise_rate == pytest.approx(1 - np.mean([0.9, 0.2, 0.4, 0.8, 0.1, 0.7]), abs=1e-6)
    assert summary.injected_rate == pytest.approx(0.5)


def test_ground_truth_absent_column():
    table = scores_table().drop(columns="is_injected_noise")
    assert not analysis.has_ground_truth(table)
    assert analysis.summarize(table).injected_rate is None


def test_threshold_flags_reproduce_run_flags():
    table = scores_table()
    flags = analysis.threshold_flags(table, 0.5)
    assert flags.tolist() == table["is_noisy"].tolist()


def test_threshold_flags_energy_and_entropy_add_flags():
    table = scores_table()
    assert analysis.threshold_flags(table, 0.0, energy_above=-0.55).tolist() == [False, True, True, False, True, False]
    assert analysis.threshold_flags(table, 0.0, entropy_above=0.35).tolist() == [False, True, True, False, True, True]


def test_detection_counts_against_naive_loop():
    table = scores_table()
    flags = np.array([False, True, True, True, True, False])
    counts = analysis.detection_counts(flags, table)
    known = [False if value is pd.NA else True for value in table["is_injected_noise"]]
    injected = [bool(value) if known_ else False for value, known_ in zip(table["is_injected_noise"], known)]
    true_positives = sum(1 for f, k, i in zip(flags, known, injected) if f and k and i)
    flagged_known = sum(1 for f, k in zip(flags, known) if f and k)
    assert counts.n_flagged == 4
    assert counts.n_kept == 2
    assert counts.n_known == 4
    assert counts.true_positives == true_positives == 2
    assert counts.precision == pytest.approx(true_positives / flagged_known)
    assert counts.recall == pytest.approx(1.0)
    assert counts.f1 == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_detection_counts_without_flags_or_truth():
    table = scores_table()
    counts = analysis.detection_counts(np.zeros(6, dtype=bool), table)
    assert counts.precision is None
    assert counts.recall == 0.0
    no_truth = analysis.detection_counts(np.ones(6, dtype=bool), table.drop(columns="is_injected_noise"))
    assert no_truth.precision is None
    assert no_truth.recall is None
    assert no_truth.f1 is None


def test_effective_flags_apply_decisions():
    table = scores_table()
    flags = analysis.effective_flags(table, {"p0": "confirmed_noisy", "p1": "cleared"})
    assert flags.tolist() == [True, False, True, False, True, False]
    assert analysis.decision_column(table, {"p2": "cleared"}).tolist() == ["", "", "cleared", "", "", ""]


REVIEWED = {"p0": "confirmed_noisy", "p1": "cleared"}


@pytest.mark.parametrize(
    "spec, decisions, expected",
    [
        (analysis.PairFilter(), {}, ["p4", "p1", "p2"]),
        (analysis.PairFilter(), REVIEWED, ["p4", "p2", "p0"]),
        (analysis.PairFilter(show="all", caption_contains="RED"), {}, ["p2", "p5", "p0"]),
        (analysis.PairFilter(show="all", categories=("square",)), {}, ["p1", "p2"]),
        (analysis.PairFilter(show="all", splits=("val",)), {}, ["p4", "p5"]),
        (analysis.PairFilter(show="all", clean_prob_range=(0.3, 0.85)), {}, ["p2", "p5", "p3"]),
        (analysis.PairFilter(show="all", sort_by="per_pair_loss", ascending=False), {}, ["p4", "p1", "p2", "p5", "p3", "p0"]),
        (analysis.PairFilter(show="injected"), {}, ["p1", "p3"]),
        (analysis.PairFilter(show="undecided"), REVIEWED, ["p4", "p2"]),
        (analysis.PairFilter(show="confirmed"), REVIEWED, ["p0"]),
        (analysis.PairFilter(show="cleared"), REVIEWED, ["p1"]),
    ],
)
def test_filter_pairs(spec, decisions, expected):
    table = scores_table()
    positions = analysis.filter_pairs(table, decisions, spec)
    assert table["pair_id"].to_numpy()[positions].tolist() == expected


def test_pair_filter_rejects_unknown_choice():
    with pytest.raises(ValueError, match="show must be one of"):
        analysis.PairFilter(show="everything")
    with pytest.raises(ValueError, match="sort_by must be one of"):
        analysis.PairFilter(sort_by="caption")


@pytest.mark.parametrize(
    "n_rows, page_size, page, expected",
    [(0, 50, 1, (0, 0, 1)), (120, 50, 1, (0, 50, 3)), (120, 50, 3, (100, 120, 3)), (120, 50, 9, (100, 120, 3)), (100, 50, 0, (0, 50, 2))],
)
def test_page_bounds(n_rows, page_size, page, expected):
    assert analysis.page_bounds(n_rows, page_size, page) == expected


def test_noisiness_percentiles_follow_polarity():
    ranks = analysis.noisiness_percentiles(scores_table())
    assert ranks["per_pair_loss"].tolist() == pytest.approx([0, 80, 60, 20, 100, 40])
    assert ranks["clean_prob"].tolist() == pytest.approx([0, 80, 60, 20, 100, 40])
    assert ranks["energy"].idxmax() == 4


def test_flag_reason_names_notable_scores():
    table = scores_table()
    ranks = analysis.noisiness_percentiles(table)
    reason = analysis.flag_reason(table.iloc[1], ranks.iloc[1], 0.5, own_similarity=0.1, best_similarity=0.8, best_is_own=False)
    assert reason.startswith("clean prob 0.20 < 0.50")
    assert "loss top 20%" in reason
    assert "another caption fits the image better (0.80 vs 0.10)" in reason
    kept = analysis.flag_reason(table.iloc[0], ranks.iloc[0], 0.5)
    assert kept == "clean prob 0.90 ≥ 0.50"


def test_image_noise_table():
    table = analysis.image_noise_table(scores_table())
    assert table.loc[0].tolist() == [2, 1, pytest.approx(0.2)]
    assert table.loc[3, "n_flagged"] == 1


def history_table() -> pd.DataFrame:
    """Three epochs of p0-p3: p1 flips to flagged at epoch 2, p3 (injected) becomes clean at epoch 3."""
    rows = []
    flags = {1: [False, False, True, True], 2: [False, True, True, True], 3: [False, True, True, False]}
    for epoch, epoch_flags in flags.items():
        for pair_id, flag in zip(["p0", "p1", "p2", "p3"], epoch_flags):
            rows.append({"epoch": epoch, "pair_id": pair_id, "is_noisy": flag, "clean_prob": 0.2 if flag else 0.8})
    return pd.DataFrame(rows)


def test_with_pair_ids_from_pair_index():
    history = history_table().drop(columns="pair_id").assign(pair_index=[0, 1, 2, 3] * 3)
    named = analysis.with_pair_ids(history, scores_table())
    assert named["pair_id"].tolist() == ["p0", "p1", "p2", "p3"] * 3
    assert analysis.with_pair_ids(history_table(), scores_table())["pair_id"].tolist() == ["p0", "p1", "p2", "p3"] * 3
    with pytest.raises(ValueError, match="neither pair_id nor pair_index"):
        analysis.with_pair_ids(history.drop(columns="pair_index"), scores_table())


def test_flag_flips_between_epochs():
    history = history_table()
    assert analysis.flag_flips(history, 1).empty
    second = analysis.flag_flips(history, 2)
    assert second[["pair_id", "change"]].values.tolist() == [["p1", "flagged"]]
    third = analysis.flag_flips(history, 3)
    assert third[["pair_id", "change"]].values.tolist() == [["p3", "cleared"]]
    assert third["clean_prob_before"].tolist() == pytest.approx([0.2])


def test_flips_per_epoch_counts_injected_cleared():
    table = analysis.flips_per_epoch(history_table(), scores_table())
    assert table.to_dict("records") == [
        {"epoch": 2, "became_flagged": 1, "became_clean": 0, "injected_cleared": 0},
        {"epoch": 3, "became_flagged": 0, "became_clean": 1, "injected_cleared": 1},
    ]
    assert "injected_cleared" not in analysis.flips_per_epoch(history_table()).columns
