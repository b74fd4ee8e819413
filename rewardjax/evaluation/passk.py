"""Sampling metrics over n completions per problem: pass@k, avg@n, maj@k.

Host-side numpy. A problem's n completions are judged correct or not by a
verifier; these metrics say how often at least one of k is right (pass@k), how
often one is right on average (avg@n), and how often the majority answer of k
is right (maj@k).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardjax.inference.selection import Equiv, accuracy_vs_n, default_ns
from rewardjax.registry import METRICS


def _counts(num_samples: Any, num_correct: Any) -> tuple[np.ndarray, np.ndarray]:
    correct = np.atleast_1d(np.asarray(num_correct))
    samples = np.broadcast_to(np.asarray(num_samples), correct.shape)
    if correct.ndim != 1:
        raise ValueError(f"num_correct must be a scalar or [P], got shape {correct.shape}")
    if correct.size == 0:
        raise ValueError("num_correct is empty: need at least one problem")
    for name, values in (("num_samples", samples), ("num_correct", correct)):
        if values.dtype.kind not in "iu" and not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"{name} must hold integers, got {values.tolist()}")
    samples = samples.astype(np.int64)
    correct = correct.astype(np.int64)
    for p, (n, c) in enumerate(zip(samples, correct)):
        if n < 1:
            raise ValueError(f"problem {p}: num_samples = {n}, need at least 1")
        if not 0 <= c <= n:
            raise ValueError(f"problem {p}: num_correct = {c} is outside [0, num_samples = {n}]")
    return samples, correct


def pass_at_k_per_problem(
    num_samples: Any,  # [P] or scalar: completions drawn per problem (n)
    num_correct: Any,  # [P] or scalar: how many of them are correct (c)
    *,
    k: int,
) -> np.ndarray:
    """Unbiased pass@k of each problem: 1 − C(n−c, k)/C(n, k).

    Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), which equals the ratio of
    binomials without overflowing; it is 1 when n − c < k.

    Args:
      num_samples: n per problem (a scalar applies to all).
      num_correct: c per problem.
      k: number of attempts, 1 <= k <= n.

    Returns:
      [P] float64 pass@k per problem.
    """
    samples, correct = _counts(num_samples, num_correct)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"pass@k needs an integer k >= 1, got {k!r}")
    too_few = np.flatnonzero(samples < k)
    if too_few.size:
        p = too_few[0]
        raise ValueError(f"pass@k needs k <= n: k = {k} > n = {samples[p]} (problem {p})")
    values = np.ones(len(samples))
    for p, (n, c) in enumerate(zip(samples, correct)):
        if n - c >= k:
            values[p] = 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))
    return values


@METRICS.register("pass_at_k")
def pass_at_k(
    num_samples: Any,  # [P] or scalar
    num_correct: Any,  # [P] or scalar
    *,
    k: int,
) -> float:
    """pass@k = mean over problems of 1 − C(n−c, k)/C(n, k) (unbiased estimator).

    Source: the Codex estimator ("Evaluating Large Language Models Trained on
    Code"); pass@k curves as in "Does Reinforcement Learning Really
    Incentivize Reasoning Capacity in LLMs Beyond the Base Model?". k = 1 gives
    the mean of c/n.

    Args:
      num_samples: n per problem (a scalar applies to all).
      num_correct: c per problem.
      k: number of attempts, 1 <= k <= n for every problem.

    Returns:
      pass@k averaged over problems.
    """
    return float(pass_at_k_per_problem(num_samples, num_correct, k=k).mean())


def pass_at_k_curve(
    num_samples: Any,  # [P] or scalar
    num_correct: Any,  # [P] or scalar
    *,
    ks: Sequence[int] | None = None,
) -> dict[int, float]:
    """pass@k for several k; by default the powers of two up to the smallest n.

    Args:
      num_samples: n per problem.
      num_correct: c per problem.
      ks: the k values; default 1, 2, 4, ... <= min n.

    Returns:
      {k: pass@k}.
    """
    samples, _ = _counts(num_samples, num_correct)
    if ks is None:
        ks = default_ns(int(samples.min()), cap=int(samples.min()))
    return {int(k): pass_at_k(num_samples, num_correct, k=int(k)) for k in ks}


def _correct_rows(correct: Any) -> list[np.ndarray]:
    rows = [np.asarray(row, dtype=np.float64) for row in correct]
    if not rows:
        raise ValueError("correct is empty: need at least one problem")
    for p, row in enumerate(rows):
        if row.ndim != 1 or row.size == 0:
            raise ValueError(f"correct[{p}] must be a non-empty list of 0/1, got shape {row.shape}")
        if not np.isin(row, (0.0, 1.0)).all():
            raise ValueError(f"correct[{p}] must hold 0/1 values, got {row.tolist()}")
    return rows


@METRICS.register("avg_at_n")
def avg_at_n(correct: Any) -> float:  # correct: [P][n] 0/1, n may differ by problem
    """avg@n = mean over problems of (1/n) Σ_i correct_i; equals pass@1.

    Source: "PRL: Process Reward Learning Improves LLMs' Reasoning Ability and
    Broadens the Reasoning Boundary".

    Args:
      correct: [P][n] correctness of each sample (bool or 0/1).

    Returns:
      Mean correctness per problem, averaged over problems.
    """
    return float(np.mean([row.mean() for row in _correct_rows(correct)]))


@METRICS.register("maj_at_k")
def maj_at_k(
    answers: Sequence[Sequence[Any]],  # [P][n] final answers, None = no answer
    correct: Any,  # [P][n] 0/1
    *,
    k: int,
    num_subsets: int = 100,
    seed: int = 0,
    equiv: Equiv | None = None,
) -> float:
    """maj@k: accuracy of the majority answer among k samples, averaged over problems.

    With n > k samples the vote runs on k-subsets: all of them when there are
    at most `num_subsets`, else `num_subsets` seeded random ones, each in
    random order. The vote is `rewardjax.inference.selection.majority_vote`
    (ties → the answer seen first in that random order, i.e. a random
    tie-break; None does not vote), scored by the correctness of the chosen
    sample.
    Source: self-consistency (Wang et al., 2022).

    Args:
      answers: [P][n] final answers.
      correct: [P][n] correctness of each sample.
      k: samples per vote, 1 <= k <= n.
      num_subsets: number of k-subsets per problem when n > k.
      seed: seed of the subset draws.
      equiv: optional answer equivalence `equiv(a, b) -> bool`.

    Returns:
      maj@k averaged over problems.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"maj@k needs an integer k >= 1, got {k!r}")
    lengths = [len(row) for row in answers]
    if lengths and min(lengths) < k:
        p = int(np.argmin(lengths))
        raise ValueError(f"maj@k needs k <= n: k = {k} > n = {lengths[p]} (problem {p})")
    curves = accuracy_vs_n(
        answers, correct, ns=(int(k),), num_subsets=num_subsets, seed=seed, equiv=equiv
    )
    return curves["majority_vote"][int(k)]
