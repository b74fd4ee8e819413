"""Consensus masks and labeller scores, on hand fixtures."""

import numpy as np
import pytest

from rewardjax.labeling import (
    consensus_mask,
    first_error_accuracy,
    normalise_first_error,
    prm_first_errors,
    step_label_f1,
)


def test_first_error_convention():
    assert normalise_first_error(None, 3) == -1
    assert normalise_first_error(3, 3) == -1  # incomplete but every written step right
    assert normalise_first_error(1, 3) == 1


def test_consensus_mask_and_accuracy():
    a = [None, 1, 2, 0]
    b = [3, 1, 1, None]
    keep = consensus_mask(a, b, [3, 3, 3, 3])
    np.testing.assert_array_equal(keep, [True, True, False, False])
    assert first_error_accuracy(a, b, [3, 3, 3, 3]) == 0.5
    with pytest.raises(ValueError, match="one first error per solution"):
        consensus_mask(a, b[:3], [3, 3, 3, 3])


def test_prm_first_errors():
    scores = [np.array([0.9, 0.4, 0.8]), np.array([0.6, 0.7]), np.array([0.2])]
    assert prm_first_errors(scores, threshold=0.5) == [1, None, 0]
    assert prm_first_errors(scores, threshold=0.65) == [1, 0, 0]


def test_step_label_f1_counts_wrong_steps_as_positives():
    predicted = [[1, 0, 0], [1, 1], [0.75, 0.25]]
    exact = [[1, 1, 0], [1, 1], [1, 0]]
    # Wrong steps predicted: (0,1) (0,2) (2,1); truly wrong: (0,2) (2,1).
    out = step_label_f1(predicted, exact)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == 1.0
    assert out["f1"] == pytest.approx(0.8)
    assert out["accuracy"] == pytest.approx(6 / 7)
    # Calling every step right finds no wrong step: F1 0, not near 1.
    assert step_label_f1([[1, 1, 1], [1, 1], [1, 1]], exact)["f1"] == 0.0
