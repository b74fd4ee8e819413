"""Label-free and calibration rewards: majority-vote pseudo-labels (TTRL), Brier calibration (RLCR)."""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.rewards.base import RewardOutput, register_reward
from rewardjax.rewards.length import correctness_of
from rewardjax.rewards.math import extract_answer, normalize_text, parse_number


def completion_vote_key(text: str, *, extract: str = "auto", numeric: bool = True) -> str | None:
    """The TTRL vote key of a whole completion: its extracted answer, normalised.

    Numbers compare by value ("2", "2.0" and "4/2" share the key "2"); other
    answers by `normalize_text`. None when nothing could be extracted. Looser
    than `rewardjax.inference.canonical_answer`, which keys an answer that is
    already extracted and leaves fractions and LaTeX to an `equiv` function.
    """
    span = extract_answer(text, extract)
    if span is None or not span.strip():
        return None
    if numeric:
        value = parse_number(span)
        if value is not None:
            return repr(float(value)).removesuffix(".0")
    return normalize_text(span)


def majority_vote_labels(
    answers: Sequence[str | None],  # [B] vote keys, None = no answer
    group_ids: Sequence[int],  # [B]
    *,
    tie_break: str = "first",
) -> tuple[list[float], list[str | None], list[float]]:
    """TTRL pseudo-labels: â_g = mode of group g's answers; r_i = 1[a_i = â_g].

    Args:
      answers: each completion's vote key; None does not vote and scores 0.
      group_ids: group of each row.
      tie_break: "first" (among tied answers, the one seen first in the
        group) or "none" (a tie gives no label: every row of the group scores 0).

    Returns:
      rewards [B], the group's majority answer per row, its vote share per row.

    [A, A, B, C] → [1, 1, 0, 0].
    """
    if tie_break not in ("first", "none"):
        raise ValueError(f"tie_break must be 'first' or 'none', got {tie_break!r}")
    rows: dict[int, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(group_ids):
        rows[int(g)].append(i)
    rewards = [0.0] * len(answers)
    majority: list[str | None] = [None] * len(answers)
    share = [0.0] * len(answers)
    for idx in rows.values():
        counts = collections.Counter(answers[i] for i in idx if answers[i] is not None)
        if not counts:
            continue
        top = max(counts.values())
        tied = [a for a in dict.fromkeys(answers[i] for i in idx) if counts.get(a) == top]
        if len(tied) > 1 and tie_break == "none":
            continue
        label = tied[0]
        for i in idx:
            majority[i] = label
            share[i] = top / len(idx)
            rewards[i] = float(answers[i] == label)
    return rewards, majority, share


@register_reward("majority_vote_reward", per_sample=False)
def majority_vote_reward(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    extract: str = "auto",
    numeric: bool = True,
    tie_break: str = "first",
) -> RewardOutput:
    """Majority-vote reward without labels: r_i = 1[a_i = mode of the group's answers].

    Groups come from the "group_id" field (the reward computer sets it).

    Args:
      extract: answer extraction mode (see `rewardjax.rewards.math`).
      numeric: compare numeric answers by value.
      tie_break: see `majority_vote_labels`.

    Returns:
      RewardOutput: scores [B]; diagnostics "answer", "majority", "vote_share".

    Source: TTRL, as cited by "Evolving Language Models without Labels: …"
    (EVOL-RL) and SPINE.
    """
    answers = [completion_vote_key(c, extract=extract, numeric=numeric) for c in completions]
    group_ids = [int(f.get("group_id", 0)) for f in fields]
    rewards, majority, share = majority_vote_labels(answers, group_ids, tie_break=tie_break)
    return RewardOutput(
        rewards, diagnostics={"answer": answers, "majority": majority, "vote_share": share}
    )


def brier_reward(
    correct: np.ndarray,  # [B] c ∈ {0, 1}
    confidence: np.ndarray,  # [B] q ∈ [0, 1]
) -> np.ndarray:
    """RLCR calibration reward r = c − (q − c)², [B] → [B].

    (c, q) = (1, 1) → 1; (0, 1) → −1; (0, 0) → 0. For a fixed answer with
    success probability p, E[r] = p − (q² − 2pq + p) is maximised at q = p.

    Source: "Beyond Binary Rewards: Training LMs to Reason About Their Uncertainty".
    """
    c = np.asarray(correct, np.float64)
    q = np.clip(np.asarray(confidence, np.float64), 0.0, 1.0)
    return (c - (q - c) ** 2).astype(np.float32)


_CONFIDENCE = re.compile(r"<confidence>\s*([-+]?\d*\.?\d+)\s*(%?)\s*</confidence>", re.IGNORECASE)


def parse_confidence(text: str) -> float | None:
    """The last <confidence>q</confidence> of a completion (0.8 or 80%), clipped to [0, 1]."""
    found = _CONFIDENCE.findall(text)
    if not found:
        return None
    value, percent = found[-1]
    q = float(value) / (100.0 if percent else 1.0)
    return min(max(q, 0.0), 1.0)


@register_reward("rlcr_brier")
def rlcr_brier(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    missing_penalty: float = 1.0,
    correct_key: str | None = "correct",
    correctness: str = "math_verify_equiv",
    correctness_kwargs: Mapping[str, Any] | None = None,
) -> RewardOutput:
    """Binary correctness plus a Brier calibration term: r = c − (q − c)².

    q is parsed from "<confidence>q</confidence>" in the completion; without
    one, r = c − `missing_penalty` (the Brier term at its worst by default).

    Args:
      missing_penalty: Brier term used when no confidence is given.
      correct_key: field with 0/1 correctness; when absent, `correctness` (a
        REWARDS key) scores the batch with `correctness_kwargs`.

    Returns:
      RewardOutput: scores [B] (None where correctness is None); diagnostics
      "confidence" (None where missing).

    Source: "Beyond Binary Rewards: Training LMs to Reason About Their Uncertainty" (RLCR).
    """
    c = correctness_of(
        prompts,
        completions,
        fields,
        correct_key=correct_key,
        correctness=correctness,
        correctness_kwargs=correctness_kwargs,
    )
    qs = [parse_confidence(text) for text in completions]
    scores: list[float | None] = []
    for ci, q in zip(c, qs):
        if ci is None:
            scores.append(None)
        elif q is None:
            scores.append(ci - missing_penalty)
        else:
            scores.append(float(brier_reward(np.array([ci]), np.array([q]))[0]))
    return RewardOutput(scores, diagnostics={"confidence": qs})
