import numpy as np
import pytest

from srem_core.selection import LossMixtureSplitter, energy_filter, entropy_weights, minmax


def test_planted_high_loss_pairs_get_lowest_clean_prob():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.5, 0.1, 300), rng.normal(3.0, 0.3, 100)])
    clean_prob = LossMixtureSplitter(random_state=0).fit(losses).clean_prob(losses)
    planted = np.arange(300, 400)
    lowest = np.argsort(clean_prob)[:100]
    assert set(lowest) == set(planted)
    assert clean_prob[:300].min() > 0.5
    assert clean_prob[300:].max() < 0.5


def test_splitter_rejects_nan():
    with pytest.raises(ValueError, match="per_pair_loss contains NaN or infinite values"):
        LossMixtureSplitter().fit(np.array([0.1, np.nan, 0.3]))


def test_minmax_uses_reference_range():
    assert minmax(np.array([5.0]), np.array([0.0, 10.0]))[0] == pytest.approx(0.5)
    assert minmax(np.array([20.0]), np.array([0.0, 10.0]))[0] == pytest.approx(1.0)


def test_energy_mean_rule():
    energy = np.array([-3.0, -2.0, -1.0, -0.5])
    small_loss = np.array([True, True, True, False])
    assert energy_filter(energy, small_loss, "mean").tolist() == [True, False, False, False]
    assert energy_filter(energy, small_loss, "off").all()
    assert energy_filter(energy, small_loss, "quantile", quantile=0.9).tolist() == [True, True, False, False]


def test_entropy_weights_rules():
    entropy = np.array([0.1, 0.5, 0.9, 2.0])
    clean = np.array([True, True, True, False])
    assert entropy_weights(entropy, clean, "confidence").tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-9)
    assert entropy_weights(entropy, clean, "inverse").tolist() == pytest.approx([0.0, 0.5, 1.0, 0.0], abs=1e-9)
    assert entropy_weights(entropy, clean, "off").tolist() == [1.0, 1.0, 1.0, 0.0]
    assert entropy_weights(entropy, clean, "confidence", floor=0.2).tolist() == pytest.approx([1.0, 0.5, 0.2, 0.0])
