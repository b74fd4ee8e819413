"""Policy-gradient losses, entropy bonus, value loss and rollout-correction weights.

Every policy loss takes [B, T] arrays

  logprobs       log π_θ(y_t | x, y_<t) of the sampled tokens (gradient flows)
  old_logprobs   the same tokens under the behaviour policy (stop-gradient)
  advantages     A > 0 makes the token more likely; broadcast a [B] advantage
                 with `advantages.broadcast_to_tokens` first
  mask           1.0 on completion tokens

and keyword-only hyperparameters, and returns `(loss, metrics)` where metrics
are float32 scalars. Each loss is written as its per-token term ℓ [B, T] with
its own hyperparameters; `_policy_loss` registers it and appends the keywords
that every policy loss shares (written once, in `SHARED_KEYWORDS`, and part of
each loss's inspectable signature):

  aggregation          a `LOSS_AGGREGATIONS` key (see `aggregation.py`)
  num_tokens, num_seqs global normalizers for micro-batching (sum the
                       micro-batch losses); loss_scale_factor: Dr.GRPO's C
  rollout_logprobs     [B, T] sampler log-probs; with tis_mode != "off" the
                       per-token loss is multiplied by the truncated importance
                       weight sg[w] (`tis_rollout_correction`, tis_cap,
                       tis_cap_low); the rollout–trainer gap is logged whenever
                       they are given
  ref_logprobs         [B, T] reference log-probs; adds β·agg(k(logp, ref)) with
                       β = kl_coef (a float or a traced scalar) and k the
                       kl_estimator (`kl_in_loss`): the one KL-in-loss route
  entropy              [B, T] per-token entropy of π_θ; adds −c_H·agg(H) with
                       c_H = entropy_coef (`entropy_bonus`)
  impl                 "auto" | "reference" | "chunked" | "pallas": a loss with
                       a fused kernel (`ppo_clip`) runs it where it applies
                       (`policy_loss_impl`); "reference" composes the
                       registered objectives

ρ = exp(clip(logp − old_logp, −20, 20)) throughout. On the first on-policy
minibatch ρ ≡ 1 and every clip fraction is 0.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from rewardjax import ops
from rewardjax.objectives.aggregation import (
    aggregate,
    f32,
    masked_mean,
    row_masked_mean,
    row_weights,
)
from rewardjax.objectives.kl import kl_in_loss
from rewardjax.registry import POLICY_LOSSES
from rewardjax.types import Array

__all__ = [
    "SHARED_KEYWORDS",
    "cispo_loss",
    "entropy_bonus",
    "gmpo_geo_mean_loss",
    "gspo_loss",
    "policy_loss_impl",
    "ppo_clip_loss",
    "reinforce_pg_loss",
    "tis_rollout_correction",
    "token_entropy",
    "value_loss_clipped",
]

_LOG_RATIO_CLAMP = 20.0
_TIS_MODES = ("off", "token", "sequence", "token_mask", "sequence_mask")
# KL estimators the fused kernel computes (k3 with verl's clamps).
_FUSED_KL = ("kl_k3", "k3")

sg = jax.lax.stop_gradient


def _check_pg(logprobs, old_logprobs, advantages, mask, *extra):
    arrays = [logprobs, old_logprobs, advantages, mask, *[e for e in extra if e is not None]]
    chex.assert_rank(arrays, 2)
    chex.assert_equal_shape(arrays)
    return f32(logprobs), sg(f32(old_logprobs)), sg(f32(advantages)), f32(mask)


def _log_ratio(logprobs: Array, old_logprobs: Array) -> Array:
    return jnp.clip(logprobs - old_logprobs, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)


def _frac(cond: Array, mask: Array) -> Array:
    return sg(masked_mean(cond.astype(jnp.float32), mask))


@POLICY_LOSSES.register("tis_rollout_correction")
def tis_rollout_correction(
    old_logprobs: Array,  # [B, T] trainer (behaviour) log-probs
    rollout_logprobs: Array,  # [B, T] log-probs reported by the sampler
    mask: Array,  # [B, T]
    *,
    mode: str = "token",
    cap: float = 2.0,
    cap_low: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Truncated importance weights for the rollout/trainer log-prob mismatch.

      token:         w_t = min(exp(old_logp_t − rollout_logp_t), C)
      sequence:      w_i = min(exp(Σ_t (old_logp − rollout_logp)), C)
      token_mask:    w_t = 1[C_min ≤ exp(old_logp_t − rollout_logp_t) ≤ C]
      sequence_mask: w_i = 1[C_min ≤ exp(Σ_t (old_logp − rollout_logp)) ≤ C]

    The policy loss uses ℓ ← sg[w]·ℓ. Bypass mode (old_logp := rollout_logp) is
    the trainer passing the sampler log-probs as `old_logprobs`.

    Args:
      old_logprobs: [B, T] log-probs of the sampled tokens recomputed by the trainer.
      rollout_logprobs: [B, T] log-probs reported by the sampler.
      mask: [B, T] 1.0 on completion tokens.
      mode: "token", "sequence", "token_mask" or "sequence_mask".
      cap: C (= C_max for the mask modes). verl 2.0; TRL `sequence_mask` 3.0;
        OpenRLHF [0.5, 5].
      cap_low: C_min for the mask modes; no lower bound when None.

    Returns:
      (weights [B, T] float32, stop-gradient, 0 on masked tokens;
       metrics {tis_weight_mean, tis_clip_frac, rollout_logp_gap}).

    Source: verl rollout correction (`rollout_is`), TRL `vllm_importance_sampling`,
    OpenRLHF tis / icepop / seq-mask-tis, tunix `sampler_is`.
    """
    chex.assert_rank([old_logprobs, rollout_logprobs, mask], 2)
    chex.assert_equal_shape([old_logprobs, rollout_logprobs, mask])
    if mode not in _TIS_MODES[1:]:
        raise ValueError(f"tis_rollout_correction: unknown mode {mode!r}; known: {_TIS_MODES[1:]}")
    mask = f32(mask)
    old, rollout = sg(f32(old_logprobs)), sg(f32(rollout_logprobs))
    log_w = jnp.where(mask > 0, old - rollout, 0.0)
    if mode.startswith("sequence"):
        log_w = jnp.broadcast_to(jnp.sum(log_w, axis=-1, keepdims=True), log_w.shape)
    ratio = jnp.exp(jnp.clip(log_w, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
    if mode.endswith("mask"):
        low = 0.0 if cap_low is None else cap_low
        keep = (ratio >= low) & (ratio <= cap)
        weights = keep.astype(jnp.float32)
        clipped = ~keep
    else:
        weights = jnp.minimum(ratio, cap)
        clipped = ratio > cap
    weights = jnp.where(mask > 0, weights, 0.0)
    metrics = {
        "tis_weight_mean": masked_mean(weights, mask),
        "tis_clip_frac": masked_mean(clipped.astype(jnp.float32), mask),
        "rollout_logp_gap": masked_mean(jnp.abs(old - rollout), mask),
    }
    return sg(weights), metrics


def _shared(name: str, default, annotation: str) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


# The keyword-only parameters every policy loss shares (see the module docstring).
SHARED_KEYWORDS: tuple[inspect.Parameter, ...] = (
    _shared("aggregation", "token_mean", "str"),
    _shared("num_tokens", None, "Array | float | None"),
    _shared("num_seqs", None, "Array | float | None"),
    _shared("loss_scale_factor", None, "float | None"),
    _shared("rollout_logprobs", None, "Array | None"),
    _shared("tis_mode", "off", "str"),
    _shared("tis_cap", 2.0, "float"),
    _shared("tis_cap_low", None, "float | None"),
    _shared("ref_logprobs", None, "Array | None"),
    _shared("kl_coef", 0.0, "Array | float"),
    _shared("kl_estimator", "kl_k3", "str"),
    _shared("entropy", None, "Array | None"),
    _shared("entropy_coef", 0.0, "float"),
    _shared("impl", "auto", "str"),
)


def policy_loss_impl(
    loss_fn: Callable,
    impl: str = "auto",
    *,
    tis_mode: str = "off",
    kl_estimator: str = "kl_k3",
    with_kl: bool = False,
) -> str:
    """The implementation a registered policy loss runs: "reference", "chunked" or "pallas".

    It depends on hyperparameters only, never on array values, so a trainer
    decides once, at start, and binds the answer as `impl`. A loss with a fused
    kernel (`loss_fn.fused`, today `ppo_clip`) runs it under "auto" unless the
    kernel lacks something the run asks for (rollout correction, a KL estimator
    other than k3); "auto" then falls back to the reference composition, and an
    explicit "chunked" / "pallas" is an error.

    Args:
      loss_fn: a registered policy loss (or a partial of one).
      impl: "auto" | "reference" | "chunked" | "pallas".
      tis_mode: the loss's rollout-correction mode.
      kl_estimator: the KL estimator, when `with_kl`.
      with_kl: whether `ref_logprobs` (KL in the loss) will be passed.

    Returns:
      "reference", "chunked" (fused XLA pass) or "pallas".
    """
    fn = getattr(loss_fn, "func", loss_fn)
    name = getattr(fn, "__name__", repr(fn))
    if impl not in ops.IMPLS:
        raise ValueError(f"{name}: impl must be one of {ops.IMPLS}, got {impl!r}")
    if impl == "reference":
        return "reference"
    lacks = []
    if not getattr(fn, "fused", False):
        lacks.append("a fused kernel")
    if tis_mode != "off":
        lacks.append(f"tis_mode={tis_mode!r} (the fused kernel has no rollout correction)")
    if with_kl and kl_estimator not in _FUSED_KL:
        lacks.append(f"kl_estimator={kl_estimator!r} (the fused kernel computes k3)")
    if lacks:
        if impl == "auto":
            return "reference"
        raise ValueError(f"{name}: impl={impl!r} is not available here: {'; '.join(lacks)}")
    return ops.resolve_impl(impl).impl


def _finish(
    token_loss: Array,
    logprobs: Array,
    old_logprobs: Array,
    mask: Array,
    metrics: dict[str, Array],
    *,
    aggregation: str,
    num_tokens,
    num_seqs,
    loss_scale_factor,
    rollout_logprobs,
    tis_mode: str,
    tis_cap: float,
    tis_cap_low: float | None,
    ref_logprobs,
    kl_coef,
    kl_estimator: str,
    entropy,
    entropy_coef: float,
) -> tuple[Array, dict[str, Array]]:
    """Reference composition: rollout correction, aggregation, KL, entropy bonus, metrics."""
    if tis_mode not in _TIS_MODES:
        raise ValueError(f"unknown tis_mode {tis_mode!r}; known: {_TIS_MODES}")
    if rollout_logprobs is not None:
        weights, tis_metrics = tis_rollout_correction(
            old_logprobs,
            rollout_logprobs,
            mask,
            mode="token" if tis_mode == "off" else tis_mode,
            cap=tis_cap,
            cap_low=tis_cap_low,
        )
        if tis_mode != "off":
            token_loss = token_loss * weights
            metrics.update(tis_metrics)
        else:
            metrics["rollout_logp_gap"] = tis_metrics["rollout_logp_gap"]
    elif tis_mode != "off":
        raise ValueError(f"tis_mode={tis_mode!r} needs rollout_logprobs [B, T]")
    counts = dict(num_tokens=num_tokens, num_seqs=num_seqs, loss_scale_factor=loss_scale_factor)
    loss = aggregate(token_loss, mask, aggregation=aggregation, **counts)
    metrics["pg_loss"] = sg(loss)
    log_ratio = _log_ratio(logprobs, old_logprobs)
    metrics["ppo_kl"] = sg(masked_mean(-log_ratio, mask))
    metrics["approx_kl"] = sg(masked_mean(jnp.expm1(log_ratio) - log_ratio, mask))
    if ref_logprobs is not None:
        kl_loss, kl_metrics = kl_in_loss(
            logprobs,
            ref_logprobs,
            mask,
            kl_coef=kl_coef,
            estimator=kl_estimator,
            aggregation=aggregation,
            **counts,
        )
        loss = loss + kl_loss
        metrics.update(kl_metrics)
    if entropy is not None:
        bonus, entropy_metrics = entropy_bonus(
            entropy, mask, coef=entropy_coef, aggregation=aggregation, **counts
        )
        loss = loss + bonus
        metrics.update(entropy_metrics)
    return loss, metrics


def _fused_finish(
    hyper: dict,
    logprobs: Array,
    old_logprobs: Array,
    advantages: Array,
    mask: Array,
    *,
    impl: str,
    aggregation: str,
    num_tokens,
    num_seqs,
    loss_scale_factor,
    rollout_logprobs,
    ref_logprobs,
    kl_coef,
    entropy,
    entropy_coef: float,
) -> tuple[Array, dict[str, Array]]:
    """The same loss and metrics as `_finish` in one fused kernel pass (`ops.policy_loss`)."""
    weights = row_weights(
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    loss, metrics = ops.policy_loss(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        row_weights=weights,
        ref_logprobs=ref_logprobs,
        entropy=entropy,
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
        impl=impl,
        **hyper,
    )
    metrics = dict(metrics)
    # The two metrics the kernel does not reduce; cheap elementwise passes.
    ratio = jnp.exp(_log_ratio(logprobs, old_logprobs))
    metrics["ratio_max"] = sg(jnp.max(jnp.where(mask > 0, ratio, 0.0)))
    if rollout_logprobs is not None:
        gap = jnp.abs(old_logprobs - sg(f32(rollout_logprobs)))
        metrics["rollout_logp_gap"] = masked_mean(gap, mask)
    return loss, metrics


def _policy_loss(
    name: str,
    *,
    aggregation: str = "token_mean",
    fixed_aggregation: bool = False,
    fused: bool = False,
) -> Callable[[Callable], Callable]:
    """Registers a per-token policy term as the policy loss `name`.

    The decorated function takes the checked float32 arrays (old_logprobs and
    advantages stop-gradient) and its own keyword-only hyperparameters, and
    returns (ℓ [B, T], metrics). The registered loss has its signature plus
    `SHARED_KEYWORDS` and returns (loss, metrics).

    Args:
      name: the `POLICY_LOSSES` key.
      aggregation: the default aggregation mode.
      fixed_aggregation: the loss is defined with `aggregation` only (its ratio
        is per sequence); another mode is an error.
      fused: the loss's own hyperparameters are those of the fused kernel
        (`ops.policy_loss`: clip_low, clip_high, dual_clip), which computes it.
    """

    def decorator(token_loss: Callable) -> Callable:
        own = inspect.signature(token_loss)
        own_keywords = [
            k for k, p in own.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        shared = [
            p.replace(default=aggregation) if p.name == "aggregation" else p
            for p in SHARED_KEYWORDS
        ]
        signature = own.replace(
            parameters=[*own.parameters.values(), *shared],
            return_annotation="tuple[Array, dict[str, Array]]",
        )

        def loss(logprobs, old_logprobs, advantages, mask, **kwargs):
            bound = signature.bind(logprobs, old_logprobs, advantages, mask, **kwargs)
            bound.apply_defaults()
            args = bound.arguments
            hyper = {k: args[k] for k in own_keywords}
            opts = {p.name: args[p.name] for p in SHARED_KEYWORDS}
            if fixed_aggregation and opts["aggregation"] != aggregation:
                raise ValueError(
                    f"{name} is defined with aggregation={aggregation!r} (its ratio is per "
                    f"sequence); got aggregation={opts['aggregation']!r}"
                )
            ref, ent = opts["ref_logprobs"], opts["entropy"]
            lp, old, adv, m = _check_pg(
                logprobs, old_logprobs, advantages, mask, opts["rollout_logprobs"], ref, ent
            )
            kl_coef = opts["kl_coef"]
            if ref is None and not isinstance(kl_coef, jax.Array) and kl_coef != 0.0:
                raise ValueError("kl_coef != 0 needs ref_logprobs [B, T]")
            if ent is None and opts["entropy_coef"] != 0.0:
                raise ValueError("entropy_coef != 0 needs entropy [B, T]")
            impl = policy_loss_impl(
                loss,
                opts.pop("impl"),
                tis_mode=opts["tis_mode"],
                kl_estimator=opts["kl_estimator"],
                with_kl=ref is not None,
            )
            if impl != "reference":
                for key in ("tis_mode", "tis_cap", "tis_cap_low", "kl_estimator"):
                    opts.pop(key)
                return _fused_finish(hyper, lp, old, adv, m, impl=impl, **opts)
            per_token, metrics = token_loss(lp, old, adv, m, **hyper)
            return _finish(per_token, lp, old, m, metrics, **opts)

        functools.update_wrapper(loss, token_loss)
        del loss.__wrapped__  # the signature is `signature`, not the per-token term's
        loss.__signature__ = signature
        loss.fused = fused
        return POLICY_LOSSES.register(name)(loss)

    return decorator


def _ppo_clip_token_loss(ratio, advantages, mask, clip_low, clip_high, dual_clip):
    """Per-token clipped surrogate and its clip fractions."""
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = jnp.maximum(unclipped, clipped)
    low = (advantages < 0) & (ratio < 1.0 - clip_low)
    high = (advantages > 0) & (ratio > 1.0 + clip_high)
    metrics = {
        "clip_frac_low": _frac(low, mask),
        "clip_frac_high": _frac(high, mask),
    }
    any_clip = low | high
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        dual = (advantages < 0) & (ratio > dual_clip)
        loss = jnp.where(advantages < 0, jnp.minimum(loss, -advantages * dual_clip), loss)
        metrics["clip_frac_dual"] = _frac(dual, mask)
        any_clip = any_clip | dual
    else:
        metrics["clip_frac_dual"] = jnp.zeros((), jnp.float32)
    metrics["clip_frac"] = _frac(any_clip, mask)
    metrics["ratio_mean"] = sg(masked_mean(ratio, mask))
    metrics["ratio_max"] = sg(jnp.max(jnp.where(mask > 0, ratio, 0.0)))
    return loss, metrics


@_policy_loss("ppo_clip", fused=True)
def ppo_clip_loss(
    logprobs: Array,  # [B, T] log π_θ(y_t | x, y_<t)
    old_logprobs: Array,  # [B, T] same tokens under the behaviour policy
    advantages: Array,  # [B, T]
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Clipped surrogate with asymmetric clip range and optional dual clip.

      ℓ_t = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high));  where A < 0: ℓ_t ← min(ℓ_t, −c·A)

    With impl="auto" the loss, its KL and entropy terms and their gradient run
    as one fused kernel pass (`rewardjax.ops.policy_loss`) unless the run uses
    rollout correction or a KL estimator other than k3.

    Args:
      logprobs: [B, T] current log-probs of the sampled tokens.
      old_logprobs: [B, T] behaviour-policy log-probs (stop-gradient).
      advantages: [B, T] advantages (stop-gradient).
      mask: [B, T] 1.0 on completion tokens.
      clip_low: ε_low (0.2: verl, TRL, OpenRLHF).
      clip_high: ε_high (0.2; DAPO clip-higher 0.28).
      dual_clip: c > 1 of dual-clip PPO (verl 3.0); off when None (OpenRLHF, TRL).
      Shared keywords (aggregation, ..., impl): see the module docstring.

    Returns:
      (loss, metrics) with clip_frac, clip_frac_low, clip_frac_high,
      clip_frac_dual, ratio_mean, ratio_max, ppo_kl, approx_kl, pg_loss and, when
      given the inputs, kl_ref / kl_loss, entropy and the rollout-correction metrics.

    Source: "Proximal Policy Optimization Algorithms" (Schulman et al., 2017);
    asymmetric clip: "Evolving Language Models without Labels: Majority Drives
    Selection, Novelty Promotes Variation" (EVOL-RL) and DAPO; verl `vanilla`,
    OpenRLHF, TRL, tunix.
    """
    ratio = jnp.exp(_log_ratio(logprobs, old_logprobs))
    return _ppo_clip_token_loss(ratio, advantages, mask, clip_low, clip_high, dual_clip)


@_policy_loss("gspo", aggregation="seq_mean_token_mean", fixed_aggregation=True)
def gspo_loss(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B, T] (a per-sequence advantage broadcast over T)
    mask: Array,  # [B, T]
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[Array, dict[str, Array]]:
    """Sequence-level importance ratio (geometric mean of token ratios), PPO-clipped.

      s_i = exp(min(mean_t(logp − old_logp), 10));  ρ_{i,t} = sg[s_i]·exp(logp − sg[logp])
      ℓ_t = max(−A·ρ_{i,t}, −A·clip(ρ_{i,t}, 1−ε_low, 1+ε_high))

    The aggregation is fixed to `seq_mean_token_mean`.

    Args:
      logprobs: [B, T] current log-probs of the sampled tokens.
      old_logprobs: [B, T] behaviour-policy log-probs.
      advantages: [B, T] advantages.
      mask: [B, T] 1.0 on completion tokens.
      clip_low, clip_high: ε (verl reuses 0.2; the GSPO paper uses far smaller
        ranges).
      Shared keywords: see the module docstring; aggregation must be
        "seq_mean_token_mean".

    Returns:
      (loss, metrics) as `ppo_clip` (ratio metrics are over the sequence ratio).

    Source: "Group Sequence Policy Optimization" (GSPO); verl/OpenRLHF `gspo`,
    TRL `importance_sampling_level=sequence`, tunix `gspo-token`.
    """
    seq_log = row_masked_mean(_log_ratio(logprobs, old_logprobs), mask)
    seq_log = jnp.clip(seq_log, -_LOG_RATIO_CLAMP, 10.0)
    ratio = jnp.exp(sg(seq_log)[:, None] + logprobs - sg(logprobs))
    return _ppo_clip_token_loss(ratio, advantages, mask, clip_low, clip_high, None)


@_policy_loss("cispo")
def cispo_loss(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    weight_clip: str = "two_sided",
) -> tuple[Array, dict[str, Array]]:
    """Clipped importance-sampling-weight policy optimisation: clip the weight, keep every gradient.

      ℓ_t = −sg[w_t]·A·logp_t;  two_sided: w = clip(ρ, 1−ε_low, 1+ε_high);  upper: w = min(ρ, ε_high)

    Clipped tokens keep the gradient −w·A·∇logp (unlike PPO, where it is zero).

    Args:
      logprobs: [B, T] current log-probs of the sampled tokens.
      old_logprobs: [B, T] behaviour-policy log-probs.
      advantages: [B, T] advantages.
      mask: [B, T] 1.0 on completion tokens.
      clip_low, clip_high: ε_low, ε_high. With weight_clip="upper" clip_high is
        the absolute cap (TRL recommends 5, ScaleRL).
      weight_clip: "two_sided" (verl) or "upper" (TRL).
      Shared keywords: see the module docstring (aggregation default `token_mean`).

    Returns:
      (loss, metrics) with clip_frac (tokens whose weight was clipped), ratio_mean,
      ppo_kl, approx_kl, pg_loss.

    Source: "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
    Attention" (CISPO); verl `cispo`, TRL `cispo`.
    """
    ratio = jnp.exp(_log_ratio(logprobs, old_logprobs))
    if weight_clip == "two_sided":
        w = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    elif weight_clip == "upper":
        w = jnp.minimum(ratio, clip_high)
    else:
        raise ValueError(f"cispo: weight_clip must be 'two_sided' or 'upper', got {weight_clip!r}")
    metrics = {
        "clip_frac": _frac(w != ratio, mask),
        "ratio_mean": sg(masked_mean(ratio, mask)),
    }
    return -sg(w) * advantages * logprobs, metrics


@_policy_loss("gmpo_geo_mean", aggregation="seq_mean_token_mean", fixed_aggregation=True)
def gmpo_geo_mean_loss(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[Array, dict[str, Array]]:
    """Geometric-mean policy optimisation: a sequence ratio from log-space-clipped token ratios.

      Δ̃_t = sgn(A_t)·min(sgn(A_t)·Δ_t, sgn(A_t)·clip(Δ_t, −ε_low, ε_high)),  Δ = logp − old_logp
      ρ_i = exp(mean_t Δ̃_t);  L = mean_i(−Ā_i·ρ_i),  Ā_i = mean_t A_t

    The aggregation is fixed to `seq_mean_token_mean` (the per-token loss is the
    row constant −Ā_i·ρ_i, so this is the mean over sequences).

    Args:
      logprobs: [B, T] current log-probs of the sampled tokens.
      old_logprobs: [B, T] behaviour-policy log-probs.
      advantages: [B, T] advantages.
      mask: [B, T] 1.0 on completion tokens.
      clip_low, clip_high: log-space bounds (verl reuses 0.2).
      Shared keywords: see the module docstring; aggregation must be
        "seq_mean_token_mean".

    Returns:
      (loss, metrics) with clip_frac (tokens clipped in log space), ratio_mean
      (over sequences), ppo_kl, approx_kl, pg_loss.

    Source: "Geometric-Mean Policy Optimization" (GMPO); verl `geo_mean`, TRL
    experimental `gmpo`.
    """
    delta = _log_ratio(logprobs, old_logprobs)
    sgn = jnp.sign(advantages)
    delta_clipped = jnp.clip(delta, -clip_low, clip_high)
    delta_tilde = sgn * jnp.minimum(sgn * delta, sgn * delta_clipped)
    seq_ratio = jnp.exp(jnp.clip(row_masked_mean(delta_tilde, mask), -20.0, 20.0))
    seq_adv = row_masked_mean(advantages, mask)
    token_loss = jnp.broadcast_to((-seq_adv * seq_ratio)[:, None], mask.shape)
    rows = (jnp.sum(mask, axis=-1) > 0).astype(jnp.float32)
    metrics = {
        "clip_frac": _frac((sgn != 0) & (delta_tilde != delta), mask),
        "ratio_mean": sg(jnp.sum(seq_ratio * rows) / jnp.maximum(jnp.sum(rows), 1.0)),
    }
    return token_loss, metrics


@_policy_loss("reinforce_pg")
def reinforce_pg_loss(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T] used only for metrics and rollout correction
    advantages: Array,  # [B, T]
    mask: Array,  # [B, T]
) -> tuple[Array, dict[str, Array]]:
    """Plain policy gradient (REINFORCE / GPG), no ratio and no clipping.

      ℓ_t = −A_t·logp_t   (× sg[w_t] with rollout correction)

    Its gradient equals the `ppo_clip` gradient at ρ = 1.

    Args:
      logprobs: [B, T] current log-probs of the sampled tokens.
      old_logprobs: [B, T] behaviour-policy log-probs (metrics only).
      advantages: [B, T] advantages.
      mask: [B, T] 1.0 on completion tokens.
      Shared keywords: see the module docstring.

    Returns:
      (loss, metrics) with ppo_kl, approx_kl, pg_loss.

    Source: "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning" (Williams, 1992); verl `gpg`, bypass `reinforce`.
    """
    del old_logprobs, mask
    return -advantages * logprobs, {}


def token_entropy(logits: Array) -> Array:  # [B, T, V] -> [B, T]
    """Entropy of the next-token distribution, H = logsumexp(z) − Σ softmax(z)·z.

    Computed in float32 on the given logits; for long vocabularies use the
    chunked op in `rewardjax.ops` and pass its [B, T] result to `entropy_bonus`.
    """
    z = f32(logits)
    return jax.nn.logsumexp(z, axis=-1) - jnp.sum(jax.nn.softmax(z, axis=-1) * z, axis=-1)


@POLICY_LOSSES.register("entropy_bonus")
def entropy_bonus(
    entropy: Array,  # [B, T] per-token entropy H_t of π_θ(· | x, y_<t)
    mask: Array,  # [B, T]
    *,
    coef: float = 0.0,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Entropy bonus, added to the policy loss (it is negative for coef > 0).

      H_t = logsumexp(z_t) − Σ_v softmax(z_t)_v·z_{t,v};  L_H = −c_H·agg(H)

    Args:
      entropy: [B, T] per-token entropy (`token_entropy(logits)` or the chunked
        op); gradient flows through it.
      mask: [B, T] 1.0 on completion tokens.
      coef: c_H (0: verl since 2025-05, TRL, OpenRLHF; PRIME 0.001).
      aggregation, num_tokens, num_seqs, loss_scale_factor: as the policy loss.

    Returns:
      (−c_H·agg(H) scalar float32, metrics {entropy}) where `entropy` is the
      token mean, logged whatever the coefficient.

    Source: verl/TRL/OpenRLHF entropy coefficient; "Advancing Language Model
    Reasoning through Reinforcement Learning and Inference Scaling" (T1);
    EVOL-RL.
    """
    chex.assert_rank([entropy, mask], 2)
    chex.assert_equal_shape([entropy, mask])
    entropy, mask = f32(entropy), f32(mask)
    value = aggregate(
        entropy,
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    return -coef * value, {"entropy": sg(masked_mean(entropy, mask))}


@POLICY_LOSSES.register("value_loss_clipped")
def value_loss_clipped(
    values: Array,  # [B, T] current critic values V
    old_values: Array,  # [B, T] critic values at rollout time
    returns: Array,  # [B, T] value targets R (e.g. from `gae`)
    mask: Array,  # [B, T]
    *,
    clip: float | None = 0.5,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Clipped value-function loss of PPO's critic.

      ½·agg(max((V − R)², (V_old + clip(V − V_old, −ε_v, ε_v) − R)²))

    Args:
      values: [B, T] current critic values (gradient flows).
      old_values: [B, T] critic values at rollout time (stop-gradient).
      returns: [B, T] targets (stop-gradient).
      mask: [B, T] 1.0 on completion tokens.
      clip: ε_v (0.5: verl, OpenRLHF); None for the unclipped ½(V − R)².
      aggregation, num_tokens, num_seqs, loss_scale_factor: as the policy loss.

    Returns:
      (loss, metrics {vf_loss, vf_clip_frac, value_mean, return_mean}).

    Source: "Proximal Policy Optimization Algorithms"; verl, OpenRLHF, tunix.
    """
    chex.assert_rank([values, old_values, returns, mask], 2)
    chex.assert_equal_shape([values, old_values, returns, mask])
    values, mask = f32(values), f32(mask)
    old_values, returns = sg(f32(old_values)), sg(f32(returns))
    unclipped = jnp.square(values - returns)
    if clip is None:
        per_token = unclipped
        clip_frac = jnp.zeros((), jnp.float32)
    else:
        v_clipped = old_values + jnp.clip(values - old_values, -clip, clip)
        clipped = jnp.square(v_clipped - returns)
        per_token = jnp.maximum(unclipped, clipped)
        clip_frac = _frac(clipped > unclipped, mask)
    loss = 0.5 * aggregate(
        per_token,
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    metrics = {
        "vf_loss": sg(loss),
        "vf_clip_frac": clip_frac,
        "value_mean": sg(masked_mean(values, mask)),
        "return_mean": masked_mean(returns, mask),
    }
    return loss, metrics
