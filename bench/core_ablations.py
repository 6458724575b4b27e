"""The SREM ablation variants of bench_core.py, kept free of torch so that report_core.py can order them."""

from __future__ import annotations


def ablations() -> dict[str, dict]:
    """SREM variants at 40% noise: each part of the shipped defaults switched off or the paper-literal choice."""
    return {
        "shipped defaults": {},
        "no energy filter": {"energy_rule": "off"},
        "energy filter: below the mean": {"energy_rule": "mean"},
        "+ swapped-entropy weights (confidence)": {"weighting": "confidence"},
        "+ complementary loss, uniform Q (RCL), 0.3": {"lambda_cmbcl": 0.3, "bias": "uniform"},
        "+ complementary loss, biased Q (expected form), 0.3": {"lambda_cmbcl": 0.3, "bias": "dissimilar", "cmbcl_form": "expected"},
        "+ complementary loss, biased Q (sum form), 0.3": {"lambda_cmbcl": 0.3, "bias": "dissimilar", "cmbcl_form": "sum"},
        "soft clean term (clean_prob weights)": {"clean_term": "soft"},
        "per-batch selection": {"selection": "per_batch"},
        "no selection (every pair clean)": {"gmm_threshold": 1e-9, "energy_rule": "off"},
        "literal reading (mean energy, weights, biased Q sum form 1.0, 5 complementary warm-up epochs)": {
            "energy_rule": "mean", "energy_quantile": 0.5, "weighting": "confidence", "lambda_cmbcl": 1.0,
            "bias": "dissimilar", "cmbcl_form": "sum", "warmup_epochs": 5, "warmup_clean_weight": 0.0,
        },
    }
