"""KL estimators, KL placement (in the reward or in the loss) and the adaptive KL controller.

Every estimator targets KL(π_θ‖π_ref) from the log-probs of sampled tokens,
with δ = ref_logp − logp (mechanisms.md §0):

  k1 = −δ = logp − ref_logp          unbiased, can be negative per token
  k2 = ½·δ²                          biased, low variance; its gradient is the
                                     on-policy gradient of the true KL
  k3 = e^δ − δ − 1                   unbiased, always ≥ 0 (Schulman's "k3")

An estimator name with a trailing "+" (e.g. "kl_k3+") is the straight-through
variant: the value of the named estimator with the gradient of k2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from rewardjax.objectives.aggregation import aggregate, f32, masked_mean
from rewardjax.registry import KL_ESTIMATORS
from rewardjax.types import Array

__all__ = [
    "AdaptiveKLState",
    "KLController",
    "adaptive_kl_controller",
    "full_vocab_kl",
    "get_kl_estimator",
    "kl_in_loss",
    "kl_in_reward",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_straight_through",
]

_DELTA_CLAMP = 20.0
_K3_CLAMP = 10.0


def _check(logprobs: Array, ref_logprobs: Array) -> tuple[Array, Array]:
    chex.assert_equal_shape([logprobs, ref_logprobs])
    return f32(logprobs), f32(ref_logprobs)


@KL_ESTIMATORS.register("kl_k1")
def kl_k1(
    logprobs: Array,  # [B, T] log π_θ of the sampled tokens
    ref_logprobs: Array,  # [B, T] log π_ref of the same tokens
) -> Array:
    """k1 estimator of KL(π_θ‖π_ref): the log-ratio itself.

      k1 = logp − ref_logp

    Args:
      logprobs: [B, T] policy log-probs of the sampled tokens.
      ref_logprobs: [B, T] reference log-probs of the same tokens.

    Returns:
      [B, T] float32 per-token estimate (may be negative per token).

    Source: "Approximating KL Divergence" (Schulman, 2020); verl `kl`, OpenRLHF,
    TRL RLOO.
    """
    logprobs, ref_logprobs = _check(logprobs, ref_logprobs)
    return logprobs - ref_logprobs


@KL_ESTIMATORS.register("kl_k2")
def kl_k2(
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
) -> Array:
    """k2 estimator: half the squared log-ratio.

      k2 = ½·δ²,   δ = ref_logp − logp

    Args:
      logprobs: [B, T] policy log-probs of the sampled tokens.
      ref_logprobs: [B, T] reference log-probs of the same tokens.

    Returns:
      [B, T] float32 per-token estimate, ≥ 0.

    Source: "Approximating KL Divergence" (Schulman, 2020); verl `mse`, OpenRLHF.
    """
    logprobs, ref_logprobs = _check(logprobs, ref_logprobs)
    return 0.5 * jnp.square(ref_logprobs - logprobs)


@KL_ESTIMATORS.register("kl_k3")
def kl_k3(
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
) -> Array:
    """k3 (low-variance, non-negative) estimator with verl's clamping.

      k3 = clip(e^δ − δ − 1, −10, 10),   δ = clip(ref_logp − logp, −20, 20)

    Args:
      logprobs: [B, T] policy log-probs of the sampled tokens.
      ref_logprobs: [B, T] reference log-probs of the same tokens.

    Returns:
      [B, T] float32 per-token estimate, ≥ 0.

    Source: "Approximating KL Divergence" (Schulman, 2020); verl `low_var_kl`,
    OpenRLHF, TRL.
    """
    logprobs, ref_logprobs = _check(logprobs, ref_logprobs)
    delta = jnp.clip(ref_logprobs - logprobs, -_DELTA_CLAMP, _DELTA_CLAMP)
    return jnp.clip(jnp.exp(delta) - delta - 1.0, -_K3_CLAMP, _K3_CLAMP)


@KL_ESTIMATORS.register("kl_straight_through")
def kl_straight_through(
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
    *,
    estimator: str = "kl_k3",
) -> Array:
    """Value of estimator k_x, gradient of k2 (the unbiased on-policy KL gradient).

      k = k2 − sg[k2] + sg[k_x]

    Args:
      logprobs: [B, T] policy log-probs of the sampled tokens.
      ref_logprobs: [B, T] reference log-probs of the same tokens.
      estimator: the estimator whose value is reported ("kl_k1", "kl_k2", "kl_k3").

    Returns:
      [B, T] float32 per-token estimate.

    Source: verl straight-through KL (`k1+`, `k3+`); "Approximating KL Divergence".
    """
    base = KL_ESTIMATORS.get(estimator)
    if base is kl_straight_through:
        raise ValueError("kl_straight_through: estimator must be a base estimator")
    k2 = kl_k2(logprobs, ref_logprobs)
    return k2 - jax.lax.stop_gradient(k2) + jax.lax.stop_gradient(base(logprobs, ref_logprobs))


def get_kl_estimator(name: str) -> Callable[[Array, Array], Array]:
    """Resolves an estimator name; a trailing "+" selects the straight-through variant.

    "kl_k3" -> kl_k3; "kl_k3+" (or "k3+") -> value of k3 with the k2 gradient.
    The short names "k1", "k2", "k3" are accepted as aliases.
    """
    straight = name.endswith("+")
    base = name[:-1] if straight else name
    if base in ("k1", "k2", "k3"):
        base = "kl_" + base
    if base not in ("kl_k1", "kl_k2", "kl_k3"):
        raise KeyError(
            f"unknown KL estimator {name!r}; known: kl_k1, kl_k2, kl_k3, each optionally "
            "with a trailing '+' for the straight-through variant"
        )
    if straight:
        return lambda lp, ref: kl_straight_through(lp, ref, estimator=base)
    return KL_ESTIMATORS.get(base)


@KL_ESTIMATORS.register("kl_in_reward")
def kl_in_reward(
    token_rewards: Array,  # [B, T] per-token rewards (outcome at the last token)
    old_logprobs: Array,  # [B, T] behaviour-policy log-probs of the sampled tokens
    ref_logprobs: Array,  # [B, T] reference log-probs
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    kl_coef: float,
    estimator: str = "kl_k1",
) -> tuple[Array, dict[str, Array]]:
    """Subtracts a KL penalty from the reward on every valid token (no gradient).

      r_t ← r_t − β·k(old_logp_t, ref_logp_t)   on tokens with mask = 1

    Args:
      token_rewards: [B, T] per-token rewards.
      old_logprobs: [B, T] log-probs of the sampled tokens under the rollout policy.
      ref_logprobs: [B, T] log-probs under the reference policy.
      mask: [B, T] 1.0 on completion tokens.
      kl_coef: β (verl 0.001, OpenRLHF 0.01, TRL RLOO 0.05).
      estimator: KL estimator name (default k1).

    Returns:
      (token_rewards [B, T] float32 with the penalty, metrics {kl_reward, kl_penalty}).

    Source: "Fine-Tuning Language Models from Human Preferences" (Ziegler et al.);
    verl `use_kl_in_reward`, OpenRLHF, TRL.
    """
    chex.assert_rank([token_rewards, old_logprobs, ref_logprobs, mask], 2)
    chex.assert_equal_shape([token_rewards, old_logprobs, ref_logprobs, mask])
    mask = f32(mask)
    kl = jax.lax.stop_gradient(get_kl_estimator(estimator)(old_logprobs, ref_logprobs))
    kl = jnp.where(mask > 0, kl, 0.0)
    out = jnp.where(mask > 0, f32(token_rewards) - kl_coef * kl, f32(token_rewards))
    metrics = {
        "kl_reward": masked_mean(kl, mask),
        "kl_penalty": kl_coef * masked_mean(kl, mask),
    }
    return jax.lax.stop_gradient(out), metrics


@KL_ESTIMATORS.register("kl_in_loss")
def kl_in_loss(
    logprobs: Array,  # [B, T] current policy log-probs
    ref_logprobs: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    kl_coef: float,
    estimator: str = "kl_k3",
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """KL penalty added to the loss, aggregated like the policy loss.

      L_KL = β·agg(k(logp, ref_logp))

    Args:
      logprobs: [B, T] current policy log-probs (gradient flows through them).
      ref_logprobs: [B, T] reference log-probs (stop-gradient).
      mask: [B, T] 1.0 on completion tokens.
      kl_coef: β (verl 0.001, tunix 0.04, TRL 0; none in DAPO / Dr.GRPO).
      estimator: KL estimator name (default k3; "kl_k3+" for straight-through).
      aggregation: a `LOSS_AGGREGATIONS` key, the policy loss's own mode.
      num_tokens, num_seqs, loss_scale_factor: global normalizers, see
        `rewardjax.objectives.aggregation`.

    Returns:
      (β·agg(k) scalar float32, metrics {kl_ref, kl_loss}).

    Source: "DeepSeekMath" (GRPO KL in the loss); verl `use_kl_loss`, OpenRLHF,
    TRL `beta`, tunix.
    """
    chex.assert_rank([logprobs, ref_logprobs, mask], 2)
    chex.assert_equal_shape([logprobs, ref_logprobs, mask])
    kl = get_kl_estimator(estimator)(logprobs, jax.lax.stop_gradient(f32(ref_logprobs)))
    value = aggregate(
        kl,
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    loss = kl_coef * value
    metrics = {
        "kl_ref": jax.lax.stop_gradient(masked_mean(kl, mask)),
        "kl_loss": jax.lax.stop_gradient(loss),
    }
    return loss, metrics


def full_vocab_kl(
    logits: Array,  # [B, T, V] policy logits
    ref_logits: Array,  # [B, T, V] reference logits
    *,
    direction: str = "reverse",
) -> Array:
    """Exact per-position KL over the vocabulary, [B, T, V] -> [B, T].

    "reverse" = KL(π_θ‖π_ref) = Σ_v p_θ·(log p_θ − log p_ref); "forward" =
    KL(π_ref‖π_θ). The reference logits are stop-gradient.
    """
    chex.assert_equal_shape([logits, ref_logits])
    logp = jax.nn.log_softmax(f32(logits), axis=-1)
    ref = jax.nn.log_softmax(jax.lax.stop_gradient(f32(ref_logits)), axis=-1)
    if direction == "reverse":
        return jnp.sum(jnp.exp(logp) * (logp - ref), axis=-1)
    if direction == "forward":
        return jnp.sum(jnp.exp(ref) * (ref - logp), axis=-1)
    raise ValueError(f"full_vocab_kl: direction must be 'reverse' or 'forward', got {direction!r}")


class AdaptiveKLState(NamedTuple):
    """State of the adaptive KL controller: the current coefficient β."""

    kl_coef: Array


class KLController(NamedTuple):
    """A pair of pure functions, like an optax GradientTransformation.

    init() -> AdaptiveKLState
    update(state, current_kl, n_steps) -> AdaptiveKLState
    """

    init: Callable[[], AdaptiveKLState]
    update: Callable[[AdaptiveKLState, Array, Array | int], AdaptiveKLState]


@KL_ESTIMATORS.register("adaptive_kl_controller")
def adaptive_kl_controller(
    *,
    init_kl_coef: float = 0.001,
    target: float = 0.1,
    horizon: float = 10000.0,
    max_error: float = 0.2,
) -> KLController:
    """Proportional controller that moves β toward a target KL.

      β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n_steps/horizon)

    Args:
      init_kl_coef: initial β (verl 0.001, OpenRLHF 0.01).
      target: target KL per sequence.
      horizon: steps over which the error is corrected.
      max_error: the clip on the proportional error (0.2).

    Returns:
      KLController(init, update): `update(state, current_kl, n_steps)` is pure
      and jit-able; `n_steps` is the number of samples (or steps) since the last
      update.

    Source: "Fine-Tuning Language Models from Human Preferences" (Ziegler et al.);
    verl `AdaptiveKLController`, OpenRLHF.
    """
    if target <= 0 or horizon <= 0:
        raise ValueError("adaptive_kl_controller: target and horizon must be > 0")

    def init() -> AdaptiveKLState:
        return AdaptiveKLState(jnp.asarray(init_kl_coef, jnp.float32))

    def update(state: AdaptiveKLState, current_kl, n_steps) -> AdaptiveKLState:
        error = jnp.clip(f32(current_kl) / target - 1.0, -max_error, max_error)
        return AdaptiveKLState(state.kl_coef * (1.0 + error * f32(n_steps) / horizon))

    return KLController(init, update)
