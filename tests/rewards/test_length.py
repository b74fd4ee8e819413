"""rewardjax.rewards.length: overlong, gated and correct-only length rewards, repetition."""

import numpy as np
import pytest

from rewardjax.rewards import (
    correct_only_length_penalty,
    correctness_gated_length,
    dapo_overlong_penalty,
    kimi_length_reward,
    overlong_penalty,
    repetition_penalty,
)
from rewardjax.rewards.length import repetition_penalty_value


def test_overlong_penalty_hand_computed():
    # L_max = 100, L_c = 20: free up to 80, linear to −f at 100, −f beyond.
    lengths = np.array([50, 80, 90, 100, 130])
    expected = [0.0, 0.0, -0.5, -1.0, -1.0]  # (80 − 90)/20 = −0.5; (80 − 100)/20 = −1
    np.testing.assert_allclose(overlong_penalty(lengths, max_length=100, cache_length=20), expected)
    np.testing.assert_allclose(
        overlong_penalty(lengths, max_length=100, cache_length=20, factor=2.0),
        np.array(expected) * 2,
    )
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_length=10, cache_length=20)


def test_dapo_overlong_penalty_reward_defaults():
    # mechanisms.md: |y| = L_max − L_c/2 → −0.5·f with L_max 20480, L_c 4096.
    fields = [{"completion_length": 20480 - 2048}, {"completion_length": 100}]
    np.testing.assert_allclose(dapo_overlong_penalty(["q"] * 2, ["a"] * 2, fields), [-0.5, 0.0])
    with pytest.raises(KeyError, match="completion_length"):
        dapo_overlong_penalty(["q"], ["a"], [{}])


def test_kimi_length_reward():
    # lengths 10, 20, 30 → λ = 0.5, 0, −0.5; wrong answers keep min(0, λ).
    r = kimi_length_reward(np.array([10, 20, 30]), np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(r, [0.5, 0.0, -0.5])
    r = kimi_length_reward(np.array([10, 30]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(r, [0.0, -0.5])
    np.testing.assert_allclose(kimi_length_reward(np.array([5, 5]), np.array([1, 0])), [0.0, 0.0])


def gated(correct, lengths, groups, **kw):
    fields = [
        {"correct": c, "completion_length": n, "group_id": g}
        for c, n, g in zip(correct, lengths, groups)
    ]
    return correctness_gated_length(["q"] * len(correct), ["a"] * len(correct), fields, **kw)


def test_correctness_gated_length():
    # Group 0: 3/4 correct (≥ 0.5) → penalised; lengths 10..40: λ = 0.5, 1/6, −1/6, −0.5.
    # Group 1: 1/4 correct → plain 0/1. Group 2: all wrong → 0/1 (mechanisms.md).
    correct = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    lengths = [10, 20, 30, 40, 10, 20, 30, 40, 5, 50]
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    out = gated(correct, lengths, groups, threshold=0.5)
    expected = [1.5, 1 + 1 / 6, 1 - 1 / 6, -0.5, 1, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(out.scores, expected)
    assert out.diagnostics["length_penalized"] == [True] * 4 + [False] * 6
    # top_fraction 1/3 of 3 groups: only the best group (0) is selected.
    out = gated(correct, lengths, groups, top_fraction=1 / 3, threshold=0.99)
    np.testing.assert_allclose(out.scores, expected)


def test_correctness_gated_length_uses_a_correctness_reward():
    fields = [{"answer": "4", "completion_length": n, "group_id": 0} for n in (10, 30)]
    out = correctness_gated_length(
        ["q", "q"],
        [r"\boxed{4}", r"\boxed{4}"],
        fields,
        correct_key=None,
        correctness="numeric_match",
    )
    np.testing.assert_allclose(out.scores, [1.5, 0.5])


def test_correct_only_length_penalty():
    # Correct lengths 10 and 30: mean 20, std 10 → z = −1, +1;
    # r = 1 − 0.2·σ(∓1) = 1 − 0.2·0.26894, 1 − 0.2·0.73106. Wrong → 0.
    fields = [
        {"correct": c, "completion_length": n, "group_id": 0} for c, n in ((1, 10), (1, 30), (0, 5))
    ]
    out = correct_only_length_penalty(["q"] * 3, ["a"] * 3, fields, alpha=0.2, eps=0.0)
    np.testing.assert_allclose(
        out.scores, [1 - 0.2 * 0.2689414, 1 - 0.2 * 0.7310586, 0.0], rtol=1e-6
    )


def test_repetition_penalty():
    # mechanisms.md: [5, 5, 5, 5, 5], n = 2 → (1 − 1/4)·(−1) = −0.75.
    assert repetition_penalty_value([5, 5, 5, 5, 5], ngram=2) == -0.75
    assert repetition_penalty_value([1, 2, 3], ngram=2) == 0.0
    assert repetition_penalty_value([1], ngram=2) == 0.0
    # Words: "a b a b a b", n = 2 → bigrams ab ba ab ba ab: 2 unique of 5 → −0.6.
    assert repetition_penalty(["q"], ["a b A b a b"], [{}], ngram=2) == [pytest.approx(-0.6)]
    assert repetition_penalty(["q"], ["x"], [{"ids": [7, 7, 7]}], ngram=2, tokens_key="ids") == [
        -0.5
    ]
