"""Supervised fine-tuning losses on token log-probs of demonstrations.

Inputs are [B, T] log-probs of the target tokens under the policy and a [B, T]
mask (1.0 on the tokens trained on). The reduction is any `LOSS_AGGREGATIONS`
mode (default `token_mean`), with the same global normalizers as the policy
losses (`num_tokens`, `num_seqs`: sum the micro-batch losses).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from rewardjax.objectives.aggregation import aggregate, f32, masked_mean
from rewardjax.registry import SFT_LOSSES
from rewardjax.types import Array

__all__ = [
    "asft_anchored_loss",
    "dft_prob_weighted_loss",
    "raft_reward_ranked_loss",
    "reward_ranked_selection",
    "sft_nll_loss",
]

sg = jax.lax.stop_gradient


def _check(logprobs, mask, *extra):
    arrays = [logprobs, mask, *[e for e in extra if e is not None]]
    chex.assert_rank(arrays, 2)
    chex.assert_equal_shape(arrays)
    return f32(logprobs), f32(mask)


def _agg(values, mask, aggregation, num_tokens, num_seqs, loss_scale_factor):
    return aggregate(
        values,
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )


@SFT_LOSSES.register("sft_nll")
def sft_nll_loss(
    logprobs: Array,  # [B, T] log π_θ of the target tokens
    mask: Array,  # [B, T] 1.0 on trained tokens
    *,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Negative log-likelihood of the demonstration tokens.

      L = −Σ mask·logp / Σ mask   (token_mean; or any aggregation mode)

    Args:
      logprobs: [B, T] log-probs of the target tokens.
      mask: [B, T] 1.0 on trained tokens.
      aggregation: a `LOSS_AGGREGATIONS` key.
      num_tokens, num_seqs, loss_scale_factor: global normalizers.

    Returns:
      (loss, metrics {nll, token_prob}); nll is the token mean.

    Source: maximum-likelihood fine-tuning (every framework).
    """
    logprobs, mask = _check(logprobs, mask)
    loss = _agg(-logprobs, mask, aggregation, num_tokens, num_seqs, loss_scale_factor)
    metrics = {
        "nll": sg(masked_mean(-logprobs, mask)),
        "token_prob": sg(masked_mean(jnp.exp(jnp.minimum(logprobs, 0.0)), mask)),
    }
    return loss, metrics


@SFT_LOSSES.register("dft_prob_weighted")
def dft_prob_weighted_loss(
    logprobs: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Dynamic fine-tuning: the NLL of each token weighted by its (stop-gradient) probability.

      L = −Σ mask·sg[p_t]·logp_t / Σ mask,   p_t = exp(logp_t)

    The gradient per token is −∇p_t.

    Args:
      logprobs: [B, T] log-probs of the target tokens.
      mask: [B, T] 1.0 on trained tokens.
      aggregation, num_tokens, num_seqs, loss_scale_factor: as `sft_nll`.

    Returns:
      (loss, metrics {nll, token_prob}).

    Source: "On the Generalization of SFT: A Reinforcement Learning Perspective
    with Reward Rectification" (DFT), analysed in "Anchored Supervised
    Fine-Tuning".
    """
    logprobs, mask = _check(logprobs, mask)
    p = sg(jnp.exp(jnp.minimum(logprobs, 0.0)))
    loss = _agg(-p * logprobs, mask, aggregation, num_tokens, num_seqs, loss_scale_factor)
    metrics = {"nll": sg(masked_mean(-logprobs, mask)), "token_prob": masked_mean(p, mask)}
    return loss, metrics


@SFT_LOSSES.register("asft_anchored")
def asft_anchored_loss(
    logprobs: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    token_kl: Array,  # [B, T] per-position KL between policy and frozen reference
    kl_coef: float,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Anchored SFT: DFT plus a KL anchor to the frozen initial model.

      L = agg(−sg[p_t]·logp_t + λ·KL_t),   KL_t = KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t))

    Args:
      logprobs: [B, T] log-probs of the target tokens.
      mask: [B, T] 1.0 on trained tokens.
      token_kl: [B, T] per-position full-vocabulary KL (gradient flows), e.g.
        `kl.full_vocab_kl(logits, ref_logits)` ("reverse" = KL(π_θ‖π_ref), as the
        paper writes it; the authors' code uses "forward").
      kl_coef: λ ("lightweight"; the abstract gives no value, so it is required).
      aggregation, num_tokens, num_seqs, loss_scale_factor: as `sft_nll`.

    Returns:
      (loss, metrics {nll, token_prob, kl}); λ = 0 is `dft_prob_weighted`.

    Source: "Anchored Supervised Fine-Tuning" (ASFT).
    """
    logprobs, mask = _check(logprobs, mask, token_kl)
    p = sg(jnp.exp(jnp.minimum(logprobs, 0.0)))
    per_token = -p * logprobs + kl_coef * f32(token_kl)
    loss = _agg(per_token, mask, aggregation, num_tokens, num_seqs, loss_scale_factor)
    metrics = {
        "nll": sg(masked_mean(-logprobs, mask)),
        "token_prob": masked_mean(p, mask),
        "kl": sg(masked_mean(token_kl, mask)),
    }
    return loss, metrics


def reward_ranked_selection(
    rewards: Array,  # [B] reward-model or verifier score of each sample
    group_id: Array | None = None,  # [B] prompt of each sample
    *,
    group_size: int | None = None,
    top_k: int | None = 1,
    threshold: float | None = None,
) -> Array:
    """Which samples RAFT keeps: the top-k of each prompt's N samples and/or those above a threshold.

    Ties are broken by the lower row index. Returns keep [B] float32 (1.0 = kept).
    top_k=None keeps every sample that passes the threshold.
    """
    chex.assert_rank(rewards, 1)
    b = rewards.shape[0]
    r = sg(f32(rewards))
    if group_size is not None:
        if b % group_size:
            raise ValueError(f"group_size={group_size} does not divide the batch of {b} rows")
        gid = jnp.arange(b) // group_size
    elif group_id is not None:
        gid = jnp.asarray(group_id)
    else:
        raise ValueError("reward_ranked_selection needs group_id [B] or group_size")
    keep = jnp.ones((b,), bool)
    if top_k is not None:
        idx = jnp.arange(b)
        same = gid[:, None] == gid[None, :]
        ahead = (r[None, :] > r[:, None]) | (
            (r[None, :] == r[:, None]) & (idx[None, :] < idx[:, None])
        )
        rank = jnp.sum(same & ahead, axis=-1)
        keep = keep & (rank < top_k)
    if threshold is not None:
        keep = keep & (r >= threshold)
    return keep.astype(jnp.float32)


@SFT_LOSSES.register("raft_reward_ranked")
def raft_reward_ranked_loss(
    logprobs: Array,  # [B, T] log-probs of the sampled responses
    mask: Array,  # [B, T]
    rewards: Array,  # [B] reward of each sample (selector: RM or verifier)
    group_id: Array | None = None,  # [B]
    *,
    group_size: int | None = None,
    top_k: int | None = 1,
    threshold: float | None = None,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Reward-ranked fine-tuning: SFT on the best samples of each prompt.

      keep_i = 1[rank_g(r_i) < k] (and r_i ≥ threshold);  L = sft_nll over kept rows

    Sample N per prompt, score them with a reward model (`selector=rm`) or a
    verifier (`selector=verifier`): the selector is whichever reward is passed.
    k = N is SFT on everything.

    Args:
      logprobs: [B, T] log-probs of the sampled responses under the policy.
      mask: [B, T] 1.0 on completion tokens.
      rewards: [B] score of each sample.
      group_id: [B] prompt of each sample (or group_size = N).
      group_size: N for group-contiguous rows.
      top_k: k samples kept per prompt (None: threshold only).
      threshold: minimum reward to keep a sample (None: no threshold).
      aggregation, num_tokens, num_seqs, loss_scale_factor: as `sft_nll`
        (global counts must be over the kept rows).

    Returns:
      (loss, metrics {nll, kept_frac, kept_reward_mean}).

    Source: "RAFT: Reward rAnked FineTuning for Generative Foundation Model
    Alignment"; positive best-of-N cloning in "Exploring the Limit of Outcome
    Reward for Learning Mathematical Reasoning".
    """
    logprobs, mask = _check(logprobs, mask)
    chex.assert_equal_shape_prefix([rewards, mask], 1)
    keep = reward_ranked_selection(
        rewards, group_id, group_size=group_size, top_k=top_k, threshold=threshold
    )
    kept_mask = mask * keep[:, None]
    loss, metrics = sft_nll_loss(
        logprobs,
        kept_mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    metrics["kept_frac"] = jnp.mean(keep)
    metrics["kept_reward_mean"] = jnp.sum(keep * sg(f32(rewards))) / jnp.maximum(jnp.sum(keep), 1.0)
    return loss, metrics
