"""Consensus filtering of step labels, and the scores of a labeler against exact labels.

"The Lessons of Developing Process Reward Models in Mathematical Reasoning"
keeps a solution's Monte Carlo labels only where a second labeler (there an
LLM judge) locates the same first error. Any two labelers that give a first
error per solution can be compared here: MC labels, a trained PRM's
thresholded step scores, the exact labels of a procedural task.

  keep = consensus_mask(mc_first_errors, prm_first_errors(prm, prompts, steps))
  kept = [r for r, k in zip(records, keep) if k]       # keep.mean(): the kept fraction
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "consensus_mask",
    "first_error_accuracy",
    "normalise_first_error",
    "prm_first_errors",
    "step_label_f1",
]


def normalise_first_error(first_error: int | None, num_steps: int) -> int:
    """ProcessBench convention: the first wrong step, or −1 when there is none.

    An index at or past the last step (an incomplete solution whose written
    steps are all right) counts as −1, as in `data.steps.first_error_label`.
    """
    if first_error is None or first_error >= num_steps:
        return -1
    return int(first_error)


def consensus_mask(
    first_errors_a: Sequence[int | None],
    first_errors_b: Sequence[int | None],
    num_steps: Sequence[int],
) -> np.ndarray:
    """[N] bool: the two labelers put the first error at the same step (or both at none).

    A None on either side that stands for "skipped" must be removed before
    calling; here None means "no error".
    """
    if not len(first_errors_a) == len(first_errors_b) == len(num_steps):
        raise ValueError(
            f"consensus needs one first error per solution from each labeler: got "
            f"{len(first_errors_a)}, {len(first_errors_b)} for {len(num_steps)} solutions"
        )
    return np.array(
        [
            normalise_first_error(a, s) == normalise_first_error(b, s)
            for a, b, s in zip(first_errors_a, first_errors_b, num_steps)
        ],
        bool,
    )


def prm_first_errors(
    step_scores: Sequence[np.ndarray], *, threshold: float = 0.5
) -> list[int | None]:
    """A PRM's first error: the first step scored below `threshold` (None: none is)."""
    out = []
    for scores in step_scores:
        below = np.flatnonzero(np.asarray(scores) < threshold)
        out.append(int(below[0]) if below.size else None)
    return out


def first_error_accuracy(
    predicted: Sequence[int | None], exact: Sequence[int | None], num_steps: Sequence[int]
) -> float:
    """Fraction of solutions whose predicted first error equals the exact one (−1 = none)."""
    return float(np.mean(consensus_mask(predicted, exact, num_steps)))


def step_label_f1(
    predicted: Sequence[Sequence[float]],
    exact: Sequence[Sequence[float]],
    *,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Step-level agreement of predicted labels with exact 0/1 labels.

    The positive class is a wrong step (label below `threshold`): a labeler
    that calls every step right has recall 0, not F1 near 1.

    Returns:
      {"f1", "precision", "recall", "accuracy"} over all steps.
    """
    pred, true = [], []
    for p, e in zip(predicted, exact, strict=True):
        if len(p) != len(e):
            raise ValueError(f"{len(p)} predicted labels for {len(e)} steps")
        pred += [float(x) < threshold for x in p]
        true += [float(x) < 0.5 for x in e]
    pred, true = np.array(pred, bool), np.array(true, bool)
    tp = float(np.sum(pred & true))
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(true.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(f1=f1, precision=precision, recall=recall, accuracy=float(np.mean(pred == true)))
