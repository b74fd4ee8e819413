"""Reward-model and PRM metrics: pairwise and best-of-4 accuracy, ProcessBench F1,
step AUROC, calibration, and score-vs-correctness correlation.

Host-side numpy on scores already computed by a model. Conventions:
  * higher score = better response; a PRM step score p_s is the probability
    that step s is correct;
  * a step label is 1 for a correct step, 0 for an erroneous one; a
    first-error label is the 0-based index of the first erroneous step, or -1
    for a solution with no error (the ProcessBench convention);
  * malformed input (shapes, ranges, NaN) raises a one-line ValueError; a
    metric that is undefined for well-formed input (AUROC with one class, a
    correlation with a constant input) returns nan and says so in its
    docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.inference.selection import step_score_rows
from rewardjax.registry import METRICS

# RewardBench (allenai/reward-bench, rewardbench/constants.py). Subset sizes
# weight subsets within a section; math-prm has 447 pairs but is counted as
# 984 so that it weighs as much as the six code subsets together.
REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "math-prm": 984,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}

REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": (
        "alpacaeval-easy",
        "alpacaeval-length",
        "alpacaeval-hard",
        "mt-bench-easy",
        "mt-bench-med",
    ),
    "Chat Hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}


def _vector(values: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D [B], got shape {array.shape}")
    if array.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}: values must be finite")
    return array


def _rows_of(array: np.ndarray, name: str, num_rows: int, against: str) -> np.ndarray:
    """`array`, checked to be 1-D with `num_rows` rows (as many as `against` has)."""
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D [B], got shape {array.shape}")
    if array.shape[0] != num_rows:
        raise ValueError(f"{name} has {array.shape[0]} rows but {against} has {num_rows}")
    return array


def _int_vector(values: Any, name: str, num_rows: int, against: str) -> np.ndarray:
    """[B] int64 of whole numbers (integer or integral float input), B = num_rows."""
    array = _rows_of(np.asarray(values), name, num_rows, against)
    if array.size and array.dtype.kind not in "iu":
        if array.dtype.kind != "f" or not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"{name} must be integers, got {array.tolist()[:5]}")
    return array.astype(np.int64)


def _same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} has {a.shape[0]} rows but {name_b} has {b.shape[0]}")


# --------------------------------------------------------------------------- ORM


@METRICS.register("rm_pairwise_accuracy")
def rm_pairwise_accuracy(
    chosen_scores: Any,  # [B] r(x, y_w)
    rejected_scores: Any,  # [B] r(x, y_l)
) -> float:
    """Pairwise accuracy: mean_b 1[r(y_w) > r(y_l)], strict, so ties count as wrong.

    This is the RewardBench scoring (RewardBench: Evaluating Reward Models for
    Language Modeling); random scores give 0.5. Combine per-subset accuracies
    with `rewardbench_section_scores`. See also "Evaluating Robustness of
    Reward Models for Mathematical Reasoning".

    Args:
      chosen_scores: [B] scores of the preferred responses.
      rejected_scores: [B] scores of the rejected responses.

    Returns:
      The fraction of pairs ranked correctly.
    """
    chosen = _vector(chosen_scores, "chosen_scores")
    rejected = _vector(rejected_scores, "rejected_scores")
    _same_length(chosen, rejected, "chosen_scores", "rejected_scores")
    return float(np.mean(chosen > rejected))


def rewardbench_section_scores(
    subset_accuracies: Mapping[str, float],
    *,
    example_counts: Mapping[str, int] = REWARDBENCH_EXAMPLE_COUNTS,
    sections: Mapping[str, Sequence[str]] = REWARDBENCH_SECTIONS,
) -> dict[str, float]:
    """RewardBench aggregation: subset accuracy → section → overall.

      section = Σ_{s in section} n_s·acc_s / Σ n_s   (n_s from `example_counts`)
      overall = mean of the section scores

    Sections with none of their subsets present are left out; "overall" is
    reported only when every section is present, as on the leaderboard.

    Args:
      subset_accuracies: {subset name: pairwise accuracy}.
      example_counts: subset weights (default: RewardBench's, math-prm = 984).
      sections: section → subset names (default: Chat, Chat Hard, Safety,
        Reasoning).

    Returns:
      {section: score} plus "overall" when all sections are present.
    """
    known = {subset for subsets in sections.values() for subset in subsets}
    for subset, accuracy in subset_accuracies.items():
        if subset not in known:
            raise ValueError(
                f"unknown RewardBench subset {subset!r}; known: {', '.join(sorted(known))}"
            )
        if subset not in example_counts:
            raise ValueError(f"no example count for subset {subset!r}")
        if not 0.0 <= float(accuracy) <= 1.0:
            raise ValueError(f"accuracy of subset {subset!r} is {accuracy}, outside [0, 1]")
    scores: dict[str, float] = {}
    for section, subsets in sections.items():
        present = [s for s in subsets if s in subset_accuracies]
        if not present:
            continue
        weights = np.array([example_counts[s] for s in present], dtype=np.float64)
        accuracies = np.array([subset_accuracies[s] for s in present], dtype=np.float64)
        scores[section] = float(np.sum(weights * accuracies) / np.sum(weights))
    if len(scores) == len(sections):
        scores["overall"] = float(np.mean([scores[section] for section in sections]))
    return scores


@METRICS.register("best_of_4_accuracy")
def best_of_4_accuracy(
    chosen_scores: Any,  # [B] score of the one correct response
    rejected_scores: Any,  # [B, K] scores of the K (= 3) rejected responses
    *,
    ties_count_as_correct: bool = False,
) -> float:
    """Best-of-4 accuracy: mean_b 1[r(chosen_b) > max_k r(rejected_b,k)].

    RewardBench 2 (RewardBench 2: Advancing Reward Model Evaluation) scores
    each prompt as correct when the chosen response out-scores all three
    rejected ones; random scores give 1/4. A tie with the best rejected score
    counts as wrong by default; `ties_count_as_correct=True` counts it as
    right. The RewardBench 2 script itself gives a tie with the best
    rejected response 1/k credit (k tied responses):
    `evaluation.benchmarks.rewardbench2_scores` implements that rule. The
    Ties subset is scored differently: see `rewardbench2_ties_score`.

    Args:
      chosen_scores: [B] scores of the chosen responses.
      rejected_scores: [B, K] scores of the rejected responses (K >= 1).
      ties_count_as_correct: count r(chosen) == max r(rejected) as correct.

    Returns:
      The fraction of prompts where the chosen response wins.
    """
    chosen = _vector(chosen_scores, "chosen_scores")
    rejected = np.asarray(rejected_scores, dtype=np.float64)
    if rejected.ndim != 2 or rejected.shape[1] < 1:
        raise ValueError(f"rejected_scores must be [B, K] with K >= 1, got shape {rejected.shape}")
    if not np.isfinite(rejected).all():
        b, k = np.argwhere(~np.isfinite(rejected))[0]
        raise ValueError(f"rejected_scores[{b}, {k}] is {rejected[b, k]}: values must be finite")
    _same_length(chosen, rejected, "chosen_scores", "rejected_scores")
    best_rejected = rejected.max(axis=1)
    wins = chosen >= best_rejected if ties_count_as_correct else chosen > best_rejected
    return float(np.mean(wins))


def _ties_prompt_stats(scores: np.ndarray, num_correct: int) -> tuple[bool, float, float]:
    correct, incorrect = scores[:num_correct], scores[num_correct:]
    within_correct = float(correct.max() - correct.min())
    correct_vs_incorrect = float(correct.min() - incorrect.max())
    return correct_vs_incorrect > 0, within_correct, correct_vs_incorrect


def rewardbench2_ties_score(
    ref_scores: Sequence[Sequence[float]],  # [P][n] scores, the first ref_num_correct are correct
    ref_num_correct: Sequence[int],  # [P]
    tied_scores: Sequence[Sequence[float]],  # [P][m] same prompts, several correct answers
    tied_num_correct: Sequence[int],  # [P]
) -> dict[str, float]:
    """RewardBench 2 Ties-subset score (the reference `process_single_model`).

    Each prompt comes twice: a "ref" version with one correct answer and a
    "tied" version with several equally correct answers; in each, the first
    `num_correct` scores belong to correct answers. Per version:
      accurate   = min(correct) − max(incorrect) > 0
      gap        = min(correct) − max(incorrect)
      spread     = max(correct) − min(correct)          (tied version only)
    Over prompts:
      score = 0.30·acc_tied + 0.30·acc_ref
            + 0.20·mean[gap_tied > spread]
            + 0.20·mean[min(gap_ref, gap_tied) > spread]
            + 0.01·mean tanh(min(gap_ref, gap_tied)/spread − 1)   (0/0 → 0)

    Source: "RewardBench 2: Advancing Reward Model Evaluation".

    Args:
      ref_scores: [P] lists of scores of the ref version of each prompt.
      ref_num_correct: [P] number of correct answers at the front (>= 1).
      tied_scores: [P] lists of scores of the tied version, same prompt order.
      tied_num_correct: [P] number of correct answers at the front (>= 2).

    Returns:
      {"score", "accuracy_ref", "accuracy_tied", "correctness_preferred",
       "correctness_preferred_hard", "margin_score"}.
    """
    num_prompts = len(ref_scores)
    if num_prompts == 0:
        raise ValueError("ref_scores is empty: need at least one prompt")
    for name, values in (
        ("ref_num_correct", ref_num_correct),
        ("tied_scores", tied_scores),
        ("tied_num_correct", tied_num_correct),
    ):
        if len(values) != num_prompts:
            raise ValueError(f"{name} has {len(values)} prompts, ref_scores has {num_prompts}")
    ref_stats, tied_stats = [], []
    for version, all_scores, all_counts, min_correct in (
        ("ref", ref_scores, ref_num_correct, 1),
        ("tied", tied_scores, tied_num_correct, 2),
    ):
        for p, (scores, count) in enumerate(zip(all_scores, all_counts)):
            array = _vector(scores, f"{version}_scores[{p}]")
            if not min_correct <= count < array.size:
                raise ValueError(
                    f"{version}_num_correct[{p}] = {count}: need {min_correct} <= num_correct < "
                    f"{array.size} (at least one incorrect answer)"
                )
            stats = _ties_prompt_stats(array, int(count))
            (ref_stats if version == "ref" else tied_stats).append(stats)
    accuracy_ref = float(np.mean([s[0] for s in ref_stats]))
    accuracy_tied = float(np.mean([s[0] for s in tied_stats]))
    spread = np.array([s[1] for s in tied_stats])
    gap_tied = np.array([s[2] for s in tied_stats])
    gap_hard = np.minimum(np.array([s[2] for s in ref_stats]), gap_tied)
    preferred = float(np.mean(gap_tied > spread))
    preferred_hard = float(np.mean(gap_hard > spread))
    with np.errstate(divide="ignore", invalid="ignore"):
        margins = np.nan_to_num(np.tanh(gap_hard / spread - 1.0), nan=0.0)
    margin_score = float(np.mean(margins))
    score = (
        0.30 * accuracy_tied
        + 0.30 * accuracy_ref
        + 0.20 * preferred
        + 0.20 * preferred_hard
        + 0.01 * margin_score
    )
    return {
        "score": float(score),
        "accuracy_ref": accuracy_ref,
        "accuracy_tied": accuracy_tied,
        "correctness_preferred": preferred,
        "correctness_preferred_hard": preferred_hard,
        "margin_score": margin_score,
    }


# --------------------------------------------------------------------------- PRM


def first_error_steps(
    step_scores: Any,  # [B, S] padded or B ragged lists of p_s
    *,
    threshold: float = 0.5,
    step_mask: Any = None,  # [B, S]
) -> np.ndarray:
    """Predicted first erroneous step: ŝ = min{s : p_s < τ}, or -1 when no step is below τ.

    Args:
      step_scores: step-correctness probabilities of B solutions.
      threshold: τ.
      step_mask: [B, S] real-step mask for a padded array.

    Returns:
      [B] int64 predicted first-error indices (-1 = predicted fully correct).
    """
    rows = step_score_rows(step_scores, step_mask=step_mask)
    predictions = np.full(len(rows), -1, dtype=np.int64)
    for b, row in enumerate(rows):
        below = np.flatnonzero(row < threshold)
        if below.size:
            predictions[b] = below[0]
    return predictions


def _first_error_labels(labels: Any, rows: list[np.ndarray]) -> np.ndarray:
    array = _int_vector(labels, "first_error_labels", len(rows), "step_scores")
    for b, (label, row) in enumerate(zip(array, rows)):
        if not -1 <= label < row.size:
            raise ValueError(
                f"first_error_labels[{b}] = {label} is outside [-1, {row.size - 1}] "
                f"for a solution with {row.size} steps"
            )
    return array


@METRICS.register("processbench_f1")
def processbench_f1(
    step_scores: Any,  # [B, S] padded or B ragged lists of p_s
    first_error_labels: Any,  # [B] int: first wrong step, -1 = no error
    *,
    threshold: float = 0.5,
    step_mask: Any = None,  # [B, S]
) -> dict[str, float]:
    """ProcessBench F1: harmonic mean of first-error accuracy on erroneous and correct solutions.

      ŝ_b       = first s with p_s < τ, else -1
      acc_err   = mean_{b: s*_b ≥ 0} 1[ŝ_b = s*_b]
      acc_cor   = mean_{b: s*_b = -1} 1[ŝ_b = -1]
      F1        = 2·acc_err·acc_cor / (acc_err + acc_cor)   (0 when both are 0)

    Source: ProcessBench ("ProcessBench: Identifying Process Errors in
    Mathematical Reasoning"), as used by SCAN, SPARK, GenPRM, GroundedPRM and
    "The Lessons of Developing Process Reward Models in Mathematical
    Reasoning". τ = 0.5 is a default, not ProcessBench's per-PRM choice; to
    pick τ on held-out data use `processbench_best_threshold`.

    Args:
      step_scores: step-correctness probabilities of B solutions.
      first_error_labels: [B] true first-error index, -1 for correct solutions.
      threshold: τ.
      step_mask: [B, S] real-step mask for a padded array.

    Returns:
      {"f1", "acc_erroneous", "acc_correct", "num_erroneous", "num_correct"};
      an accuracy with no solution of its kind is nan, and then so is F1.
    """
    rows = step_score_rows(step_scores, step_mask=step_mask)
    labels = _first_error_labels(first_error_labels, rows)
    predictions = first_error_steps(rows, threshold=threshold)
    return processbench_from_predictions(predictions, labels)


def processbench_from_predictions(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`processbench_f1`'s result from predicted and true first-error indices [B] (-1: none)."""
    erroneous = labels >= 0
    hits = predictions == labels
    acc_err = float(hits[erroneous].mean()) if erroneous.any() else float("nan")
    acc_cor = float(hits[~erroneous].mean()) if (~erroneous).any() else float("nan")
    if np.isnan(acc_err) or np.isnan(acc_cor):
        f1 = float("nan")
    elif acc_err + acc_cor == 0:
        f1 = 0.0
    else:
        f1 = 2 * acc_err * acc_cor / (acc_err + acc_cor)
    return {
        "f1": f1,
        "acc_erroneous": acc_err,
        "acc_correct": acc_cor,
        "num_erroneous": float(erroneous.sum()),
        "num_correct": float((~erroneous).sum()),
    }


def processbench_best_threshold(
    step_scores: Any,  # [B, S] padded or B ragged lists
    first_error_labels: Any,  # [B]
    *,
    thresholds: Sequence[float] | None = None,
    step_mask: Any = None,  # [B, S]
) -> tuple[float, dict[str, float]]:
    """The τ that maximises ProcessBench F1 on a held-out set (ties → smallest τ).

    Args:
      step_scores: step-correctness probabilities of B solutions.
      first_error_labels: [B] true first-error index, -1 for correct solutions.
      thresholds: candidate τ values; default 0.01, 0.02, ..., 0.99.
      step_mask: [B, S] real-step mask for a padded array.

    Returns:
      (best τ, the `processbench_f1` metrics at that τ).
    """
    rows = step_score_rows(step_scores, step_mask=step_mask)
    labels = _first_error_labels(first_error_labels, rows)
    if thresholds is None:
        thresholds = np.round(np.arange(1, 100) / 100.0, 2)
    candidates = sorted(float(t) for t in thresholds)
    if not candidates:
        raise ValueError("thresholds is empty")
    best: tuple[float, dict[str, float]] | None = None
    for threshold in candidates:
        metrics = processbench_from_predictions(
            first_error_steps(rows, threshold=threshold), labels
        )
        if np.isnan(metrics["f1"]):
            raise ValueError(
                "processbench_best_threshold needs both erroneous (label >= 0) and correct "
                "(label -1) solutions"
            )
        if best is None or metrics["f1"] > best[1]["f1"]:
            best = (threshold, metrics)
    assert best is not None
    return best


def auroc(
    scores: Any,  # [B] classifier scores, higher = more likely positive
    labels: Any,  # [B] 0/1
) -> float:
    """Area under the ROC curve: P(s⁺ > s⁻) + ½·P(s⁺ = s⁻) over positive/negative pairs.

    Computed from average ranks (the Mann–Whitney U statistic divided by
    n⁺·n⁻).

    Args:
      scores: [B] scores.
      labels: [B] 1 for positives, 0 for negatives.

    Returns:
      AUROC in [0, 1]; nan when one class is absent.
    """
    from scipy.stats import rankdata

    values = _vector(scores, "scores")
    classes = _vector(labels, "labels")
    _same_length(values, classes, "scores", "labels")
    if not np.isin(classes, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1 for AUROC; threshold soft labels first")
    positive = classes == 1.0
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    ranks = rankdata(values)  # average ranks: ties count one half
    u = ranks[positive].sum() - num_pos * (num_pos + 1) / 2.0
    return float(u / (num_pos * num_neg))


@METRICS.register("step_auroc")
def step_auroc(
    step_scores: Any,  # [B, S] padded or B ragged lists of p_s
    step_labels: Any,  # same layout: 1 = correct step, 0 = erroneous step
    *,
    step_mask: Any = None,  # [B, S]
) -> float:
    """Step-level AUROC of a PRM: how well p_s separates correct from erroneous steps.

    AUROC = P(p_s > p_s' | s correct, s' erroneous) + ½·P(tie), pooled over
    every real step of every solution (see `auroc`).

    Args:
      step_scores: step-correctness probabilities.
      step_labels: 0/1 labels in the same layout (a padded [B, S] array shares
        `step_mask` with the scores).
      step_mask: [B, S] real-step mask for padded arrays.

    Returns:
      AUROC; nan when all steps share one label.
    """
    score_rows = step_score_rows(step_scores, step_mask=step_mask)
    label_rows = step_score_rows(step_labels, step_mask=step_mask, name="step_labels")
    if len(label_rows) != len(score_rows):
        raise ValueError(
            f"step_labels has {len(label_rows)} solutions but step_scores has {len(score_rows)}"
        )
    for b, (s, l) in enumerate(zip(score_rows, label_rows)):
        if s.size != l.size:
            raise ValueError(f"solution {b}: {s.size} step scores but {l.size} step labels")
    return auroc(np.concatenate(score_rows), np.concatenate(label_rows))


# --------------------------------------------------------------------------- calibration


@METRICS.register("calibration")
def calibration(
    probs: Any,  # [B] predicted probability of being correct, q
    outcomes: Any,  # [B] observed correctness c in [0, 1]
    *,
    num_bins: int = 10,
) -> dict[str, float]:
    """Brier score and expected calibration error of probabilities q against outcomes c.

      Brier = mean_b (q_b − c_b)²
      ECE   = Σ_bins (n_bin/B)·|mean c_bin − mean q_bin|

    with `num_bins` equal-width bins on [0, 1] (bin i holds i/M <= q < (i+1)/M;
    q = 1 falls in the last bin). Source: "Beyond Binary Rewards: Training LMs
    to Reason About Their Uncertainty" (RLCR); ECE as standard (Guo et al.,
    2017). q ≡ c gives 0 for both.

    Args:
      probs: [B] probabilities in [0, 1].
      outcomes: [B] correctness, 0/1 (soft targets in [0, 1] are accepted).
      num_bins: number of equal-width bins M.

    Returns:
      {"brier", "ece"}.
    """
    q = _vector(probs, "probs")
    c = _vector(outcomes, "outcomes")
    _same_length(q, c, "probs", "outcomes")
    for name, values in (("probs", q), ("outcomes", c)):
        outside = np.flatnonzero((values < 0) | (values > 1))
        if outside.size:
            raise ValueError(f"{name}[{outside[0]}] = {values[outside[0]]} is outside [0, 1]")
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or num_bins < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}")
    brier = float(np.mean((q - c) ** 2))
    bins = np.minimum((q * num_bins).astype(np.int64), num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    sum_q = np.bincount(bins, weights=q, minlength=num_bins)
    sum_c = np.bincount(bins, weights=c, minlength=num_bins)
    filled = counts > 0
    # Σ_bins (n_bin/B)·|mean c − mean q| = Σ_bins |Σ c − Σ q| / B.
    ece = float(np.sum(np.abs(sum_c[filled] - sum_q[filled])) / q.size)
    return {"brier": brier, "ece": ece}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if denominator == 0:
        return float("nan")
    return float(np.sum(dx * dy) / denominator)


@METRICS.register("score_correctness_correlation")
def score_correctness_correlation(
    scores: Any,  # [B] reward-model score of each response
    correct: Any,  # [B] 0/1 true correctness from the verifier
) -> dict[str, float]:
    """How well reward-model scores track true correctness.

      pearson  = corr(r, c)            (point-biserial correlation)
      spearman = corr(rank r, rank c)  (average ranks)
      auroc    = P(r⁺ > r⁻) + ½·P(tie) over correct/incorrect pairs

    Source: the RM-score vs true-correctness check of "Evaluating Robustness
    of Reward Models for Mathematical Reasoning".

    Args:
      scores: [B] scores.
      correct: [B] correctness, 0/1.

    Returns:
      {"pearson", "spearman", "auroc"}; each is nan when undefined (constant
      scores for the correlations, a single class for all three).
    """
    from scipy.stats import rankdata

    r = _vector(scores, "scores")
    c = _vector(correct, "correct")
    _same_length(r, c, "scores", "correct")
    if not np.isin(c, (0.0, 1.0)).all():
        raise ValueError("correct must hold 0/1 values")
    return {
        "pearson": _pearson(r, c),
        "spearman": _pearson(rankdata(r), rankdata(c)),
        "auroc": auroc(r, c),
    }
