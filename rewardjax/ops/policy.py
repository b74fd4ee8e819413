"""The fused policy loss (PPO clip, dual clip, k3 KL, entropy bonus), picking a kernel."""

from __future__ import annotations

from typing import Any

from rewardjax.kernels.policy_loss import fused_policy_loss
from rewardjax.ops.dispatch import resolve_impl
from rewardjax.types import Array

__all__ = ["policy_loss"]


def policy_loss(
    logprobs: Array,  # [B, T] log π_θ(y_t | x, y_<t)
    old_logprobs: Array,  # [B, T] same tokens under the behaviour policy
    advantages: Array,  # [B, T] or [B]
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    impl: str = "auto",
    **options: Any,
) -> tuple[Array, dict[str, Array]]:
    """Clipped surrogate + β·k3 − c_H·H, row-weighted, with its gradient fused in one pass.

      ρ = exp(clip(logp − old_logp, ±20)),  ℓ = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))
      ℓ ← min(ℓ, −c·A) where A < 0 (dual clip),  k3 = clip(e^δ − δ − 1, ±10), δ = ref − logp
      L = Σ_b w_b Σ_t mask·(ℓ + β·k3 − c_H·H)

    "Proximal Policy Optimization Algorithms" (Schulman et al., 2017); ε_high > ε_low
    is DAPO's clip-higher; dual clip and k3 as in verl. Callers normally reach it
    through the registered `ppo_clip` loss (`rewardjax.objectives.policy`), which
    turns an aggregation mode into the row weights w_b.

    Args:
      logprobs, old_logprobs, advantages, mask: as `rewardjax.kernels.policy_loss`.
      impl: "auto" | "reference" | "chunked" (the fused XLA pass) | "pallas";
        "auto" is Pallas on GPU/TPU and chunked on CPU (`resolve_impl`).
      **options: the keywords of `rewardjax.kernels.policy_loss.fused_policy_loss`
        (row_weights, ref_logprobs, entropy, clip_low, clip_high, dual_clip,
        kl_coef, entropy_coef, and the Pallas tiles), written once there.

    Returns:
      (loss, metrics) as `fused_policy_loss`.
    """
    choice = resolve_impl(impl)
    return fused_policy_loss(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        impl=choice.impl,
        target=choice.target,
        interpret=choice.interpret,
        **options,
    )
