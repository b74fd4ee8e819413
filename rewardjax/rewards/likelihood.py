"""Likelihood rewards: the policy's own probability of the reference answer.

These need the policy's forward pass, so the RL loop computes them on device:
it appends the reference answer a* after the sampled reasoning (replacing the
sampled answer), teacher-forces the sequence, and passes the per-token
log-probs and a mask that is 1.0 on the answer tokens. The functions are pure
JAX and jit-able; their outputs carry no gradient (rewards are constants to
the policy update).

They are registered in REWARDS under their catalogue keys, but they do not
take (prompts, completions, fields): `RewardFunctionPool` refuses them with a
pointer here.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.rewards.base import register_reward

Array = jax.Array

__all__ = ["forced_answer_inputs", "ref_answer_logprob", "rlpr_prob_reward"]


def forced_answer_inputs(
    tokenizer,
    completions: Sequence[str],
    answers: Sequence[str],
    *,
    answer_prefix: str,
    reasoning: bool = True,
) -> dict[str, np.ndarray]:
    """Teacher-forcing rows: each completion's reasoning, then `answer_prefix` + the reference answer.

    The reasoning is the completion up to its last `answer_prefix` (the sampled
    answer is dropped); a completion without one keeps all its text and gets
    the prefix on a new line. `reasoning=False` gives RLPR's no-reasoning
    baseline rows (the prefix and answer right after the prompt). The pieces
    are encoded apart and concatenated, so the answer's tokens are exactly
    `encode(answer)` whatever the tokenizer merges at the seams; an EOS ends
    each row (not part of the answer mask).

    Returns:
      tokens, mask, answer_mask: [B, T] (T: the longest row), to be scored as
      the completion after the prompt.
    """
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions but {len(answers)} reference answers")
    rows, answer_spans = [], []
    for text, answer in zip(completions, answers):
        if answer is None or not str(answer):
            raise ValueError("a likelihood reward needs each problem's reference answer")
        head = ""
        if reasoning:
            cut = text.rfind(answer_prefix) if answer_prefix else -1
            head = text[:cut] if cut >= 0 else text.rstrip() + "\n"
        lead = tokenizer.encode(head + answer_prefix) if head + answer_prefix else []
        body = tokenizer.encode(str(answer))
        rows.append([*lead, *body, tokenizer.eos_id])
        answer_spans.append((len(lead), len(lead) + len(body)))
    width = max(len(r) for r in rows)
    tokens = np.full((len(rows), width), tokenizer.pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.float32)
    answer_mask = np.zeros((len(rows), width), np.float32)
    for i, (row, (lo, hi)) in enumerate(zip(rows, answer_spans)):
        tokens[i, : len(row)] = row
        mask[i, : len(row)] = 1.0
        answer_mask[i, lo:hi] = 1.0
    return dict(tokens=tokens, mask=mask, answer_mask=answer_mask)


@register_reward("ref_answer_logprob", device=True)
def ref_answer_logprob(
    logprobs: Array,  # [B, T] log π(token_t | x, y_cot, a*_<t), teacher-forced
    answer_mask: Array,  # [B, T] 1.0 on reference-answer tokens
    *,
    length_normalize: bool = False,
    variant: str = "logprob",
) -> Array:
    """Log-probability of the reference answer after the sampled reasoning.

        r = Σ_{t ∈ a*} log π(a*_t | x, y_cot, a*_<t)      ("logprob")
        r / |a*| with length_normalize;  e^r with variant "prob" (VeriFree-like)

    The log-prob form works in every setup of the paper; the probability
    vanishes on long answers (e^r → 0 as |a*| grows).

    Args:
      logprobs: [B, T] per-token log-probs of the teacher-forced sequence.
      answer_mask: [B, T] 1.0 on the reference answer's tokens.
      length_normalize: divide by |a*| (mean log-prob).
      variant: "logprob" or "prob".

    Returns:
      [B] float32 rewards (stop-gradient). Rows with an empty mask get 0
      ("logprob") or 1 ("prob").

    Source: "Likelihood-Based Reward Designs for General LLM Reasoning".
    """
    chex.assert_rank([logprobs, answer_mask], 2)
    chex.assert_equal_shape([logprobs, answer_mask])
    if variant not in ("logprob", "prob"):
        raise ValueError(f"variant must be 'logprob' or 'prob', got {variant!r}")
    logprobs = jax.lax.stop_gradient(logprobs.astype(jnp.float32))
    mask = answer_mask.astype(jnp.float32)
    r = jnp.sum(logprobs * mask, axis=-1)  # [B]
    if length_normalize:
        r = r / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
    if variant == "prob":
        r = jnp.exp(r)
    return r


def _mean_token_prob(logprobs: Array, mask: Array) -> Array:
    mask = mask.astype(jnp.float32)
    probs = jnp.exp(logprobs.astype(jnp.float32)) * mask
    return jnp.sum(probs, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


@register_reward("rlpr_prob_reward", device=True)
def rlpr_prob_reward(
    logprobs: Array,  # [B, T] log π of the reference answer after the sampled reasoning
    answer_mask: Array,  # [B, T] 1.0 on reference-answer tokens
    baseline_logprobs: Array | None = None,  # [B, T'] same answer with no reasoning
    baseline_mask: Array | None = None,  # [B, T']
    *,
    debias: bool = True,
) -> Array:
    """RLPR probability reward: mean per-token probability of the reference answer.

        r = (1/|a*|) Σ_{t ∈ a*} π(a*_t | x, y_cot, a*_<t)
        debiased: r̂ = clip(r − r_0, 0, 1), r_0 = the same with the answer
        decoded right after the prompt (no reasoning)

    The mean of probabilities (not their product) keeps the reward from
    vanishing on long answers; subtracting r_0 removes what the question alone
    already explains. RLPR's other stabiliser, dropping prompts whose rewards
    have a small standard deviation, is a curation rule, not part of the
    reward.

    Args:
      logprobs, answer_mask: [B, T] as in `ref_answer_logprob`.
      baseline_logprobs, baseline_mask: [B, T'] the no-reasoning pass; needed
        when `debias`.
      debias: subtract and clip as above.

    Returns:
      [B] float32 rewards in [0, 1] (stop-gradient).

    Source: "RLPR: Extrapolating RLVR to General Domains without Verifiers".
    """
    chex.assert_rank([logprobs, answer_mask], 2)
    chex.assert_equal_shape([logprobs, answer_mask])
    r = _mean_token_prob(jax.lax.stop_gradient(logprobs), answer_mask)  # [B]
    if debias:
        if baseline_logprobs is None or baseline_mask is None:
            raise ValueError(
                "rlpr_prob_reward: debias=True needs baseline_logprobs and baseline_mask"
            )
        chex.assert_rank([baseline_logprobs, baseline_mask], 2)
        chex.assert_equal_shape([baseline_logprobs, baseline_mask])
        chex.assert_equal(baseline_logprobs.shape[0], logprobs.shape[0])
        r0 = _mean_token_prob(jax.lax.stop_gradient(baseline_logprobs), baseline_mask)
        r = jnp.clip(r - r0, 0.0, 1.0)
    return r
