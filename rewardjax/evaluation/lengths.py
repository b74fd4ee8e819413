"""Response-length statistics: lengths of all, correct and incorrect responses,
truncation rate, and the accuracy-vs-length Pareto front across runs.

Length-aware RL methods (DRPO, CRF, SAR, GRPO-λ) are judged on how short their
answers get without losing accuracy; these helpers give the numbers to put
side by side. Host-side numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardjax.registry import METRICS


def _summary(lengths: np.ndarray, suffix: str) -> dict[str, float]:
    if lengths.size == 0:
        nan = float("nan")
        return {
            f"length_mean{suffix}": nan,
            f"length_median{suffix}": nan,
            f"length_p90{suffix}": nan,
        }
    return {
        f"length_mean{suffix}": float(lengths.mean()),
        f"length_median{suffix}": float(np.median(lengths)),
        f"length_p90{suffix}": float(np.percentile(lengths, 90)),
    }


@METRICS.register("length_stats")
def length_stats(
    lengths: Any,  # [B] completion tokens per response (Σ_t mask)
    correct: Any = None,  # [B] optional 0/1 correctness
    *,
    max_length: int | None = None,
    truncated: Any = None,  # [B] optional bool: hit the length cap without EOS
) -> dict[str, float]:
    """Mean, median and 90th percentile of response length; truncation rate.

      length_{mean,median,p90}             over all responses
      length_{mean,median,p90}_correct     over correct responses (with `correct`)
      length_{mean,median,p90}_incorrect   over incorrect responses
      accuracy                             mean correctness (with `correct`)
      truncation_rate                      mean 1[truncated] (with `truncated` or
                                           `max_length`: length >= max_length)

    p90 uses linear interpolation (numpy's default). A group with no response
    (say, no correct answer) gets nan for its statistics. Sources: the length
    evaluations of DRPO, CRF, SAR and GRPO-λ.

    Args:
      lengths: [B] token counts, >= 0.
      correct: optional [B] correctness, 0/1.
      max_length: optional generation cap; a response of this length counts as
        truncated when `truncated` is not given (one ending with EOS exactly at
        the cap is then counted too: pass `truncated` to be exact).
      truncated: optional [B] truncation flags, taking precedence over
        `max_length`.

    Returns:
      A flat {name: float} dict, ready for a metric writer.
    """
    length = np.asarray(lengths, dtype=np.float64)
    if length.ndim != 1 or length.size == 0:
        raise ValueError(f"lengths must be a non-empty 1-D [B] array, got shape {length.shape}")
    bad = np.flatnonzero(~np.isfinite(length) | (length < 0))
    if bad.size:
        raise ValueError(f"lengths[{bad[0]}] = {length[bad[0]]}: lengths must be finite and >= 0")
    stats = _summary(length, "")
    if correct is not None:
        right = np.asarray(correct, dtype=np.float64)
        if right.shape != length.shape:
            raise ValueError(f"correct has shape {right.shape} but lengths has {length.shape}")
        if not np.isin(right, (0.0, 1.0)).all():
            raise ValueError("correct must hold 0/1 values")
        right = right.astype(bool)
        stats.update(_summary(length[right], "_correct"))
        stats.update(_summary(length[~right], "_incorrect"))
        stats["accuracy"] = float(right.mean())
    if truncated is not None:
        flags = np.asarray(truncated)
        if flags.shape != length.shape:
            raise ValueError(f"truncated has shape {flags.shape} but lengths has {length.shape}")
        stats["truncation_rate"] = float(flags.astype(bool).mean())
    elif max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        over = np.flatnonzero(length > max_length)
        if over.size:
            raise ValueError(
                f"lengths[{over[0]}] = {length[over[0]]} exceeds max_length = {max_length}"
            )
        stats["truncation_rate"] = float(np.mean(length >= max_length))
    return stats


def length_accuracy_pareto(
    mean_lengths: Any,  # [M] mean response length of each run / config
    accuracies: Any,  # [M] accuracy of each run / config
) -> np.ndarray:
    """Which runs lie on the accuracy-vs-length Pareto front (shorter and more accurate).

    Run i is dominated when some run j has length_j <= length_i and
    accuracy_j >= accuracy_i with at least one strict; the front is every run
    that is not dominated (duplicates of a front point are all kept).

    Args:
      mean_lengths: [M] mean lengths.
      accuracies: [M] accuracies.

    Returns:
      [M] bool mask of the non-dominated runs.
    """
    length = np.asarray(mean_lengths, dtype=np.float64)
    accuracy = np.asarray(accuracies, dtype=np.float64)
    if length.ndim != 1 or length.shape != accuracy.shape or length.size == 0:
        raise ValueError(
            f"mean_lengths and accuracies must be non-empty 1-D of equal length, got shapes "
            f"{length.shape} and {accuracy.shape}"
        )
    if not (np.isfinite(length).all() and np.isfinite(accuracy).all()):
        raise ValueError("mean_lengths and accuracies must be finite")
    no_worse = (length[None, :] <= length[:, None]) & (accuracy[None, :] >= accuracy[:, None])
    better = (length[None, :] < length[:, None]) | (accuracy[None, :] > accuracy[:, None])
    dominated = (no_worse & better).any(axis=1)
    return ~dominated
