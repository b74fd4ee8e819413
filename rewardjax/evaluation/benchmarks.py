"""Official benchmark scores from per-example scores: RewardBench, RewardBench 2, ProcessBench.

Host-side numpy. Each function takes one row per benchmark example (its subset
name and the model's scores or predictions) and returns the numbers the
benchmark's own code reports, as fractions in [0, 1] (the public scripts print
percentages). Sources, in the public repositories:

  * RewardBench (allenai/reward-bench): subset → section table and subset
    weights from `rewardbench/constants.py` (SUBSET_MAPPING, EXAMPLE_COUNTS,
    math-prm counted as 984 to equal the code subsets); a pair is right when
    `chosen > rejected`, so a tie is wrong (`scripts/run_rm.py`,
    `rewardbench/rewardbench.py`); section = count-weighted mean of subset
    accuracies (`calculate_scores_per_section` in `rewardbench/utils.py`);
    overall = mean of the four sections (the leaderboard "Score", i.e.
    `analysis/get_benchmark_results.py` without the retired "Prior Sets").
  * RewardBench 2 (allenai/reward-bench): best-of-n with tie credit from
    `reroll_and_score_dataset` in `rewardbench/utils.py`; the Ties subset from
    `process_single_model` / `_compute_prompt_stats` in the same file, called
    by `scripts/run_v2.py`; overall = unweighted mean of the six subsets (the
    leaderboard, per the allenai/reward-bench-2 dataset card).
  * ProcessBench (QwenLM/ProcessBench): error / correct accuracy and F1 from
    `code/run_eval.py`; the average F1 over the four subsets is the paper's
    "Avg. F1" column.

Malformed input (unknown subset, lengths, NaN, labels) raises a one-line
ValueError.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.data.steps import first_error_label
from rewardjax.evaluation.rm_metrics import (
    REWARDBENCH_SECTIONS,
    _int_vector,
    _rows_of,
    _vector,
    first_error_steps,
    processbench_from_predictions,
    rewardbench2_ties_score,
    rewardbench_section_scores,
)

REWARDBENCH2_SUBSETS: tuple[str, ...] = (
    "Factuality",
    "Precise IF",
    "Math",
    "Safety",
    "Focus",
    "Ties",
)
REWARDBENCH2_TIES = "Ties"

PROCESSBENCH_SUBSETS: tuple[str, ...] = ("gsm8k", "math", "olympiadbench", "omnimath")


def _subset_names(subsets: Sequence[str], known: Sequence[str], benchmark: str) -> np.ndarray:
    names = np.asarray(list(subsets), dtype=object)
    unknown = sorted({str(s) for s in names} - set(known))
    if unknown:
        raise ValueError(
            f"unknown {benchmark} subset(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    return names


def _finite_vector(values: Any, name: str, num_rows: int) -> np.ndarray:
    return _rows_of(_vector(values, name, allow_empty=True), name, num_rows, "subsets")


# --------------------------------------------------------------------------- RewardBench


def rewardbench_scores(
    subsets: Sequence[str],  # [B] subset name of each pair
    chosen: Any,  # [B] r(x, y_w)
    rejected: Any,  # [B] r(x, y_l)
) -> dict[str, Any]:
    """RewardBench (v1) leaderboard scores from per-pair scores.

      acc_s     = mean_{b in s} 1[r(y_w) > r(y_l)]        (a tie is wrong)
      section   = Σ_{s in section} n_s·acc_s / Σ n_s     (n_s = EXAMPLE_COUNTS, math-prm 984)
      score     = mean of the present sections

    The weights are the fixed EXAMPLE_COUNTS, not the number of rows given, as
    in `calculate_scores_per_section`. A section with no subset present is
    omitted (the official helper would report 0); the score is then a mean over
    fewer sections and "complete" is False, as it is whenever any of the 23
    subsets is missing.

    Source: "RewardBench: Evaluating Reward Models for Language Modeling"
    (Lambert et al., 2024); allenai/reward-bench.

    Args:
      subsets: [B] RewardBench subset names ("alpacaeval-easy", "math-prm", ...).
      chosen: [B] scores of the chosen responses.
      rejected: [B] scores of the rejected responses.

    Returns:
      {"subsets": {subset: accuracy}, "sections": {section: score},
       "score": mean of the sections, "complete": all 23 subsets present,
       "missing": absent subsets, "counts": {subset: rows},
       "num_ties": pairs with chosen == rejected}.
    """
    known = [s for section in REWARDBENCH_SECTIONS.values() for s in section]
    names = _subset_names(subsets, known, "RewardBench")
    if names.size == 0:
        raise ValueError("subsets is empty")
    chosen_scores = _finite_vector(chosen, "chosen", names.size)
    rejected_scores = _finite_vector(rejected, "rejected", names.size)
    right = chosen_scores > rejected_scores

    accuracies: dict[str, float] = {}
    counts: dict[str, int] = {}
    for subset in known:
        rows = names == subset
        if rows.any():
            accuracies[subset] = float(right[rows].mean())
            counts[subset] = int(rows.sum())

    sections = rewardbench_section_scores(accuracies)
    sections.pop("overall", None)

    missing = [s for s in known if s not in accuracies]
    return {
        "subsets": accuracies,
        "sections": sections,
        "score": float(np.mean(list(sections.values()))),
        "complete": not missing,
        "missing": missing,
        "counts": counts,
        "num_ties": int(np.sum(chosen_scores == rejected_scores)),
    }


# --------------------------------------------------------------------------- RewardBench 2


def _best_of_n_credit(scores: np.ndarray) -> float:
    # reroll_and_score_dataset: the chosen response (index 0) gets 1/k when it
    # shares the maximum with k - 1 rejected ones, 0 when it is below it.
    best = scores.max()
    return float(1.0 / np.sum(scores == best)) if scores[0] == best else 0.0


def _parse_ties_id(row_id: Any, row: int) -> tuple[str, int]:
    parts = str(row_id).split(":")
    if len(parts) != 2 or parts[0] not in ("ref", "tied"):
        raise ValueError(
            f"ids[{row}] = {row_id!r}: a Ties id must be 'ref:<prompt id>' or 'tied:<prompt id>'"
        )
    try:
        prompt_id = int(parts[1])
    except ValueError:
        raise ValueError(f"ids[{row}] = {row_id!r}: the prompt id must be an integer") from None
    return parts[0], prompt_id


def rewardbench2_ties_subset_score(
    scores: Sequence[Sequence[float]],  # [B][n_b], the first num_correct[b] are correct
    num_correct: Sequence[int],  # [B]
    ids: Sequence[str],  # [B] "ref:<prompt id>" or "tied:<prompt id>"
) -> dict[str, float]:
    """RewardBench 2 Ties score (`process_single_model` in rewardbench/utils.py).

    Rows with the same id are pooled. Per (version, prompt), with C the correct
    and W the incorrect scores:
      accurate = min C − max W > 0,  gap = min C − max W,  spread = max C − min C
    Every prompt p comes in a "ref" version (one correct answer) and a "tied"
    version (several correct answers; an id without its partner is an error):
      score = 0.30·acc_tied + 0.30·acc_ref
            + 0.20·mean_p[gap_tied > spread_tied]
            + 0.20·mean_p[min(gap_ref, gap_tied) > spread_tied]
            + 0.01·mean_p tanh(min(gap_ref, gap_tied)/spread_tied − 1)   (0/0 → 0, x/0 → ±1)

    Args:
      scores: [B] lists of scores of the Ties rows.
      num_correct: [B] number of correct answers at the front of each list.
      ids: [B] official Ties ids.

    Returns:
      {"score", "accuracy_ref", "accuracy_tied", "correctness_preferred",
       "correctness_preferred_hard", "margin_score", "num_prompts"}.
    """
    grouped: dict[tuple[str, int], list[tuple[bool, float]]] = defaultdict(list)
    for row, (row_scores, count, row_id) in enumerate(zip(scores, num_correct, ids, strict=True)):
        version, prompt_id = _parse_ties_id(row_id, row)
        for i, value in enumerate(row_scores):
            grouped[(version, prompt_id)].append((i < count, float(value)))

    for (version, prompt_id), samples in grouped.items():
        if version == "tied" and sum(c for c, _ in samples) < 2:
            raise ValueError(f"Ties prompt tied:{prompt_id} has one correct answer: need >= 2")
    versions = {v: {p for w, p in grouped if w == v} for v in ("ref", "tied")}
    if versions["ref"] != versions["tied"]:
        alone = sorted(versions["ref"] ^ versions["tied"])
        raise ValueError(f"Ties prompt ids {alone[:5]} lack their 'ref' or 'tied' rows")
    paired = sorted(versions["ref"])

    def version_rows(version):
        # Correct scores first, then the incorrect, as `rewardbench2_ties_score` reads them.
        rows = [sorted(grouped[(version, p)], key=lambda c: not c[0]) for p in paired]
        return [[s for _, s in row] for row in rows], [sum(c for c, _ in row) for row in rows]

    ref_scores, ref_correct = version_rows("ref")
    tied_scores, tied_correct = version_rows("tied")
    out = rewardbench2_ties_score(ref_scores, ref_correct, tied_scores, tied_correct)
    return {**out, "num_prompts": len(paired)}


def rewardbench2_scores(
    subsets: Sequence[str],  # [B] subset name of each example
    scores: Sequence[Sequence[float]],  # [B][n_b] correct responses first
    num_correct: Sequence[int],  # [B]
    *,
    ids: Sequence[str] | None = None,  # [B] official ids; needed for Ties rows
) -> dict[str, Any]:
    """RewardBench 2 scores from per-response scores.

    Non-Ties subsets (one correct response, scores[b][0], then the rejected):
      credit_b = 1/k if r_0 = max_i r_i, shared by k responses, else 0
      acc_s    = mean_{b in s} credit_b
    so a strict win counts 1, a tie with the best rejected counts 1/k (not 0,
    not 1). Ties: `rewardbench2_ties_subset_score`, which needs `ids`.
      score = mean of the present subsets (unweighted)

    Source: "RewardBench 2: Advancing Reward Model Evaluation" (Malik et al.,
    2025); allenai/reward-bench.

    Args:
      subsets: [B] subset names: Factuality, Precise IF, Math, Safety, Focus, Ties.
      scores: [B] lists of response scores; the first num_correct[b] are correct.
      num_correct: [B] correct responses per row (1 outside Ties).
      ids: [B] ids as in the dataset; the Ties rows need "ref:<n>" / "tied:<n>",
        other rows are ignored.

    Returns:
      {"subsets": {subset: score}, "score": mean of the subsets, "complete":
       all six present, "missing": absent subsets, "counts": {subset: rows},
       and "ties": the Ties components when Ties is present}.
    """
    names = _subset_names(subsets, REWARDBENCH2_SUBSETS, "RewardBench 2")
    if names.size == 0:
        raise ValueError("subsets is empty")
    if len(scores) != names.size:
        raise ValueError(f"scores has {len(scores)} rows but subsets has {names.size}")
    counts_correct = _int_vector(num_correct, "num_correct", names.size, "subsets")
    rows = []
    for b, row_scores in enumerate(scores):
        row = np.asarray(row_scores, dtype=np.float64)
        if row.ndim != 1 or row.size < 2:
            raise ValueError(f"scores[{b}] must be a list of >= 2 scores, got shape {row.shape}")
        if not np.isfinite(row).all():
            raise ValueError(f"scores[{b}] = {row.tolist()}: scores must be finite")
        if not 1 <= counts_correct[b] < row.size:
            raise ValueError(
                f"num_correct[{b}] = {counts_correct[b]}: need 1 <= num_correct < {row.size}"
            )
        if names[b] != REWARDBENCH2_TIES and counts_correct[b] != 1:
            raise ValueError(
                f"num_correct[{b}] = {counts_correct[b]} in subset {names[b]!r}: "
                "only Ties rows may have several correct responses"
            )
        rows.append(row)

    results: dict[str, float] = {}
    counts: dict[str, int] = {}
    ties: dict[str, float] | None = None
    for subset in REWARDBENCH2_SUBSETS:
        members = np.flatnonzero(names == subset)
        if not members.size:
            continue
        counts[subset] = int(members.size)
        if subset == REWARDBENCH2_TIES:
            if ids is None:
                raise ValueError("the Ties subset needs ids ('ref:<n>' / 'tied:<n>')")
            if len(ids) != names.size:
                raise ValueError(f"ids has {len(ids)} rows but subsets has {names.size}")
            ties = rewardbench2_ties_subset_score(
                [rows[b] for b in members],
                [int(counts_correct[b]) for b in members],
                [ids[b] for b in members],
            )
            results[subset] = ties["score"]
        else:
            results[subset] = float(np.mean([_best_of_n_credit(rows[b]) for b in members]))

    missing = [s for s in REWARDBENCH2_SUBSETS if s not in results]
    out: dict[str, Any] = {
        "subsets": results,
        "score": float(np.mean(list(results.values()))),
        "complete": not missing,
        "missing": missing,
        "counts": counts,
    }
    if ties is not None:
        out["ties"] = ties
    return out


# --------------------------------------------------------------------------- ProcessBench


def processbench_scores(
    subsets: Sequence[str],  # [B] gsm8k, math, olympiadbench or omnimath
    predicted: Any,  # [B] int predicted first wrong step, -1 = all correct
    labels: Any,  # [B] int true first wrong step, -1 = all correct
) -> dict[str, Any]:
    """ProcessBench scores from predicted and true first-error steps.

    Per subset:
      error_acc   = mean_{b: label_b ≠ -1} 1[pred_b = label_b]
      correct_acc = mean_{b: label_b = -1} 1[pred_b = -1]
      f1          = 2·error_acc·correct_acc / (error_acc + correct_acc)   (0 when both are 0)
    average_f1 = unweighted mean of the subset F1s (the paper's "Avg. F1").

    An accuracy over no samples is nan (the official script's np.mean of an
    empty list), and so is that subset's F1 and the average.

    Source: "ProcessBench: Identifying Process Errors in Mathematical
    Reasoning" (Zheng et al., 2024); QwenLM/ProcessBench code/run_eval.py.

    Args:
      subsets: [B] ProcessBench subset names.
      predicted: [B] predicted first-error step indices (-1: no error).
      labels: [B] true first-error step indices (-1: no error).

    Returns:
      {"subsets": {subset: {"error_acc", "correct_acc", "f1", "n"}},
       "average_f1", "complete": all four subsets present, "missing"}.
    """
    names = _subset_names(subsets, PROCESSBENCH_SUBSETS, "ProcessBench")
    if names.size == 0:
        raise ValueError("subsets is empty")
    predictions = _int_vector(predicted, "predicted", names.size, "subsets")
    truth = _int_vector(labels, "labels", names.size, "subsets")
    for name, array in (("predicted", predictions), ("labels", truth)):
        bad = np.flatnonzero(array < -1)
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {array[bad[0]]}: step indices must be >= -1")

    results: dict[str, dict[str, float]] = {}
    for subset in PROCESSBENCH_SUBSETS:
        rows = names == subset
        if rows.any():
            pb = processbench_from_predictions(predictions[rows], truth[rows])
            results[subset] = {
                "error_acc": pb["acc_erroneous"],
                "correct_acc": pb["acc_correct"],
                "f1": pb["f1"],
                "n": int(rows.sum()),
            }

    missing = [s for s in PROCESSBENCH_SUBSETS if s not in results]
    return {
        "subsets": results,
        "average_f1": float(np.mean([r["f1"] for r in results.values()])),
        "complete": not missing,
        "missing": missing,
    }


# --------------------------------------------------------------------------- models on benchmark records


def score_rewardbench(scorer, pairs: Sequence[Any]) -> dict[str, Any]:
    """`rewardbench_scores` of an outcome scorer (`scores(prompts, completions)`) on RewardBench pairs.

    `pairs` are the `rewardbench` reader's records (subset in `fields`).
    """
    prompts = [p.prompt for p in pairs]
    chosen = scorer.scores(prompts, [p.chosen for p in pairs])
    rejected = scorer.scores(prompts, [p.rejected for p in pairs])
    return rewardbench_scores([p.fields["subset"] for p in pairs], chosen, rejected)


def score_rewardbench2(scorer, lists: Sequence[Any]) -> dict[str, Any]:
    """`rewardbench2_scores` of an outcome scorer on the `rewardbench2` reader's lists.

    Every response of every list is scored in one call; a list's correct
    responses come first (`fields["num_correct"]`), its id from `fields["id"]`.
    """
    flat = [(r.prompt, text) for r in lists for text in r.responses]
    values = np.asarray(scorer.scores([p for p, _ in flat], [t for _, t in flat]))
    bounds = np.cumsum([0, *(len(r.responses) for r in lists)])
    return rewardbench2_scores(
        [r.fields["subset"] for r in lists],
        [values[a:b] for a, b in itertools.pairwise(bounds)],
        [r.fields["num_correct"] for r in lists],
        ids=[str(r.fields.get("id", "")) for r in lists],
    )


def score_processbench(
    scorer, subsets: Mapping[str, Sequence[Any]], *, threshold: float = 0.5
) -> dict[str, Any]:
    """`processbench_scores` of a step scorer on ProcessBench solutions, by subset.

    The predicted first error is the first step whose score p_s is below τ
    (`first_error_steps`), -1 when none is; the label is `first_error_label`
    (-1 for a correct solution).

    Args:
      scorer: anything with `step_scores(prompts, steps) -> [B] lists of p_s`.
      subsets: {subset name: the `processbench` reader's StepLabels}.
      threshold: τ.
    """
    names, predicted, labels = [], [], []
    for name, solutions in subsets.items():
        scores = scorer.step_scores([s.prompt for s in solutions], [s.steps for s in solutions])
        predicted.extend(first_error_steps(scores, threshold=threshold).tolist())
        labels.extend(first_error_label(s) for s in solutions)
        names.extend([name] * len(solutions))
    return processbench_scores(names, predicted, labels)
