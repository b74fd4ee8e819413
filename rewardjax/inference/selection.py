"""Test-time selection rules: best-of-N with an ORM or a PRM, majority and weighted votes.

A selection rule looks at the N candidates sampled for one problem and returns
the index of the one it picks (the answer is `answers[index]`), so every rule
is scored the same way: `correct[index]`. These are host-side numpy functions;
they take lists or arrays, never traced values.

Conventions (mechanisms.md §9):
  * ties go to the lowest index (the earliest candidate, or the answer class
    whose first member comes first);
  * a candidate whose answer is `None` (nothing could be extracted) does not
    vote;
  * two answers are the same when their `canonical_answer` strings match, or
    when a user-supplied `equiv(a, b) -> bool` says so (for example the
    math-verify equivalence of the rewards package).

`accuracy_vs_n` runs every rule on seeded subsets of N ∈ {1, 2, 4, ..., 64}
candidates and reports each rule's accuracy next to pass@N, the ceiling that
an oracle selector would reach.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from rewardjax.registry import SELECTION_RULES

Equiv = Callable[[Any, Any], bool]

PRM_AGGREGATIONS = ("min", "last", "prod", "mean")

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


# --------------------------------------------------------------------------- answers


def canonical_answer(answer: Any) -> str | None:
    """The string two answers must share to count as the same vote.

    Rules, in order: `None` stays `None` (no answer); text is stripped of
    surrounding whitespace and `$` signs and of one trailing period, inner
    whitespace is collapsed and letters are lower-cased; a number, or text that
    parses as one ("1,000" and "1e3" included), becomes its shortest exact form:
    `2`, `2.0`, " 2 " and "2." all give "2"; `0.5` and ".5" give "0.5". Integers
    are compared exactly, however large. Anything looser (fractions, LaTeX,
    units) is the job of an `equiv` function.

    Args:
      answer: a final answer extracted from a completion (str, int, float,
        numpy scalar) or None.

    Returns:
      The canonical string, or None when `answer` is None.
    """
    if answer is None:
        return None
    if isinstance(answer, bool | np.bool_):
        return str(bool(answer)).lower()
    if isinstance(answer, int | np.integer):
        return str(int(answer))
    if isinstance(answer, float | np.floating):
        return _canonical_float(float(answer))
    text = " ".join(str(answer).split()).strip("$ ")
    if text.endswith("."):
        text = text[:-1].rstrip()
    number_text = text.replace(",", "") if _THOUSANDS.match(text) else text
    if _INTEGER.match(number_text):
        return str(int(number_text))
    if "_" not in number_text:
        try:
            value = float(number_text)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return _canonical_float(value)
    return text.lower()


def _canonical_float(value: float) -> str:
    if math.isfinite(value) and value.is_integer():
        return str(int(value))
    return repr(value)


def answer_classes(answers: Sequence[Any], *, equiv: Equiv | None = None) -> np.ndarray:
    """Groups answers into equivalence classes numbered by first appearance.

    Args:
      answers: [N] final answers; None means no answer.
      equiv: optional `equiv(a, b) -> bool` on raw answers; by default two
        answers are equivalent when their `canonical_answer` strings match. A
        new answer joins the first existing class whose first member it is
        equivalent to.

    Returns:
      [N] int64 class ids: 0 for the class of the first answer, 1 for the next
      new class, ...; -1 where the answer is None.
    """
    class_ids = np.full(len(answers), -1, dtype=np.int64)
    if equiv is None:
        keys: dict[Hashable, int] = {}
        for i, answer in enumerate(answers):
            key = canonical_answer(answer)
            if key is not None:
                class_ids[i] = keys.setdefault(key, len(keys))
        return class_ids
    if not callable(equiv):
        raise TypeError(f"equiv must be a callable equiv(a, b) -> bool, got {type(equiv).__name__}")
    representatives: list[Any] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for c, representative in enumerate(representatives):
            if equiv(representative, answer):
                class_ids[i] = c
                break
        else:
            class_ids[i] = len(representatives)
            representatives.append(answer)
    return class_ids


def _vote(class_ids: np.ndarray, weights: np.ndarray) -> int:
    """Index of the first member of the class with the largest total weight.

    Ties between classes go to the class whose first member comes first; with
    no valid answer at all, index 0.
    """
    valid = class_ids >= 0
    if not valid.any():
        return 0
    ids = class_ids[valid]
    totals = np.bincount(ids, weights=weights[valid])
    present = np.bincount(ids) > 0
    winners = present & (totals == totals[present].max())
    # The first candidate whose class wins is the first member of the winning
    # class that appears earliest.
    return int(np.flatnonzero(valid & winners[np.maximum(class_ids, 0)])[0])


# --------------------------------------------------------------------------- scores


def _as_score_vector(scores: Any, name: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: there is no candidate to select")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}: scores must be finite")
    return array


def step_score_rows(
    step_scores: Any,  # [N, S] array, or N ragged sequences of step scores
    *,
    step_mask: Any = None,  # [N, S] 1.0 on real steps (only with a 2-D array)
    name: str = "step_scores",
) -> list[np.ndarray]:
    """Splits step scores into one float64 vector per response.

    Args:
      step_scores: a [N, S] array (padded, with `step_mask`), or a sequence of
        N sequences of possibly different lengths.
      step_mask: [N, S] mask of real steps; only valid with a 2-D array. Real
        steps must come first in each row (steps are right-padded).
      name: the argument name used in error messages.

    Returns:
      A list of N 1-D arrays, each with at least one finite score.
    """
    if isinstance(step_scores, np.ndarray) or step_mask is not None:
        array = np.asarray(step_scores, dtype=np.float64)
        if array.ndim != 2:
            raise ValueError(f"{name} must be [N, S] or a list of lists, got shape {array.shape}")
        if step_mask is None:
            rows = list(array)
        else:
            mask = np.asarray(step_mask)
            if mask.shape != array.shape:
                raise ValueError(
                    f"step_mask shape {mask.shape} does not match {name} shape {array.shape}"
                )
            mask = mask.astype(bool)
            lengths = mask.sum(axis=1)
            for i, (row_mask, length) in enumerate(zip(mask, lengths)):
                if not row_mask[:length].all():
                    raise ValueError(
                        f"step_mask row {i} has a gap: real steps must come first (right padding)"
                    )
            rows = [row[:length] for row, length in zip(array, lengths)]
    else:
        rows = [np.asarray(row, dtype=np.float64) for row in step_scores]
    for i, row in enumerate(rows):
        if row.ndim != 1:
            raise ValueError(
                f"{name}[{i}] must be a 1-D list of step scores, got shape {row.shape}"
            )
        if row.size == 0:
            raise ValueError(f"{name}[{i}] has no steps")
        bad = np.flatnonzero(~np.isfinite(row))
        if bad.size:
            raise ValueError(f"{name}[{i}][{bad[0]}] is {row[bad[0]]}: step scores must be finite")
    return rows


def _aggregate_row(row: np.ndarray, method: str, index: int) -> float:
    if method == "min":
        return float(row.min())
    if method == "last":
        return float(row[-1])
    if method == "mean":
        return float(row.mean())
    if method == "prod":
        if (row < 0).any() or (row > 1).any():
            raise ValueError(
                f"prm_aggregate method 'prod' needs step probabilities in [0, 1]; "
                f"response {index} has {row.tolist()}"
            )
        return float(np.prod(row))
    raise ValueError(
        f"unknown prm_aggregate method {method!r}; known: {', '.join(PRM_AGGREGATIONS)}"
    )


@SELECTION_RULES.register("prm_aggregate")
def prm_aggregate(
    step_scores: Any,  # [S] one response, or [N, S] / N ragged lists
    *,
    method: str = "min",
    step_mask: Any = None,  # [N, S] with a padded 2-D array
) -> float | np.ndarray:
    """Turns PRM step scores into one response score: min, last, prod or mean.

      min:  min_s p_s        last: p_S
      prod: Π_s p_s          mean: (1/S) Σ_s p_s

    PRM minima cluster on the final step ("The Lessons of Developing Process
    Reward Models in Mathematical Reasoning"), and products compound over long
    chains of thought ("Rethinking Reward Models for Multi-Domain Test-Time
    Scaling"), so report at least two of these. Sources: "RewardBench 2:
    Advancing Reward Model Evaluation"; "Fin-PRM: A Domain-Specialized Process
    Reward Model for Financial Reasoning in Large Language Models".

    Args:
      step_scores: the step scores of one response ([S], a flat list) or of N
        responses ([N, S] padded array with `step_mask`, or N ragged lists).
      method: one of "min", "last", "prod", "mean". "prod" needs scores in [0, 1].
      step_mask: [N, S] real-step mask for a padded array.

    Returns:
      A float for one response, else an [N] float64 array.
    """
    if method not in PRM_AGGREGATIONS:
        raise ValueError(
            f"unknown prm_aggregate method {method!r}; known: {', '.join(PRM_AGGREGATIONS)}"
        )
    flat = step_mask is None and _is_flat_numeric(step_scores)
    if flat:
        (row,) = step_score_rows([step_scores])
        return _aggregate_row(row, method, 0)
    rows = step_score_rows(step_scores, step_mask=step_mask)
    return np.array([_aggregate_row(row, method, i) for i, row in enumerate(rows)])


def _is_flat_numeric(values: Any) -> bool:
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nested lists
        return False
    return array.ndim == 1 and array.dtype.kind in "biuf"


@SELECTION_RULES.register("bon_orm")
def bon_orm(scores: Any) -> int:  # scores: [N] outcome reward of each candidate
    """Best-of-N with an outcome reward model: argmax_i r(x, y_i), ties → lowest index.

    Source: "RewardBench 2: Advancing Reward Model Evaluation" (best-of-N as
    the downstream use of a reward model).

    Args:
      scores: [N] finite ORM scores (any monotone transform gives the same pick).

    Returns:
      The index of the selected candidate.
    """
    return int(np.argmax(_as_score_vector(scores, "scores")))


@SELECTION_RULES.register("bon_prm")
def bon_prm(
    step_scores: Any,  # [N, S] padded or N ragged lists
    *,
    aggregation: str = "min",
    step_mask: Any = None,  # [N, S]
) -> int:
    """Best-of-N with a process reward model: argmax_i prm_aggregate(p_i), ties → lowest index.

    Source: "Fin-PRM: A Domain-Specialized Process Reward Model for Financial
    Reasoning in Large Language Models"; "The Lessons of Developing Process
    Reward Models in Mathematical Reasoning" (aggregation choice).

    Args:
      step_scores: the step scores of N candidates.
      aggregation: "min", "last", "prod" or "mean" (see `prm_aggregate`).
      step_mask: [N, S] real-step mask for a padded array.

    Returns:
      The index of the selected candidate.
    """
    rows = step_score_rows(step_scores, step_mask=step_mask)
    if aggregation not in PRM_AGGREGATIONS:
        raise ValueError(
            f"unknown aggregation {aggregation!r}; known: {', '.join(PRM_AGGREGATIONS)}"
        )
    scores = np.array([_aggregate_row(row, aggregation, i) for i, row in enumerate(rows)])
    return int(np.argmax(scores))


@SELECTION_RULES.register("majority_vote")
def majority_vote(
    answers: Sequence[Any],  # [N] final answers, None = no answer
    *,
    equiv: Equiv | None = None,
) -> int:
    """Self-consistency: argmax_a Σ_i 1[a_i ≡ a], ties → the class seen first.

    ≡ is equality of `canonical_answer` strings, or `equiv(a, b)` when given.
    Candidates without an answer (None) do not vote; if none has one, index 0.
    Sources: self-consistency (Wang et al., 2022); "Is PRM Necessary?
    Problem-Solving RL Implicitly Induces PRM Capability in LLMs".

    Args:
      answers: [N] final answers extracted from the candidates.
      equiv: optional equivalence `equiv(a, b) -> bool` on raw answers.

    Returns:
      The index of the first candidate holding the winning answer.
    """
    if len(answers) == 0:
        raise ValueError("answers is empty: there is no candidate to select")
    class_ids = answer_classes(answers, equiv=equiv)
    return _vote(class_ids, np.ones(len(answers)))


@SELECTION_RULES.register("weighted_majority_vote")
def weighted_majority_vote(
    answers: Sequence[Any],  # [N] final answers, None = no answer
    weights: Any,  # [N] non-negative weight of each candidate
    *,
    equiv: Equiv | None = None,
) -> int:
    """Weighted vote: argmax_a Σ_i w_i·1[a_i ≡ a], ties → the class seen first.

    w_i is an ORM probability or an aggregated PRM score; w ≡ 1 is
    `majority_vote`. Sources: "Improve Mathematical Reasoning in Language Models
    by Automated Process Supervision"; "Free Process Rewards without Process
    Labels".

    Args:
      answers: [N] final answers; None does not vote.
      weights: [N] finite weights >= 0. Pass probabilities (e.g. the sigmoid of
        a Bradley-Terry score), not logits: a negative weight would count
        against its answer.
      equiv: optional equivalence `equiv(a, b) -> bool` on raw answers.

    Returns:
      The index of the first candidate holding the winning answer.
    """
    weights = _as_score_vector(weights, "weights")
    if len(answers) != weights.shape[0]:
        raise ValueError(f"answers has {len(answers)} entries but weights has {weights.shape[0]}")
    negative = np.flatnonzero(weights < 0)
    if negative.size:
        raise ValueError(
            f"weights[{negative[0]}] = {weights[negative[0]]} < 0: pass probabilities "
            "(e.g. sigmoid of a reward-model score), not logits"
        )
    return _vote(answer_classes(answers, equiv=equiv), weights)


def confidence_weights(confidences: Sequence[float | None]) -> np.ndarray:
    """[N] vote weights from self-confidences: clipped to [0, 1], a missing one 0.

    With no confidence at all (every one None or 0), every weight is 1: the
    vote falls back to `majority_vote` rather than to index 0.
    """
    weights = np.array(
        [
            0.0 if q is None or not np.isfinite(q) else min(max(float(q), 0.0), 1.0)
            for q in confidences
        ]
    )
    if weights.size and not weights.any():
        weights[:] = 1.0
    return weights


@SELECTION_RULES.register("confidence_weighted_vote")
def confidence_weighted_vote(
    answers: Sequence[Any],  # [N] final answers, None = no answer
    confidences: Sequence[float | None],  # [N] the policy's own confidence in each
    *,
    equiv: Equiv | None = None,
) -> int:
    """Vote weighted by the policy's own confidence: argmax_a Σ_i q_i·1[a_i ≡ a].

    q_i is a verbalized confidence (RLCR's "<confidence>q</confidence>",
    `rewards.parse_confidence`) or a self-reward (LaSeR's β·(log π(t*) − c),
    `scoring.LastTokenSelfScorer`), clipped to [0, 1] (`confidence_weights`):
    a candidate without one counts 0, and with none at all the vote is
    `majority_vote`. Equal confidences give `majority_vote`.

    Sources: "Beyond Binary Rewards: Training LMs to Reason About Their
    Uncertainty" (RLCR); "LaSeR: Reinforcement Learning with Last-Token
    Self-Rewarding".

    Args:
      answers: [N] final answers; None does not vote.
      confidences: [N] self-confidences; None (or NaN) where a candidate gave none.
      equiv: optional equivalence `equiv(a, b) -> bool` on raw answers.

    Returns:
      The index of the first candidate holding the winning answer.
    """
    if len(answers) != len(confidences):
        raise ValueError(
            f"answers has {len(answers)} entries but confidences has {len(confidences)}"
        )
    if len(answers) == 0:
        raise ValueError("answers is empty: there is no candidate to select")
    return _vote(answer_classes(answers, equiv=equiv), confidence_weights(confidences))


# --------------------------------------------------------------------------- accuracy vs N


def default_ns(max_n: int, *, cap: int = 64) -> tuple[int, ...]:
    """Powers of two 1, 2, 4, ... up to min(max_n, cap)."""
    limit = min(max_n, cap)
    if limit < 1:
        raise ValueError(f"need at least one candidate per problem, got {max_n}")
    return tuple(2**i for i in range(int(math.log2(limit)) + 1))


def candidate_subsets(
    n: int, size: int, *, num_subsets: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index subsets of `size` out of `n` candidates, each in random order.

    All C(n, size) subsets when there are at most `num_subsets`, else
    `num_subsets` subsets drawn uniformly without replacement. The order is
    random so that a rule's lowest-index tie-break picks a uniformly random
    member of a tie instead of favouring the first samples.
    """
    if not 1 <= size <= n:
        raise ValueError(f"subset size must be in [1, n={n}], got {size}")
    if math.comb(n, size) <= num_subsets:
        return [rng.permutation(c) for c in itertools.combinations(range(n), size)]
    return [rng.choice(n, size=size, replace=False) for _ in range(num_subsets)]


def _codex_pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _ragged(values: Any, name: str, lengths: Sequence[int] | None = None) -> list[list[Any]]:
    rows = [list(row) for row in values]
    if lengths is not None:
        if len(rows) != len(lengths):
            raise ValueError(f"{name} has {len(rows)} problems, expected {len(lengths)}")
        for p, (row, n) in enumerate(zip(rows, lengths)):
            if len(row) != n:
                raise ValueError(f"{name}[{p}] has {len(row)} candidates, answers[{p}] has {n}")
    return rows


def accuracy_vs_n(
    answers: Sequence[Sequence[Any]],  # [P][n] final answers, None = no answer
    correct: Any,  # [P][n] 1 if the candidate is correct
    *,
    orm_scores: Any = None,  # [P][n] ORM probabilities (>= 0 for the weighted vote)
    prm_step_scores: Any = None,  # [P][n][S] PRM step scores
    confidences: Any = None,  # [P][n] the policy's own confidences (None: missing)
    prm_aggregations: Sequence[str] = PRM_AGGREGATIONS,
    ns: Sequence[int] | None = None,
    num_subsets: int = 100,
    seed: int = 0,
    equiv: Equiv | None = None,
) -> dict[str, dict[int, float]]:
    """Accuracy of each selection rule against the number of candidates N, with pass@N.

    For each problem p and each N, the rules see the same subsets of N of the
    problem's n candidates: every subset when C(n, N) <= `num_subsets`, else
    `num_subsets` subsets drawn with `np.random.default_rng(seed)`; each subset
    is presented in random order, so ties are broken at random. A rule's
    accuracy is the mean over subsets of correct[chosen], averaged over
    problems. `pass_at_n` is the unbiased estimator 1 - C(n-c, N)/C(n, N)
    (Codex), the ceiling any selector can reach.

    Rules reported (when their inputs are given):
      majority_vote; bon_orm and weighted_majority_vote_orm (weights = ORM
      scores); bon_prm_<agg> and weighted_majority_vote_prm_<agg> for each
      aggregation in `prm_aggregations`; confidence_weighted_vote (weights =
      `confidence_weights` of the confidences).

    Answer classes are formed once per problem over all n candidates (with
    `canonical_answer` or `equiv`), so `equiv` is called O(n · classes) times
    per problem, not once per subset.

    Args:
      answers: [P][n] final answers; None does not vote. n may differ by problem.
      correct: [P][n] correctness (bool or 0/1).
      orm_scores: optional [P][n] outcome scores.
      prm_step_scores: optional [P][n] lists of step scores.
      confidences: optional [P][n] self-confidences in [0, 1] (None: missing).
      prm_aggregations: aggregations used for the PRM rules.
      ns: the N values; default 1, 2, 4, ..., up to min(64, smallest n).
      num_subsets: subsets per (problem, N) when there are more than this many.
      seed: seed of the subset draws.
      equiv: optional answer equivalence `equiv(a, b) -> bool`.

    Returns:
      {rule name: {N: accuracy}}, with "pass_at_n" first.
    """
    answer_rows = _ragged(answers, "answers")
    if not answer_rows:
        raise ValueError("answers is empty: need at least one problem")
    lengths = [len(row) for row in answer_rows]
    if min(lengths) == 0:
        raise ValueError(f"answers[{lengths.index(0)}] has no candidates")
    correct_rows = [
        np.asarray(row, dtype=np.float64) for row in _ragged(correct, "correct", lengths)
    ]
    for p, row in enumerate(correct_rows):
        if not np.isin(row, (0.0, 1.0)).all():
            raise ValueError(f"correct[{p}] must hold 0/1 values, got {row.tolist()}")
    if ns is None:
        ns = default_ns(min(lengths))
    ns = tuple(int(n) for n in ns)
    for n_value in ns:
        if not 1 <= n_value <= min(lengths):
            p = int(np.argmin(lengths))
            raise ValueError(
                f"N = {n_value} is outside [1, {min(lengths)}]: problem {p} has only "
                f"{lengths[p]} candidates"
            )
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    for aggregation in prm_aggregations:
        if aggregation not in PRM_AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {aggregation!r}; known: {', '.join(PRM_AGGREGATIONS)}"
            )

    # Per-problem candidate scores for every scored rule: rule → [P] list of [n].
    score_rules: dict[str, list[np.ndarray]] = {}
    weight_rules: dict[str, list[np.ndarray]] = {}
    if orm_scores is not None:
        orm_rows = [
            _as_score_vector(row, f"orm_scores[{p}]")
            for p, row in enumerate(_ragged(orm_scores, "orm_scores", lengths))
        ]
        score_rules["bon_orm"] = orm_rows
        weight_rules["weighted_majority_vote_orm"] = orm_rows
    if prm_step_scores is not None:
        prm_rows = _ragged(prm_step_scores, "prm_step_scores", lengths)
        steps = [
            step_score_rows(row, name=f"prm_step_scores[{p}]") for p, row in enumerate(prm_rows)
        ]
        for aggregation in prm_aggregations:
            aggregated = [
                np.array([_aggregate_row(r, aggregation, i) for i, r in enumerate(problem)])
                for problem in steps
            ]
            score_rules[f"bon_prm_{aggregation}"] = aggregated
            weight_rules[f"weighted_majority_vote_prm_{aggregation}"] = aggregated
    checked = dict(weight_rules)
    if confidences is not None:
        weight_rules["confidence_weighted_vote"] = [
            confidence_weights(row) for row in _ragged(confidences, "confidences", lengths)
        ]
    for name, rows in checked.items():
        for p, row in enumerate(rows):
            if (row < 0).any():
                raise ValueError(
                    f"{name}: problem {p} has negative scores {row[row < 0][:3].tolist()}; "
                    "the weighted vote needs weights >= 0 (pass probabilities, not logits)"
                )

    classes = [answer_classes(row, equiv=equiv) for row in answer_rows]
    rng = np.random.default_rng(seed)
    rule_names = ["majority_vote", *score_rules, *weight_rules]
    totals = {name: np.zeros(len(ns)) for name in rule_names}
    pass_at_n = np.zeros(len(ns))
    for p, n in enumerate(lengths):
        truth = correct_rows[p]
        for j, size in enumerate(ns):
            pass_at_n[j] += _codex_pass_at_k(n, int(truth.sum()), size)
            subsets = candidate_subsets(n, size, num_subsets=num_subsets, rng=rng)
            hits = dict.fromkeys(rule_names, 0.0)
            for subset in subsets:
                sub_classes = classes[p][subset]
                hits["majority_vote"] += truth[subset[_vote(sub_classes, np.ones(size))]]
                for name, rows in score_rules.items():
                    hits[name] += truth[subset[int(np.argmax(rows[p][subset]))]]
                for name, rows in weight_rules.items():
                    hits[name] += truth[subset[_vote(sub_classes, rows[p][subset])]]
            for name in rule_names:
                totals[name][j] += hits[name] / len(subsets)
    num_problems = len(lengths)
    results = {"pass_at_n": dict(zip(ns, (pass_at_n / num_problems).tolist()))}
    for name in rule_names:
        results[name] = dict(zip(ns, (totals[name] / num_problems).tolist()))
    return results


def format_accuracy_table(results: dict[str, dict[int, float]]) -> str:
    """Renders `accuracy_vs_n` output as a fixed-width table, one row per rule."""
    ns = sorted({n for curve in results.values() for n in curve})
    width = max(len(name) for name in results)
    header = f"{'rule':<{width}}  " + "  ".join(f"N={n:<5d}" for n in ns)
    lines = [header, "-" * len(header)]
    for name, curve in results.items():
        cells = "  ".join(f"{curve[n]:<7.4f}" if n in curve else f"{'':<7}" for n in ns)
        lines.append(f"{name:<{width}}  {cells}")
    return "\n".join(lines)
