"""Length rewards: DAPO's overlong penalty, group-gated and correct-only length penalties, repetition.

Lengths are in tokens and come from the field `length_key` (default
"completion_length", |y| = Σ_t mask, EOS included), which the trainer fills
from its rollout mask; the pure array functions take them directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.registry import REWARDS
from rewardjax.rewards.base import RewardOutput, register_reward


def _lengths(fields: Sequence[Mapping[str, Any]], length_key: str) -> np.ndarray:
    try:
        return np.asarray([float(f[length_key]) for f in fields], np.float64)
    except KeyError:
        raise KeyError(
            f"length reward needs the field {length_key!r} (completion length in tokens) "
            "in every sample; set length_key= to the field that holds it"
        ) from None


def correctness_of(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    correct_key: str | None,
    correctness: str,
    correctness_kwargs: Mapping[str, Any] | None,
) -> list[float | None]:
    """Per-sample correctness in {0, 1, None}: a field if given, else a REWARDS function."""
    if correct_key is not None and all(correct_key in f for f in fields):
        return [None if f[correct_key] is None else float(f[correct_key]) for f in fields]
    out = REWARDS.get(correctness)(prompts, completions, fields, **(correctness_kwargs or {}))
    scores = out.scores if isinstance(out, RewardOutput) else out
    return [None if s is None else float(s) for s in scores]


def _group_indices(fields: Sequence[Mapping[str, Any]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(fields):
        groups.setdefault(int(f.get("group_id", 0)), []).append(i)
    return groups


# DAPO ----------------------------------------------------------------------


def overlong_penalty(
    lengths: np.ndarray,  # [B] completion tokens
    *,
    max_length: int = 20480,
    cache_length: int = 4096,
    factor: float = 1.0,
) -> np.ndarray:
    """DAPO soft overlong punishment, [B] → [B] penalties ≤ 0.

        0                                 if |y| ≤ L_max − L_c
        ((L_max − L_c) − |y|) / L_c · f   if L_max − L_c < |y| ≤ L_max
        −f                                if |y| > L_max

    Source: "DAPO: An Open-Source LLM Reinforcement Learning System at Scale".
    """
    lengths = np.asarray(lengths, np.float64)
    if not 0 < cache_length <= max_length:
        raise ValueError(f"need 0 < cache_length ≤ max_length, got {cache_length}, {max_length}")
    start = max_length - cache_length
    ramp = (start - lengths) / cache_length * factor
    out = np.where(lengths <= start, 0.0, np.where(lengths <= max_length, ramp, -factor))
    return out.astype(np.float32)


@register_reward("dapo_overlong_penalty")
def dapo_overlong_penalty(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    max_length: int = 20480,
    cache_length: int = 4096,
    factor: float = 1.0,
    length_key: str = "completion_length",
) -> np.ndarray:
    """DAPO's overlong penalty as a reward component (add it with weight 1); see `overlong_penalty`.

    Defaults L_max 20480, L_c 4096, f 1 (tunix). |y| = L_max − L_c/2 → −0.5·f.
    """
    return overlong_penalty(
        _lengths(fields, length_key),
        max_length=max_length,
        cache_length=cache_length,
        factor=factor,
    )


# Length penalties that only reward brevity of correct answers ---------------


def kimi_length_reward(
    lengths: np.ndarray,  # [G] completion tokens of one group
    correct: np.ndarray,  # [G] 1.0 correct, 0.0 wrong
) -> np.ndarray:
    """Kimi k1.5 group length reward.

        λ_i = 0.5 − (|y_i| − min_len) / (max_len − min_len)
        r_i = λ_i if correct, min(0, λ_i) if wrong; 0 when all lengths are equal.

    Source: "Kimi k1.5: Scaling Reinforcement Learning with LLMs" (the length
    penalty that GRPO-λ gates).
    """
    lengths = np.asarray(lengths, np.float64)
    lo, hi = lengths.min(), lengths.max()
    if hi == lo:
        return np.zeros_like(lengths)
    lam = 0.5 - (lengths - lo) / (hi - lo)
    return np.where(np.asarray(correct) > 0.5, lam, np.minimum(0.0, lam))


@register_reward("correctness_gated_length", per_sample=False)
def correctness_gated_length(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    threshold: float = 0.5,
    top_fraction: float | None = None,
    length_weight: float = 1.0,
    correct_key: str | None = "correct",
    correctness: str = "math_verify_equiv",
    correctness_kwargs: Mapping[str, Any] | None = None,
    length_key: str = "completion_length",
) -> RewardOutput:
    """Correctness plus a length penalty, only in groups that are mostly correct (GRPO-λ).

        ρ_g = mean correctness of group g
        r_i = c_i + w·ℓ_i   if group g is selected, else r_i = c_i (0/1)
        ℓ_i = `kimi_length_reward` over the group

    A group is selected when ρ_g ≥ `threshold`, or, with `top_fraction`, when
    it is among the top ⌈top_fraction·#groups⌉ groups of the batch by ρ_g. An
    all-wrong group always gets plain 0/1 rewards. The abstract gives the
    gating by correctness ratio; the selection rule's constant and the exact
    penalty are the paper's (formula not in abstract) and are configurable
    here: threshold / top_fraction, length_weight.

    Args:
      threshold: minimum correctness ratio for the length penalty.
      top_fraction: select the top fraction of groups instead of a threshold.
      length_weight: w.
      correct_key: field holding 0/1 correctness; when absent, `correctness`
        (a REWARDS key) scores the batch with `correctness_kwargs`.
      length_key: field holding |y| in tokens.

    Returns:
      RewardOutput, scores [B]; diagnostics["length_penalized"] [B] bool.

    Source: "Stable Reinforcement Learning for Efficient Reasoning" (GRPO-λ).
    """
    lengths = _lengths(fields, length_key)
    c = correctness_of(
        prompts,
        completions,
        fields,
        correct_key=correct_key,
        correctness=correctness,
        correctness_kwargs=correctness_kwargs,
    )
    groups = _group_indices(fields)
    ratios = {
        g: float(np.mean([c[i] for i in rows if c[i] is not None] or [0.0]))
        for g, rows in groups.items()
    }
    if top_fraction is not None:
        k = int(np.ceil(top_fraction * len(groups)))
        ranked = sorted(groups, key=lambda g: -ratios[g])
        selected = {g for g in ranked[:k] if ratios[g] > 0}
    else:
        selected = {g for g, rho in ratios.items() if rho >= threshold and rho > 0}
    scores: list[float | None] = [None if x is None else float(x) for x in c]
    penalized = [False] * len(c)
    for g in selected:
        rows = [i for i in groups[g] if c[i] is not None]
        if not rows:
            continue
        ell = kimi_length_reward(lengths[rows], np.asarray([c[i] for i in rows]))
        for i, e in zip(rows, ell):
            scores[i] = c[i] + length_weight * float(e)
            penalized[i] = True
    return RewardOutput(scores, diagnostics={"length_penalized": penalized})


@register_reward("correct_only_length_penalty", per_sample=False)
def correct_only_length_penalty(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    alpha: float = 0.2,
    correct_key: str | None = "correct",
    correctness: str = "math_verify_equiv",
    correctness_kwargs: Mapping[str, Any] | None = None,
    length_key: str = "completion_length",
    eps: float = 1e-6,
) -> RewardOutput:
    """Correctness discounted by length normalised over the group's correct answers.

        r_i = c_i · (1 − α · σ((|y_i| − mean_c) / (std_c + ε)))

    mean_c and std_c are over the correct completions of the prompt's group;
    wrong answers get 0, so brevity is only ever rewarded among correct ones.

    Args:
      alpha: strength α ∈ [0, 1).
      correct_key, correctness, correctness_kwargs: see `correctness_gated_length`.
      length_key: field holding |y| in tokens.

    Source: "Training Language Models to Reason Efficiently" (Arora & Zanette).
    """
    lengths = _lengths(fields, length_key)
    c = correctness_of(
        prompts,
        completions,
        fields,
        correct_key=correct_key,
        correctness=correctness,
        correctness_kwargs=correctness_kwargs,
    )
    scores: list[float | None] = [None if x is None else float(x) for x in c]
    for rows in _group_indices(fields).values():
        right = [i for i in rows if c[i] == 1.0]
        if not right:
            continue
        mu, sd = lengths[right].mean(), lengths[right].std()
        for i in right:
            z = (lengths[i] - mu) / (sd + eps)
            scores[i] = 1.0 - alpha / (1.0 + np.exp(-z))
    return RewardOutput(scores)


# Repetition ----------------------------------------------------------------


def repetition_penalty_value(
    tokens: Sequence[Any], *, ngram: int = 3, penalty: float = -1.0
) -> float:
    """(1 − #unique n-grams / #n-grams) · p; 0 when there are fewer than n tokens.

    [5, 5, 5, 5, 5], n = 2 → 4 bigrams, 1 unique → (1 − 1/4)·(−1) = −0.75.

    Source: TRL `get_repetition_penalty_reward`.
    """
    tokens = list(tokens)
    if len(tokens) < ngram:
        return 0.0
    grams = [tuple(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)]
    return (1.0 - len(set(grams)) / len(grams)) * penalty


@register_reward("repetition_penalty")
def repetition_penalty(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    ngram: int = 3,
    penalty: float = -1.0,
    tokens_key: str | None = None,
) -> list[float]:
    """N-gram repetition penalty, (1 − #unique n-grams / #n-grams) · p, p ≤ 0.

    Args:
      ngram: n (TRL: 3).
      penalty: p (TRL: −1).
      tokens_key: field with the completion's token ids; default: the
        completion's lower-cased whitespace words (as TRL).

    Source: TRL `get_repetition_penalty_reward`.
    """
    out = []
    for c, f in zip(completions, fields):
        tokens = f[tokens_key] if tokens_key is not None else c.lower().split()
        out.append(repetition_penalty_value(tokens, ngram=ngram, penalty=penalty))
    return out
