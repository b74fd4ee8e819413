"""Tests for rewardjax.evaluation.passk: pass@k, avg@n, maj@k."""

import itertools
import math

import numpy as np
import pytest

from rewardjax.evaluation.passk import (
    avg_at_n,
    maj_at_k,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_per_problem,
)


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c of them correct) holding a correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    return sum(any(subset) for subset in subsets) / len(subsets)


def test_catalogue_fixture():
    # 1 - C(3, 2)/C(4, 2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, k=2) == pytest.approx(0.5)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_brute_force_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k=k) == pytest.approx(brute_force_pass_at_k(n, c, k)), (n, c, k)


def test_k1_is_c_over_n_and_large_k_is_one():
    np.testing.assert_allclose(pass_at_k_per_problem([10, 8], [3, 2], k=1), [0.3, 0.25])
    assert pass_at_k(10, 3, k=8) == 1.0  # n - c = 7 < 8: every 8-subset holds a correct one
    assert pass_at_k(10, 0, k=10) == 0.0


def test_mean_over_problems_and_scalar_n():
    # per problem with n = 4, k = 2: c=1 → .5, c=0 → 0, c=4 → 1 → mean .5
    assert pass_at_k(4, [1, 0, 4], k=2) == pytest.approx(0.5)


def test_large_n_matches_exact_integer_binomials():
    # Python integers hold C(1000, 100) exactly; the product form never builds it.
    exact = 1 - math.comb(900, 100) / math.comb(1000, 100)
    assert pass_at_k(1000, 100, k=100) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(1000, 1, k=1) == pytest.approx(0.001)


def test_bad_input():
    with pytest.raises(ValueError, match=r"k <= n: k = 5 > n = 4 \(problem 0\)"):
        pass_at_k(4, 1, k=5)
    with pytest.raises(ValueError, match="num_correct = 5 is outside"):
        pass_at_k(4, 5, k=1)
    with pytest.raises(ValueError, match="integer k >= 1"):
        pass_at_k(4, 1, k=0)
    with pytest.raises(ValueError, match="must hold integers"):
        pass_at_k(4, 1.5, k=1)


def test_curve_defaults_to_powers_of_two_up_to_n():
    curve = pass_at_k_curve(10, [3, 5], ks=None)
    assert list(curve) == [1, 2, 4, 8]
    assert curve[1] == pytest.approx((0.3 + 0.5) / 2)
    assert all(a <= b for a, b in zip(list(curve.values()), list(curve.values())[1:]))


def test_avg_at_n_is_pass_at_1():
    correct = [[1, 0, 0, 1], [1, 1, 1]]  # ragged: .5 and 1 → .75
    assert avg_at_n(correct) == pytest.approx(0.75)
    assert avg_at_n(correct) == pytest.approx(pass_at_k([4, 3], [2, 3], k=1))
    with pytest.raises(ValueError, match=r"correct\[1\] must hold 0/1"):
        avg_at_n([[1], [2]])


def test_maj_at_k():
    # k = n: one vote per problem. Problem 0 picks 1 (right), problem 1 picks 4 (wrong).
    answers = [[1, 1, 2], [3, 4, 4]]
    correct = [[1, 1, 0], [1, 0, 0]]
    assert maj_at_k(answers, correct, k=3) == pytest.approx(0.5)
    # All correct → 1.
    assert maj_at_k([[5, 5, 5, 5]], [[1, 1, 1, 1]], k=2) == 1.0
    # k < n: all C(5, 3) = 10 subsets; the 3 holding both wrong 5s vote wrong → 0.7.
    assert maj_at_k([[7, 7, 7, 5, 5]], [[1, 1, 1, 0, 0]], k=3) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="k <= n: k = 4 > n = 3"):
        maj_at_k(answers, correct, k=4)
