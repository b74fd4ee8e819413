"""The fused policy loss (PPO clip, dual clip, k3 KL, entropy bonus, aggregation)."""

from __future__ import annotations

from rewardjax.kernels.policy_loss import (
    AGGREGATIONS,
    fused_policy_loss,
    pallas_policy_loss,
    reference_policy_loss,
)
from rewardjax.ops.dispatch import resolve_impl
from rewardjax.types import Array

__all__ = ["AGGREGATIONS", "policy_loss"]


def policy_loss(
    logprobs: Array,  # [B, T] log π_θ(y_t | x, y_<t)
    old_logprobs: Array,  # [B, T] same tokens under the behaviour policy
    advantages: Array,  # [B, T] or [B]
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    ref_logprobs: Array | None = None,  # [B, T] under the reference policy
    entropy: Array | None = None,  # [B, T] entropy of π_θ
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
    impl: str = "auto",
) -> tuple[Array, dict[str, Array]]:
    """Clipped surrogate + β·k3 − c_H·H, aggregated, with its gradient fused in one pass.

      ρ = exp(clip(logp − old_logp, ±20)),  ℓ = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))
      ℓ ← min(ℓ, −c·A) where A < 0 (dual clip),  k3 = clip(e^δ − δ − 1, ±10), δ = ref − logp
      L = agg(ℓ + β·k3) − c_H·agg(H)

    "Proximal Policy Optimization Algorithms" (Schulman et al., 2017); ε_high > ε_low
    is DAPO's clip-higher; dual clip and k3 as in verl.

    Args:
      logprobs: [B, T] log-probs of the sampled tokens under π_θ; differentiable.
      old_logprobs: [B, T] under the behaviour policy (no gradient).
      advantages: [B, T], or [B] broadcast over tokens (no gradient).
      mask: [B, T] 1.0 on completion tokens; masked entries may hold anything.
      ref_logprobs: [B, T] under the reference policy, or None (no KL term).
      entropy: [B, T] per-token entropy of π_θ (from `token_logprobs`), or None;
        differentiable.
      clip_low, clip_high: ε_low, ε_high.
      dual_clip: c > 1, or None for no dual clip.
      kl_coef: β (needs `ref_logprobs`).
      entropy_coef: c_H (needs `entropy`).
      aggregation: "token_mean" | "seq_mean_token_sum" | "seq_mean_token_mean" |
        "seq_mean_token_sum_norm".
      num_tokens, num_seqs: global normalisers for micro-batching (sum the
        micro-batch losses); local counts when None.
      loss_scale_factor: C of "seq_mean_token_sum_norm"; T when None.
      impl: "auto" | "reference" | "chunked" (the fused XLA pass) | "pallas".

    Returns:
      (loss, metrics): scalar float32 loss; scalar metrics pg_loss, clip_frac,
      clip_frac_low, clip_frac_high, clip_frac_dual, ratio_mean, ppo_kl
      (mean old_logp − logp), approx_kl (mean ρ − 1 − log ρ), and kl_ref (mean k3)
      / entropy when those inputs are given (token means over this batch's valid
      tokens, the names `objectives.policy` uses). Metrics carry no gradient.
    """
    choice = resolve_impl(impl)
    kwargs = dict(
        ref_logprobs=ref_logprobs,
        entropy=entropy,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip=dual_clip,
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    args = (logprobs, old_logprobs, advantages, mask)
    if choice.impl == "reference":
        return reference_policy_loss(*args, **kwargs)
    if choice.impl == "chunked":
        return fused_policy_loss(*args, **kwargs)
    return pallas_policy_loss(*args, target=choice.target, interpret=choice.interpret, **kwargs)
