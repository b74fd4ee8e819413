"""Tests for rewardjax.evaluation.lengths."""

import math

import numpy as np
import pytest

from rewardjax.evaluation.lengths import length_accuracy_pareto, length_stats


def test_length_stats_hand_fixture():
    stats = length_stats([10, 20, 30, 40], [1, 0, 1, 0], max_length=40)
    # all: mean 25, median 25, p90 at position .9·3 = 2.7 → 30 + .7·10 = 37
    assert (stats["length_mean"], stats["length_median"]) == (25.0, 25.0)
    assert stats["length_p90"] == pytest.approx(37.0)
    # correct [10, 30]: mean 20, p90 = 10 + .9·20 = 28; incorrect [20, 40]: mean 30, p90 38
    assert stats["length_mean_correct"] == 20.0
    assert stats["length_p90_correct"] == pytest.approx(28.0)
    assert stats["length_mean_incorrect"] == 30.0
    assert stats["length_p90_incorrect"] == pytest.approx(38.0)
    assert stats["accuracy"] == 0.5
    assert stats["truncation_rate"] == 0.25  # one of four reached the cap


def test_truncated_flags_take_precedence_and_empty_groups_are_nan():
    stats = length_stats([10, 40], [0, 0], max_length=40, truncated=[False, False])
    assert stats["truncation_rate"] == 0.0
    assert math.isnan(stats["length_mean_correct"])
    assert "truncation_rate" not in length_stats([10, 40])
    assert set(length_stats([10, 40])) == {"length_mean", "length_median", "length_p90"}


def test_length_stats_bad_input():
    with pytest.raises(ValueError, match=r"lengths\[1\] = -1.0"):
        length_stats([3, -1])
    with pytest.raises(ValueError, match=r"lengths\[0\] = 50.0 exceeds max_length = 40"):
        length_stats([50], max_length=40)
    with pytest.raises(ValueError, match="correct has shape"):
        length_stats([3, 4], [1])


def test_pareto_front():
    lengths = [100, 200, 150, 100, 300]
    accuracy = [0.5, 0.6, 0.4, 0.5, 0.6]
    # 2 is beaten by 0 (shorter, more accurate); 4 by 1 (shorter, as accurate);
    # 0 and 3 are the same point and both stay.
    np.testing.assert_array_equal(
        length_accuracy_pareto(lengths, accuracy), [True, True, False, True, False]
    )
    with pytest.raises(ValueError, match="equal length"):
        length_accuracy_pareto([1, 2], [0.5])
