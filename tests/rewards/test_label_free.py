"""rewardjax.rewards.label_free: majority vote (TTRL) and Brier calibration (RLCR)."""

import numpy as np
import pytest

from rewardjax.rewards import brier_reward, majority_vote_labels, majority_vote_reward, rlcr_brier
from rewardjax.rewards.label_free import completion_vote_key, parse_confidence


def test_majority_vote_labels_catalogue_case():
    # mechanisms.md: [A, A, B, C] → [1, 1, 0, 0].
    r, maj, share = majority_vote_labels(["A", "A", "B", "C"], [0, 0, 0, 0])
    assert r == [1.0, 1.0, 0.0, 0.0] and maj == ["A"] * 4 and share == [0.5] * 4


def test_majority_vote_groups_ties_and_missing():
    answers = ["A", "B", "B", None, "X", "Y", None, None]
    groups = [0, 0, 0, 0, 1, 1, 2, 2]
    r, maj, _ = majority_vote_labels(answers, groups, tie_break="first")
    # Group 1 ties X/Y: "first" picks X. Group 2 has no answers: no label, 0.
    assert r == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert maj[4:6] == ["X", "X"] and maj[6:] == [None, None]
    r, _, _ = majority_vote_labels(answers, groups, tie_break="none")
    assert r[4:6] == [0.0, 0.0]
    with pytest.raises(ValueError):
        majority_vote_labels(answers, groups, tie_break="random")


def test_majority_vote_reward_compares_numbers_by_value():
    completions = [r"\boxed{2}", "<answer>2.0</answer>", r"\boxed{4/2}", r"\boxed{3}"]
    out = majority_vote_reward(["q"] * 4, completions, [{"group_id": 0}] * 4)
    assert out.scores == [1.0, 1.0, 1.0, 0.0]
    assert out.diagnostics["majority"][0] == "2"
    assert completion_vote_key("<answer> Paris. </answer>") == "paris"


def test_brier_reward():
    # mechanisms.md: (c, q) = (1, 1) → 1; (0, 1) → −1. (1, 0.5) → 1 − 0.25; (0, 0.2) → −0.04.
    got = brier_reward(np.array([1, 0, 1, 0]), np.array([1.0, 1.0, 0.5, 0.2]))
    np.testing.assert_allclose(got, [1.0, -1.0, 0.75, -0.04], rtol=1e-6)


def test_brier_expected_reward_is_maximised_at_true_probability():
    # E[r](q) = p·(1 − (q − 1)²) + (1 − p)·(−q²), on a grid: argmax = p.
    p = 0.3
    q = np.linspace(0, 1, 101)
    expected = p * brier_reward(np.ones_like(q), q) + (1 - p) * brier_reward(np.zeros_like(q), q)
    assert q[np.argmax(expected)] == pytest.approx(p)


def test_parse_confidence():
    assert parse_confidence("x <confidence>0.8</confidence>") == 0.8
    assert parse_confidence("<confidence> 75% </confidence>") == 0.75
    assert parse_confidence("<confidence>2</confidence>") == 1.0
    assert parse_confidence("none") is None


def test_rlcr_brier_reward():
    completions = [
        "<confidence>0.9</confidence>",
        "<confidence>0.9</confidence>",
        "no confidence",
        "x",
    ]
    fields = [{"correct": 1}, {"correct": 0}, {"correct": 1}, {"correct": None}]
    out = rlcr_brier(["q"] * 4, completions, fields)
    # 1 − 0.01 = 0.99; 0 − 0.81 = −0.81; missing q: 1 − 1 = 0; no correctness → None.
    np.testing.assert_allclose(out.scores[:3], [0.99, -0.81, 0.0], rtol=1e-6)
    assert out.scores[3] is None
