"""Evaluation drivers for trained scorers: run one over held-out data, compute its metrics.

`evaluate_orm` and `evaluate_prm` score held-out records with anything that
has `scores(prompts, completions)` or `step_scores(prompts, steps)` (the
scorers of `rewardjax.scoring`) and compute the metrics of
`rewardjax.evaluation.rm_metrics`: pairwise accuracy, best-of-4 accuracy,
ProcessBench F1, step AUROC, calibration, score-correctness correlation.
`selection_curves` gives accuracy against N for the selection rules of
`rewardjax.inference`.

  metrics = evaluate_orm(orm, pairs=test_pairs, ranked=test_ranked, solutions=test_solutions)
  metrics = evaluate_prm(prm, test_solutions, threshold=0.5, validation=val_solutions)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardjax.data.formats import PreferencePair, RankedList, StepLabels
from rewardjax.data.steps import first_error_label, outcome_label, split_steps
from rewardjax.evaluation.rm_metrics import (
    best_of_4_accuracy,
    calibration,
    processbench_best_threshold,
    processbench_f1,
    rm_pairwise_accuracy,
    score_correctness_correlation,
    step_auroc,
)
from rewardjax.inference.selection import accuracy_vs_n, prm_aggregate
from rewardjax.rewards.label_free import parse_confidence

__all__ = ["evaluate_orm", "evaluate_prm", "selection_curves", "self_confidences"]


def _sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def evaluate_orm(
    scorer,
    *,
    pairs: Sequence[PreferencePair] = (),
    ranked: Sequence[RankedList] = (),
    solutions: Sequence[StepLabels] = (),
) -> dict[str, float]:
    """Outcome-RM metrics on held-out data (each block only when its data is given).

    Args:
      scorer: anything with `scores(prompts, completions) -> [B]` (an ORM, an
        ensemble, an implicit PRM).
      pairs: preference pairs → `pairwise_accuracy` (strict: ties count wrong).
      ranked: lists of 4 responses with one best → `best_of_4_accuracy`
        (lists whose top score is shared are skipped).
      solutions: step-labelled solutions with outcomes → `brier`, `ece`
        (of σ(r) against correctness), `pearson`, `spearman`, `auroc`.

    Returns:
      A flat dict of floats.
    """
    out: dict[str, float] = {}
    if pairs:
        prompts = [p.prompt for p in pairs]
        chosen = scorer.scores(prompts, [p.chosen for p in pairs])
        rejected = scorer.scores(prompts, [p.rejected for p in pairs])
        out["pairwise_accuracy"] = rm_pairwise_accuracy(chosen, rejected)
        out["num_pairs"] = float(len(pairs))
    if ranked:
        chosen_scores, rejected_scores = [], []
        for r in ranked:
            order = r.order()
            values = r.scores if r.scores is not None else [-i for i in range(len(order))]
            if r.scores is not None and values[order[0]] == values[order[1]]:
                continue
            scores = scorer.scores([r.prompt] * len(r.responses), r.responses)
            chosen_scores.append(scores[order[0]])
            rejected_scores.append([scores[k] for k in order[1:4]])
        if chosen_scores:
            out["best_of_4_accuracy"] = best_of_4_accuracy(chosen_scores, rejected_scores)
            out["num_ranked"] = float(len(chosen_scores))
    if solutions:
        prompts = [s.prompt for s in solutions]
        scores = scorer.scores(prompts, ["\n".join(s.steps) for s in solutions])
        correct = np.array([outcome_label(s) >= 0.5 for s in solutions], np.float64)
        out.update(calibration(_sigmoid(scores), correct))
        out.update(score_correctness_correlation(scores, correct))
    return out


def evaluate_prm(
    scorer,
    solutions: Sequence[StepLabels],
    *,
    threshold: float = 0.5,
    aggregation: str = "min",
    validation: Sequence[StepLabels] = (),
) -> dict[str, float]:
    """PRM metrics on held-out step-labelled solutions.

    Args:
      scorer: anything with `step_scores(prompts, steps)` returning B arrays of
        step-correctness probabilities (a PRM, an implicit PRM).
      solutions: step-labelled solutions (first error from `first_error` or the labels).
      threshold: τ of the ProcessBench first-error prediction.
      aggregation: `prm_aggregate` rule of the response score correlated with
        the outcome.
      validation: other labelled solutions on which τ is tuned
        (`processbench_best_threshold`); the tuned τ is then applied to
        `solutions`, so the reported F1 never sees its own labels.

    Returns:
      processbench_f1, acc_erroneous, acc_correct (at τ); with validation data,
      tuned_threshold and tuned_processbench_f1; step_auroc; step_brier,
      step_ece; outcome_auroc and outcome_pearson of the aggregated score.
    """
    if not solutions:
        raise ValueError("evaluate_prm: no solutions to score")
    prompts = [s.prompt for s in solutions]
    scores = scorer.step_scores(prompts, [s.steps for s in solutions])
    first_errors = np.array([first_error_label(s) for s in solutions])
    out: dict[str, float] = {}
    pb = processbench_f1(scores, first_errors, threshold=threshold)
    out["processbench_f1"] = pb["f1"]
    out["acc_erroneous"] = pb["acc_erroneous"]
    out["acc_correct"] = pb["acc_correct"]
    if validation:
        val_scores = scorer.step_scores(
            [s.prompt for s in validation], [s.steps for s in validation]
        )
        val_labels = np.array([first_error_label(s) for s in validation])
        tuned, _ = processbench_best_threshold(val_scores, val_labels)
        out["tuned_threshold"] = tuned
        out["tuned_processbench_f1"] = processbench_f1(scores, first_errors, threshold=tuned)["f1"]
    labels = [np.asarray(s.labels, np.float64) for s in solutions]
    hard = [(lab >= 0.5).astype(np.float64) for lab in labels]
    out["step_auroc"] = step_auroc(scores, hard)
    cal = calibration(np.concatenate(scores), np.concatenate(labels))
    out["step_brier"], out["step_ece"] = cal["brier"], cal["ece"]
    response = prm_aggregate(scores, method=aggregation)
    correct = np.array([outcome_label(s) >= 0.5 for s in solutions], np.float64)
    corr = score_correctness_correlation(response, correct)
    out["outcome_auroc"], out["outcome_pearson"] = corr["auroc"], corr["pearson"]
    return out


def self_confidences(confidence, prompts: Sequence[str], texts: Sequence[str]):
    """[B] the policy's own confidence in each completion, or None without a `confidence`.

    confidence: "stated" (the last "<confidence>q</confidence>" of each text,
    RLCR; None where there is none), or a self-scorer with `scores(prompts,
    completions)` (`LastTokenSelfScorer`, LaSeR).
    """
    if confidence is None:
        return None
    if isinstance(confidence, str):
        if confidence != "stated":
            raise ValueError(f"confidence={confidence!r}: 'stated', a self-scorer, or None")
        return [parse_confidence(t) for t in texts]
    return np.asarray(confidence.scores(list(prompts), list(texts)), np.float64).tolist()


def selection_curves(
    problems: Sequence[Any],
    candidates,
    *,
    orm=None,
    prm=None,
    judge=None,
    confidence=None,
    ns: Sequence[int] | None = None,
    num_subsets: int = 100,
    seed: int = 0,
    separator: str = "\n",
) -> dict[str, dict[int, float]]:
    """Test-time selection: accuracy against N for every rule, next to pass@N.

    Scores n graded candidates per held-out problem with the ORM (σ(r) as
    vote weights) and the PRM (step probabilities, every `prm_aggregate`
    rule), and runs `inference.accuracy_vs_n` (majority vote, best-of-N,
    weighted votes).

    Args:
      problems: the P held-out problems.
      candidates: `rollout.EvalResult` of sampling n completions per problem
        (`sample_and_grade`): texts, answers and correctness.
      orm: optional scorer with `scores(prompts, completions)`.
      prm: optional scorer with `step_scores(prompts, steps)`.
      judge: optional generative judge with `scores(prompts, completions)` in
        [0, 1] (P("Yes"), `rewardjax.judges.reward.load_judge`): rules
        bon_judge and weighted_majority_vote_judge.
      confidence: the weights of `confidence_weighted_vote`: "stated" (each
        completion's "<confidence>q</confidence>", RLCR), a self-scorer with
        `scores(prompts, completions)` (`LastTokenSelfScorer`, LaSeR), or None.
      ns, num_subsets, seed: as `accuracy_vs_n` (default N = 1, 2, 4, ..., ≤ 64).
      separator: step separator of the PRM.

    Returns:
      {rule: {N: accuracy}}, "pass_at_n" first.
    """
    n = candidates.correct.shape[1]
    prompts = [p.prompt for p in problems for _ in range(n)]
    texts = [t for row in candidates.texts for t in row]
    orm_scores = prm_scores = None
    if orm is not None:
        orm_scores = _sigmoid(orm.scores(prompts, texts)).reshape(len(problems), n)
    if prm is not None:
        flat = prm.step_scores(prompts, [split_steps(t, separator) for t in texts])
        prm_scores = [flat[i * n : (i + 1) * n] for i in range(len(problems))]
    confidences = self_confidences(confidence, prompts, texts)
    if confidences is not None:
        confidences = [confidences[i * n : (i + 1) * n] for i in range(len(problems))]
    curves = accuracy_vs_n(
        candidates.answers,
        candidates.correct,
        orm_scores=orm_scores,
        prm_step_scores=prm_scores,
        confidences=confidences,
        ns=ns,
        num_subsets=num_subsets,
        seed=seed,
    )
    if judge is not None:
        # The judge's P("Yes") in the ORM's place: the same subsets (same seed).
        judged = np.asarray(judge.scores(prompts, texts), np.float64).reshape(len(problems), n)
        extra = accuracy_vs_n(
            candidates.answers,
            candidates.correct,
            orm_scores=judged,
            prm_aggregations=(),
            ns=ns,
            num_subsets=num_subsets,
            seed=seed,
        )
        curves["bon_judge"] = extra["bon_orm"]
        curves["weighted_majority_vote_judge"] = extra["weighted_majority_vote_orm"]
    return curves
