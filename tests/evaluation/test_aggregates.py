"""Tests for rewardjax.evaluation.aggregates, against rliable's point estimates."""

import numpy as np
import pytest
from rliable import metrics as rliable_metrics

from rewardjax.evaluation.aggregates import (
    batched_iqm,
    batched_mean,
    batched_median,
    batched_optimality_gap,
    batched_probability_of_improvement,
    performance_profile,
    probability_of_improvement,
    rliable_aggregates,
    stratified_bootstrap_ci,
)


def test_iqm_catalogue_fixture():
    # 8 scores: trim 2 from each end → mean(3, 4, 5, 6) = 4.5
    scores = np.arange(1.0, 9.0).reshape(2, 4)
    assert rliable_aggregates(scores, reps=50)["iqm"]["estimate"] == pytest.approx(4.5)
    assert batched_iqm(scores) == pytest.approx(4.5)


def test_hand_computed_aggregates():
    scores = np.array([[0.5, 1.2], [0.9, 0.4]])  # [R=2, J=2]
    result = rliable_aggregates(scores, reps=50)
    # min(x, 1) = .5, 1, .9, .4 → mean .7 → gap .3
    assert result["optimality_gap"]["estimate"] == pytest.approx(0.3)
    # task means .7 and .8 → mean .75, median .75
    assert result["mean"]["estimate"] == pytest.approx(0.75)
    assert result["median"]["estimate"] == pytest.approx(0.75)


@pytest.mark.parametrize("shape", [(3, 5), (5, 7), (10, 1), (1, 6)])
def test_batched_aggregates_match_rliable(shape):
    scores = np.random.default_rng(sum(shape)).random(shape)
    assert batched_iqm(scores) == pytest.approx(rliable_metrics.aggregate_iqm(scores))
    assert batched_mean(scores) == pytest.approx(rliable_metrics.aggregate_mean(scores))
    assert batched_median(scores) == pytest.approx(rliable_metrics.aggregate_median(scores))
    assert batched_optimality_gap(scores, 0.7) == pytest.approx(
        rliable_metrics.aggregate_optimality_gap(scores, gamma=0.7)
    )
    # A batch of matrices gives one value per matrix.
    batch = np.stack([scores, scores + 1.0])
    np.testing.assert_allclose(batched_iqm(batch), [batched_iqm(scores), batched_iqm(scores) + 1])


def test_intervals_contain_estimates_and_are_seeded():
    scores = np.random.default_rng(0).random((6, 4))
    first = rliable_aggregates(scores, reps=300, seed=1)
    assert first == rliable_aggregates(scores, reps=300, seed=1)
    assert first != rliable_aggregates(scores, reps=300, seed=2)
    for name, value in first.items():
        assert value["ci_low"] <= value["estimate"] <= value["ci_high"], name
        assert value["ci_low"] < value["ci_high"], name


def test_stratified_bootstrap_keeps_tasks_and_task_bootstrap_resamples_them():
    # Every run of a task scores the same, so resampling runs changes nothing ...
    scores = np.tile(np.array([[0.1, 0.5, 0.9]]), (4, 1))  # [R=4, J=3]
    result = rliable_aggregates(scores, reps=200)["mean"]
    assert result["ci_low"] == pytest.approx(0.5) and result["ci_high"] == pytest.approx(0.5)
    # ... while resampling tasks does.
    wide = rliable_aggregates(scores, reps=200, task_bootstrap=True)["mean"]
    assert wide["ci_high"] - wide["ci_low"] > 0.2


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(400, 1))  # one task, 400 runs
    low, high = stratified_bootstrap_ci(scores, batched_mean, reps=2_000, seed=0)
    half_width = 1.96 * scores.std(ddof=1) / np.sqrt(400)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(scores.mean(), abs=0.02)


def test_probability_of_improvement():
    # identical sets → 0.5, in any run order
    x = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 1.0]])
    assert probability_of_improvement(x, x, reps=50)["estimate"] == pytest.approx(0.5)
    assert probability_of_improvement(x, x[::-1], reps=50)["estimate"] == pytest.approx(0.5)
    # task 0: x {3, 4} vs y {1, 3}: 3>1, 3=3 (½), 4>1, 4>3 → 3.5/4 = .875
    # task 1: x {1, 3} vs y {2, 2}: only 3 > 2 twice → 2/4 = .5        → mean .6875
    x = np.array([[3.0, 1.0], [4.0, 3.0]])
    y = np.array([[1.0, 2.0], [3.0, 2.0]])
    result = probability_of_improvement(x, y, reps=200)
    assert result["estimate"] == pytest.approx(0.6875)
    assert batched_probability_of_improvement(x, y) == pytest.approx(0.6875)
    assert result["ci_low"] <= result["estimate"] <= result["ci_high"]
    with pytest.raises(ValueError, match="scores_x has 2 tasks but scores_y has 1"):
        probability_of_improvement(x, y[:, :1])


def test_batched_probability_of_improvement_matches_rliable():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(5, 3)).astype(float)  # small integers: many ties
    y = rng.integers(0, 4, size=(7, 3)).astype(float)
    assert batched_probability_of_improvement(x, y) == pytest.approx(
        rliable_metrics.probability_of_improvement(x, y)
    )


def test_performance_profile():
    scores = np.array([[0.1, 0.6], [0.4, 0.9]])
    # per run: above .3 → .6 .4 .9 = 3/4; above .5 → .6 .9 = 2/4
    result = performance_profile(scores, [0.3, 0.5], reps=100)
    np.testing.assert_allclose(result["profile"], [0.75, 0.5])
    assert np.all(result["ci_low"] <= result["profile"])
    assert np.all(result["profile"] <= result["ci_high"])
    # task means .25 and .75: above .3 → 1/2; above .5 → 1/2
    by_task = performance_profile(scores, [0.3, 0.5], per_run=False, reps=100)
    np.testing.assert_allclose(by_task["profile"], [0.5, 0.5])


def test_bad_input():
    with pytest.raises(ValueError, match=r"must be \[R, J\]"):
        rliable_aggregates([1.0, 2.0], reps=10)
    with pytest.raises(ValueError, match=r"scores\[0, 1\] is nan"):
        rliable_aggregates([[1.0, float("nan")]], reps=10)
    with pytest.raises(ValueError, match="reps must be an integer >= 1"):
        rliable_aggregates([[1.0]], reps=0)
    with pytest.raises(ValueError, match="confidence must be in"):
        rliable_aggregates([[1.0]], reps=10, confidence=95)


def test_mean_ci_over_seeds_brackets_the_mean():
    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    out = mean_ci_over_seeds({"a": [0.8, 0.9, 0.85], "const": [0.5] * 3, "empty": []}, reps=500)
    assert set(out) == {"a", "const"}
    a = out["a"]
    assert a["num_seeds"] == 3 and abs(a["mean"] - 0.85) < 1e-12
    # Percentile interval of resampled means: inside the seeds' range, around the mean.
    assert 0.8 <= a["ci_low"] < 0.85 < a["ci_high"] <= 0.9
    assert out["const"]["ci_low"] == out["const"]["ci_high"] == 0.5


def test_mean_ci_over_seeds_is_seeded_and_agrees_with_rliable():
    from rliable import library as rly

    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    values = [0.61, 0.55, 0.7, 0.52, 0.66]
    np.random.seed(1)
    first = mean_ci_over_seeds({"a": values}, reps=20000)["a"]
    np.random.seed(2)  # the global RNG does not move our interval
    assert mean_ci_over_seeds({"a": values}, reps=20000)["a"] == first
    many = list(np.linspace(0.3, 0.9, 12) ** 2)
    assert (
        mean_ci_over_seeds({"a": many}, reps=300)["a"]
        != (mean_ci_over_seeds({"a": many}, reps=300, seed=3)["a"])
    )
    # rliable's own estimator (global RNG) gives the same interval up to bootstrap noise.
    np.random.seed(0)
    _, ci = rly.get_interval_estimates(
        {"a": np.reshape(values, (-1, 1))}, lambda x: np.array([np.mean(x)]), reps=20000
    )
    assert abs(first["ci_low"] - ci["a"][0][0]) < 0.01
    assert abs(first["ci_high"] - ci["a"][1][0]) < 0.01
