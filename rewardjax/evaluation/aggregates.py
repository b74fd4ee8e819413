"""Aggregate statistics over runs × tasks with stratified-bootstrap confidence intervals.

Scores form an [R, J] matrix: R runs (seeds) of one method on J tasks. The
aggregates are those of "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (rliable): interquartile mean, optimality gap, mean and
median of task means, performance profiles and the probability of
improvement P(X > Y). Point estimates come from the `rliable` library itself;
the bootstrap is re-implemented here, vectorised over replicates and seeded by
a numpy Generator (rliable's own bootstrap draws from numpy's global RNG and
goes through `arch`), with the same resampling scheme:

  * stratified: each task keeps its column and draws R runs with replacement
    from its own runs;
  * `task_bootstrap=True` also draws the J task columns with replacement;
  * percentile intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rliable import metrics as rliable_metrics

from rewardjax.registry import METRICS

# Largest number of resampled scores held at once (replicates × R × J).
_CHUNK_ELEMENTS = 4_000_000


def _scores(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be [R, J] (runs × tasks), got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} needs at least one run and one task, got shape {array.shape}")
    if not np.isfinite(array).all():
        r, j = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name}[{r}, {j}] is {array[r, j]}: scores must be finite")
    return array


def _check_bootstrap(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < 1:
        raise ValueError(f"reps must be an integer >= 1, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


# Batched aggregates: [..., R, J] → [...].


def batched_iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean: the 25%-trimmed mean over all R·J scores (scipy's trim_mean)."""
    flat = np.sort(scores.reshape(*scores.shape[:-2], -1), axis=-1)
    cut = int(0.25 * flat.shape[-1])
    return flat[..., cut : flat.shape[-1] - cut].mean(axis=-1)


def batched_optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """γ − mean(min(x, γ)) over all R·J scores."""
    return gamma - np.minimum(scores, gamma).mean(axis=(-2, -1))


def batched_mean(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of the per-task mean over runs."""
    return scores.mean(axis=-2).mean(axis=-1)


def batched_median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of the per-task mean over runs."""
    return np.median(scores.mean(axis=-2), axis=-1)


def stratified_bootstrap_ci(
    scores: Any,  # [R, J]
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    reps: int,
    confidence: float = 0.95,
    task_bootstrap: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of `statistic` under the stratified bootstrap.

    Args:
      scores: [R, J] runs × tasks.
      statistic: maps a batch of resampled matrices [C, R, J] to [C] or [C, K].
      reps: bootstrap replicates.
      confidence: interval coverage.
      task_bootstrap: also resample the tasks.
      seed: seed of `np.random.default_rng`.

    Returns:
      (low, high), each of shape [] or [K].
    """
    scores = _scores(scores, "scores")
    _check_bootstrap(reps, confidence)
    num_runs, num_tasks = scores.shape
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // scores.size)
    values = []
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        run_index = rng.integers(0, num_runs, size=(size, num_runs, num_tasks))
        if task_bootstrap:
            task_index = rng.integers(0, num_tasks, size=(size, 1, num_tasks))
        else:
            task_index = np.arange(num_tasks)[None, None, :]
        values.append(np.asarray(statistic(scores[run_index, task_index])))
    stats = np.concatenate(values, axis=0)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [tail, 100.0 - tail], axis=0)
    return low, high


@METRICS.register("rliable_aggregates")
def rliable_aggregates(
    scores: Any,  # [R, J] runs × tasks
    *,
    reps: int = 50_000,
    confidence: float = 0.95,
    gamma: float = 1.0,
    task_bootstrap: bool = False,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """IQM, optimality gap, mean and median with stratified-bootstrap percentile CIs.

      IQM            = 25%-trimmed mean of all R·J scores
      optimality gap = γ − mean(min(x, γ))
      mean, median   = mean / median over tasks of the per-task mean over runs

    Source: "Deep Reinforcement Learning at the Edge of the Statistical
    Precipice" (rliable 1.2 computes the point estimates). IQM(1..8) = 4.5.

    Args:
      scores: [R, J] scores, e.g. accuracy of R seeds on J tasks.
      reps: bootstrap replicates (rliable's default is 50 000).
      confidence: interval coverage.
      gamma: optimality threshold γ (scores above it count as γ).
      task_bootstrap: also resample tasks (uncertainty over the task set).
      seed: bootstrap seed.

    Returns:
      {"iqm" | "optimality_gap" | "mean" | "median":
         {"estimate", "ci_low", "ci_high"}}.
    """
    scores = _scores(scores, "scores")
    estimates = {
        "iqm": rliable_metrics.aggregate_iqm(scores),
        "optimality_gap": rliable_metrics.aggregate_optimality_gap(scores, gamma=gamma),
        "mean": rliable_metrics.aggregate_mean(scores),
        "median": rliable_metrics.aggregate_median(scores),
    }

    def statistic(batch: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                batched_iqm(batch),
                batched_optimality_gap(batch, gamma),
                batched_mean(batch),
                batched_median(batch),
            ],
            axis=-1,
        )

    low, high = stratified_bootstrap_ci(
        scores,
        statistic,
        reps=reps,
        confidence=confidence,
        task_bootstrap=task_bootstrap,
        seed=seed,
    )
    return {
        name: {"estimate": float(estimates[name]), "ci_low": float(lo), "ci_high": float(hi)}
        for name, lo, hi in zip(estimates, low, high)
    }


def performance_profile(
    scores: Any,  # [R, J]
    taus: Sequence[float],  # [K] thresholds
    *,
    per_run: bool = True,
    reps: int = 2_000,
    confidence: float = 0.95,
    task_bootstrap: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Performance profile: the fraction of scores above each threshold τ, with CIs.

      per_run=True:  F(τ) = mean_{r,j} 1[x_rj > τ]        (score distribution)
      per_run=False: F(τ) = mean_j 1[mean_r x_rj > τ]     (task-mean distribution)

    Source: "Deep Reinforcement Learning at the Edge of the Statistical
    Precipice" (rliable's `create_performance_profile`, 2 000 replicates).

    Args:
      scores: [R, J] scores.
      taus: [K] thresholds.
      per_run: score distribution over runs × tasks (rliable's default) or over
        task means.
      reps: bootstrap replicates.
      confidence: interval coverage.
      task_bootstrap: also resample tasks.
      seed: bootstrap seed.

    Returns:
      {"taus": [K], "profile": [K], "ci_low": [K], "ci_high": [K]}.
    """
    scores = _scores(scores, "scores")
    tau = np.asarray(taus, dtype=np.float64)
    if tau.ndim != 1 or tau.size == 0:
        raise ValueError(f"taus must be a non-empty 1-D list, got shape {tau.shape}")

    def statistic(batch: np.ndarray) -> np.ndarray:
        if per_run:
            return (batch[..., None] > tau).mean(axis=(-3, -2))
        return (batch.mean(axis=-2)[..., None] > tau).mean(axis=-2)

    profile = statistic(scores)
    low, high = stratified_bootstrap_ci(
        scores,
        statistic,
        reps=reps,
        confidence=confidence,
        task_bootstrap=task_bootstrap,
        seed=seed,
    )
    return {"taus": tau, "profile": profile, "ci_low": low, "ci_high": high}


def batched_probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """mean_j [P(x_j > y_j) + ½·P(x_j = y_j)] over run pairs; [..., Rx, J], [..., Ry, J] → [...]."""
    left, right = x[..., :, None, :], y[..., None, :, :]
    per_task = (left > right).mean(axis=(-3, -2)) + 0.5 * (left == right).mean(axis=(-3, -2))
    return per_task.mean(axis=-1)


def probability_of_improvement(
    scores_x: Any,  # [Rx, J] method X
    scores_y: Any,  # [Ry, J] method Y, same tasks
    *,
    reps: int = 50_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """P(X > Y): mean over tasks of the Mann–Whitney U/(n_x·n_y), with a bootstrap CI.

    For task j, P(X_j > Y_j) = (1/(n_x n_y)) Σ_{a,b} (1[x_aj > y_bj] + ½·1[x_aj = y_bj]);
    two identical sets give 0.5. The bootstrap resamples the runs of X and of Y
    independently within each task (rliable's StratifiedIndependentBootstrap).
    Source: "Deep Reinforcement Learning at the Edge of the Statistical
    Precipice" (rliable 1.2 computes the point estimate).

    Args:
      scores_x: [Rx, J] scores of X.
      scores_y: [Ry, J] scores of Y on the same J tasks.
      reps: bootstrap replicates.
      confidence: interval coverage.
      seed: bootstrap seed.

    Returns:
      {"estimate", "ci_low", "ci_high"}.
    """
    x = _scores(scores_x, "scores_x")
    y = _scores(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"scores_x has {x.shape[1]} tasks but scores_y has {y.shape[1]}")
    _check_bootstrap(reps, confidence)
    estimate = float(rliable_metrics.probability_of_improvement(x, y))
    (rx, num_tasks), ry = x.shape, y.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (rx * ry * num_tasks))
    tasks = np.arange(num_tasks)[None, None, :]
    values = []
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        x_batch = x[rng.integers(0, rx, size=(size, rx, num_tasks)), tasks]
        y_batch = y[rng.integers(0, ry, size=(size, ry, num_tasks)), tasks]
        values.append(batched_probability_of_improvement(x_batch, y_batch))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(np.concatenate(values), [tail, 100.0 - tail])
    return {"estimate": estimate, "ci_low": float(low), "ci_high": float(high)}


def mean_ci_over_seeds(
    groups: dict[str, Sequence[float]],
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Mean and percentile bootstrap CI over seeds per group (rliable's interval, seeded).

    The table of `experiments/sweep.py` and of the benchmarks: each group is
    one method on one task, its values one final score per seed. The interval
    is `stratified_bootstrap_ci` of the mean, as rliable's
    `get_interval_estimates` computes it, but drawn from a seeded Generator:
    rliable draws from numpy's global RNG, so its intervals changed with
    whatever ran before.

    Returns:
      {group: {mean, ci_low, ci_high, num_seeds}} for every non-empty group.
    """
    _check_bootstrap(reps, confidence)
    out = {}
    for name, values in groups.items():
        if not len(values):
            continue
        scores = _scores(np.reshape(np.asarray(values, np.float64), (-1, 1)), name)
        low, high = stratified_bootstrap_ci(
            scores, batched_mean, reps=reps, confidence=confidence, seed=seed
        )
        out[name] = {
            "mean": float(rliable_metrics.aggregate_mean(scores)),
            "ci_low": float(low),
            "ci_high": float(high),
            "num_seeds": len(values),
        }
    return out
