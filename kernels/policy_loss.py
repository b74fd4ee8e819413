"""Fused policy-loss math over [B, T]: ratio, clipping, k3 KL, entropy bonus, aggregation.

  ρ = exp(clip(logp − old_logp, −20, 20))
  ℓ = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))          (PPO clip, ε_high > ε_low: clip-higher)
  ℓ ← min(ℓ, −c·A) where A < 0                               (dual clip, c > 1)
  k3 = clip(e^δ − δ − 1, −10, 10),  δ = clip(ref_logp − logp, −20, 20)
  L = agg(ℓ + β·k3) − c_H·agg(H)

agg is one of the four aggregation modes, each a sum over tokens with a per-row
weight w_b times the mask:

  token_mean               w_b = 1 / N_tok                  N_tok = Σ mask (or `num_tokens`)
  seq_mean_token_sum       w_b = 1 / B′                     B′ = #rows with |y_b| > 0 (or `num_seqs`)
  seq_mean_token_mean      w_b = 1 / (B′·|y_b|)             |y_b| = Σ_t mask
  seq_mean_token_sum_norm  w_b = 1 / (B′·C)                 C = `loss_scale_factor` (default T)

Empty normalisers count as 1, so a batch without valid tokens gives 0, never NaN.

Since L is a sum of per-token terms with weights that depend only on the mask,
the fused implementations compute ∂L/∂logp and ∂L/∂H in the same pass as L
(one read of each input, no second pass in the backward) and the backward pass
only scales them by the incoming cotangent. `old_logprobs`, `advantages`,
`ref_logprobs` and `mask` are constants of the loss (their cotangent is zero).

* `reference_policy_loss`: plain jnp, differentiated by autodiff (ground truth).
* `fused_policy_loss`: the one-pass XLA version; the whole computation is
  elementwise plus row sums, which XLA fuses, so it needs no explicit blocking.
* `pallas_policy_loss`: the same pass as a Pallas kernel over (row, token) tiles.

Sources: "Proximal Policy Optimization Algorithms" (Schulman et al., 2017);
dual clip from "Mastering Complex Control in MOBA Games with Deep Reinforcement
Learning" (Ye et al., 2020), as in verl; clip-higher from DAPO; k3 from verl's
`low_var_kl`; aggregation modes as in verl (`token-mean`, `seq-mean-token-sum`,
`seq-mean-token-mean`, `seq-mean-token-sum-norm`, the last from Dr.GRPO,
"Understanding R1-Zero-Like Training: A Critical Perspective").
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from rewardjax.kernels.logprob import triton_params

from rewardjax.types import Array

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "fused_policy_loss",
    "pallas_policy_loss",
    "reference_policy_loss",
    "row_weights",
]

AGGREGATIONS = (
    "token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
)

_LOG_RATIO_CLAMP = 20.0
_K3_CLAMP = 10.0

# Columns of the per-row statistics.
_PG, _KL_W, _ENT_W, _KL, _ENT, _LOW, _HIGH, _DUAL, _RATIO, _PPO_KL, _APPROX_KL, _TOKENS = range(12)
_NUM_STATS = 16


def _safe(x: Array) -> Array:
    return jnp.where(x > 0, x, 1.0)


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; known: {', '.join(AGGREGATIONS)}")


def row_weights(
    mask: Array,  # [B, T]
    *,
    aggregation: str,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Per-row weight w_b [B] such that agg(x) = Σ_b w_b Σ_t mask·x (see the module docstring).

    Args:
      mask: [B, T] 1.0 on completion tokens.
      aggregation: one of `AGGREGATIONS`.
      num_tokens: global Σ mask (micro-batching); the local sum when None.
      num_seqs: global count of non-empty rows; the local count when None.
      loss_scale_factor: C of `seq_mean_token_sum_norm`; T when None.

    Returns:
      [B] float32 weights.
    """
    _check_aggregation(aggregation)
    mask = jnp.where(mask > 0, mask.astype(jnp.float32), 0.0)
    lengths = jnp.sum(mask, axis=1)
    if aggregation == "token_mean":
        n_tok = jnp.sum(lengths) if num_tokens is None else jnp.asarray(num_tokens, jnp.float32)
        return jnp.broadcast_to(1.0 / _safe(n_tok), lengths.shape)
    n_seq = jnp.sum((lengths > 0).astype(jnp.float32)) if num_seqs is None else num_seqs
    n_seq = _safe(jnp.asarray(n_seq, jnp.float32))
    if aggregation == "seq_mean_token_sum":
        return jnp.broadcast_to(1.0 / n_seq, lengths.shape)
    if aggregation == "seq_mean_token_mean":
        return 1.0 / (n_seq * _safe(lengths))
    c = mask.shape[1] if loss_scale_factor is None else loss_scale_factor
    return jnp.broadcast_to(1.0 / (n_seq * jnp.asarray(c, jnp.float32)), lengths.shape)


def aggregate(
    values: Array,  # [B, T] per-token values
    mask: Array,  # [B, T]
    *,
    aggregation: str,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Aggregates per-token values into a scalar by the mode `aggregation` (float32).

    Masked entries are ignored even when they hold inf or NaN.
    """
    chex.assert_rank([values, mask], 2)
    chex.assert_equal_shape([values, mask])
    w = row_weights(
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    valid = mask > 0
    terms = jnp.where(valid, values.astype(jnp.float32) * mask.astype(jnp.float32), 0.0)
    return jnp.sum(w * jnp.sum(terms, axis=1))


# ----------------------------------------------------------------------------- reference


def reference_policy_loss(
    logprobs: Array,  # [B, T] log π_θ of the sampled tokens
    old_logprobs: Array,  # [B, T] under the behaviour policy
    advantages: Array,  # [B, T] or [B]
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    ref_logprobs: Array | None = None,  # [B, T] under the reference policy
    entropy: Array | None = None,  # [B, T] entropy of π_θ at each position
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """PPO-clip (+ dual clip) + β·k3 − c_H·H, aggregated; plain jnp (see module docstring)."""
    lp, old, adv, mask, ref, ent = _prepare(
        logprobs, old_logprobs, advantages, mask, ref_logprobs, entropy
    )
    valid = mask > 0
    # Sanitise padding first so that no inf/NaN there reaches a gradient.
    lp = jnp.where(valid, lp, 0.0)
    old = lax.stop_gradient(jnp.where(valid, old, 0.0))
    adv = lax.stop_gradient(jnp.where(valid, adv, 0.0))
    agg = functools.partial(
        aggregate,
        mask=mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    log_ratio = jnp.clip(lp - old, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio)
    pg1 = -adv * ratio
    pg2 = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = jnp.maximum(pg1, pg2)
    dual = jnp.zeros_like(valid)
    if dual_clip is not None:
        dual = (adv < 0) & (pg > -dual_clip * adv)
        pg = jnp.where(adv < 0, jnp.minimum(pg, -dual_clip * adv), pg)
    per_token = pg
    n_tok = _safe(jnp.sum(jnp.where(valid, mask, 0.0)))

    def token_mean(x):
        return jnp.sum(jnp.where(valid, x * mask, 0.0)) / n_tok

    metrics = {
        "pg_loss": agg(pg),
        "clip_frac_low": token_mean(((pg2 > pg1) & (ratio < 1.0 - clip_low)).astype(jnp.float32)),
        "clip_frac_high": token_mean(((pg2 > pg1) & (ratio > 1.0 + clip_high)).astype(jnp.float32)),
        "clip_frac_dual": token_mean(dual.astype(jnp.float32)),
        "ratio_mean": token_mean(ratio),
        "ppo_kl": token_mean(old - lp),
        "approx_kl": token_mean(ratio - 1.0 - log_ratio),
    }
    metrics["clip_frac"] = (
        metrics["clip_frac_low"] + metrics["clip_frac_high"] + metrics["clip_frac_dual"]
    )
    if ref is not None:
        ref = lax.stop_gradient(jnp.where(valid, ref, 0.0))
        delta = jnp.clip(ref - lp, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        k3 = jnp.clip(jnp.exp(delta) - delta - 1.0, -_K3_CLAMP, _K3_CLAMP)
        per_token = per_token + kl_coef * k3
        metrics["kl_ref"] = token_mean(k3)
    loss = agg(per_token)
    if ent is not None:
        ent = jnp.where(valid, ent, 0.0)
        loss = loss - entropy_coef * agg(ent)
        metrics["entropy"] = token_mean(ent)
    return loss, jax.tree.map(lax.stop_gradient, metrics)


def _prepare(logprobs, old_logprobs, advantages, mask, ref_logprobs, entropy):
    chex.assert_rank([logprobs, old_logprobs, mask], 2)
    chex.assert_equal_shape([logprobs, old_logprobs, mask])
    if advantages.ndim == 1:
        chex.assert_equal(advantages.shape[0], logprobs.shape[0])
        advantages = jnp.broadcast_to(advantages[:, None], logprobs.shape)
    chex.assert_equal_shape([logprobs, advantages])
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    if ref_logprobs is not None:
        chex.assert_equal_shape([logprobs, ref_logprobs])
        ref_logprobs = f32(ref_logprobs)
    if entropy is not None:
        chex.assert_equal_shape([logprobs, entropy])
        entropy = f32(entropy)
    return f32(logprobs), f32(old_logprobs), f32(advantages), f32(mask), ref_logprobs, entropy


# ----------------------------------------------------------------------------- fused math


@dataclasses.dataclass(frozen=True)
class _Hyper:
    clip_low: float
    clip_high: float
    dual_clip: float | None
    kl_coef: float
    entropy_coef: float
    has_ref: bool
    has_entropy: bool


def _token_terms(hp: _Hyper, lp, old, adv, mask, ref, ent, w):
    """One tile: (∂L/∂logp, ∂L/∂H, per-row statistics [R, 16]).

    lp, old, adv, mask, ref, ent: [R, C] tiles (ref/ent None when absent);
    w: [R, 1] aggregation weight of each row.
    """
    valid = mask > 0
    m = jnp.where(valid, mask, 0.0)
    lp = jnp.where(valid, lp, 0.0)
    old = jnp.where(valid, old, 0.0)
    adv = jnp.where(valid, adv, 0.0)

    log_ratio = lp - old
    log_ratio_c = jnp.clip(log_ratio, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio_c)
    d_ratio = jnp.where(jnp.abs(log_ratio) < _LOG_RATIO_CLAMP, ratio, 0.0)
    pg1 = -adv * ratio
    pg2 = -adv * jnp.clip(ratio, 1.0 - hp.clip_low, 1.0 + hp.clip_high)
    # When the clipped term wins, ρ is outside the clip range and its slope is 0.
    clipped = pg2 > pg1
    pg = jnp.where(clipped, pg2, pg1)
    d_pg = jnp.where(clipped, 0.0, -adv * d_ratio)
    low = clipped & (ratio < 1.0 - hp.clip_low)
    high = clipped & (ratio > 1.0 + hp.clip_high)
    dual = jnp.zeros_like(valid)
    if hp.dual_clip is not None:
        dual = (adv < 0) & (pg > -hp.dual_clip * adv)
        pg = jnp.where(dual, -hp.dual_clip * adv, pg)
        d_pg = jnp.where(dual, 0.0, d_pg)

    wm = w * m
    d_lp = d_pg
    zero = jnp.zeros_like(lp)
    k3 = zero
    if hp.has_ref:
        ref = jnp.where(valid, ref, 0.0)
        delta = ref - lp
        delta_c = jnp.clip(delta, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        k3_raw = jnp.exp(delta_c) - delta_c - 1.0
        k3 = jnp.clip(k3_raw, -_K3_CLAMP, _K3_CLAMP)
        # d k3 / d logp = −(e^δ − 1), zero where either clamp is active.
        live = (jnp.abs(delta) < _LOG_RATIO_CLAMP) & (jnp.abs(k3_raw) < _K3_CLAMP)
        d_lp = d_lp + hp.kl_coef * jnp.where(live, 1.0 - jnp.exp(delta_c), 0.0)
    d_lp = wm * d_lp
    if hp.has_entropy:
        ent = jnp.where(valid, ent, 0.0)
        d_ent = -hp.entropy_coef * wm
    else:
        ent, d_ent = zero, None

    def rsum(x):
        return jnp.sum(x, axis=1, keepdims=True)

    columns = {
        _PG: rsum(wm * pg),
        _KL_W: rsum(wm * k3),
        _ENT_W: rsum(wm * ent),
        _KL: rsum(m * k3),
        _ENT: rsum(m * ent),
        _LOW: rsum(jnp.where(low, m, 0.0)),
        _HIGH: rsum(jnp.where(high, m, 0.0)),
        _DUAL: rsum(jnp.where(dual, m, 0.0)),
        _RATIO: rsum(m * ratio),
        _PPO_KL: rsum(m * (old - lp)),
        _APPROX_KL: rsum(m * (ratio - 1.0 - log_ratio_c)),
        _TOKENS: rsum(m),
    }
    # Place each [R, 1] column into an [R, 16] tile by masks (no concatenation in kernels).
    slot = lax.broadcasted_iota(jnp.int32, (1, _NUM_STATS), 1)
    stats = sum(jnp.where(slot == k, col, 0.0) for k, col in columns.items())
    return d_lp, d_ent, stats


def _loss_from_stats(hp: _Hyper, totals: Array) -> Array:
    return totals[_PG] + hp.kl_coef * totals[_KL_W] - hp.entropy_coef * totals[_ENT_W]


def _metrics_from_stats(hp: _Hyper, totals: Array) -> dict[str, Array]:
    n = _safe(totals[_TOKENS])
    metrics = {
        "pg_loss": totals[_PG],
        "clip_frac": (totals[_LOW] + totals[_HIGH] + totals[_DUAL]) / n,
        "clip_frac_low": totals[_LOW] / n,
        "clip_frac_high": totals[_HIGH] / n,
        "clip_frac_dual": totals[_DUAL] / n,
        "ratio_mean": totals[_RATIO] / n,
        "ppo_kl": totals[_PPO_KL] / n,
        "approx_kl": totals[_APPROX_KL] / n,
    }
    if hp.has_ref:
        metrics["kl_ref"] = totals[_KL] / n
    if hp.has_entropy:
        metrics["entropy"] = totals[_ENT] / n
    return metrics


@dataclasses.dataclass(frozen=True)
class _Plan:
    impl: str  # "fused" | "pallas"
    block_rows: int = 8
    block_tokens: int = 512
    target: str = "gpu"
    interpret: bool = False


def _terms(plan: _Plan, hp: _Hyper, lp, ent, old, adv, mask, ref, w):
    if plan.impl == "fused":
        return _token_terms(hp, lp, old, adv, mask, ref, ent, w[:, None])
    return _pallas_terms(plan, hp, lp, ent, old, adv, mask, ref, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused(plan, hp, lp, ent, old, adv, mask, ref, w):
    _, _, stats = _terms(plan, hp, lp, ent, old, adv, mask, ref, w)
    totals = jnp.sum(stats, axis=0)
    return _loss_from_stats(hp, totals), totals


def _fused_fwd(plan, hp, lp, ent, old, adv, mask, ref, w):
    d_lp, d_ent, stats = _terms(plan, hp, lp, ent, old, adv, mask, ref, w)
    totals = jnp.sum(stats, axis=0)
    return (_loss_from_stats(hp, totals), totals), (d_lp, d_ent)


def _fused_bwd(plan, hp, residuals, g):
    d_lp, d_ent = residuals
    g_loss = g[0]  # the statistics are metrics: the caller stops their gradient
    d_ent = None if d_ent is None else g_loss * d_ent
    return g_loss * d_lp, d_ent, None, None, None, None, None


_fused.defvjp(_fused_fwd, _fused_bwd)


def _run(
    plan: _Plan,
    logprobs,
    old_logprobs,
    advantages,
    mask,
    ref_logprobs,
    entropy,
    *,
    clip_low,
    clip_high,
    dual_clip,
    kl_coef,
    entropy_coef,
    aggregation,
    num_tokens,
    num_seqs,
    loss_scale_factor,
):
    lp, old, adv, mask, ref, ent = _prepare(
        logprobs, old_logprobs, advantages, mask, ref_logprobs, entropy
    )
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    hp = _Hyper(
        float(clip_low),
        float(clip_high),
        None if dual_clip is None else float(dual_clip),
        float(kl_coef),
        float(entropy_coef),
        ref is not None,
        ent is not None,
    )
    w = row_weights(
        mask,
        aggregation=aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    loss, totals = _fused(plan, hp, lp, ent, old, adv, mask, ref, w)
    metrics = _metrics_from_stats(hp, lax.stop_gradient(totals))
    return loss, metrics


def fused_policy_loss(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B, T] or [B]
    mask: Array,  # [B, T]
    *,
    ref_logprobs: Array | None = None,  # [B, T]
    entropy: Array | None = None,  # [B, T]
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Policy loss and its gradient in one fused XLA pass (see the module docstring).

    Args:
      logprobs: [B, T] log π_θ(y_t | x, y_<t); differentiable.
      old_logprobs: [B, T] the same tokens under the behaviour policy (constant).
      advantages: [B, T], or [B] broadcast over tokens (constant).
      mask: [B, T] 1.0 on completion tokens; masked entries may hold anything.
      ref_logprobs: [B, T] under the reference policy, or None (no KL term, no `kl_ref`).
      entropy: [B, T] entropy of π_θ at each position, or None; differentiable.
      clip_low, clip_high: ε_low, ε_high of the ratio clip.
      dual_clip: c > 1 of the dual clip (applied where A < 0), or None.
      kl_coef: β of the k3 term (needs `ref_logprobs`).
      entropy_coef: c_H of the entropy bonus (needs `entropy`).
      aggregation: "token_mean" | "seq_mean_token_sum" | "seq_mean_token_mean" |
        "seq_mean_token_sum_norm".
      num_tokens, num_seqs: global normalisers when a batch is split into
        micro-batches (then sum the micro-batch losses); local counts when None.
      loss_scale_factor: C of "seq_mean_token_sum_norm"; T when None.

    Returns:
      (loss, metrics): the scalar float32 loss and scalar float32 metrics
      pg_loss (agg(ℓ)), clip_frac (any clip), clip_frac_low, clip_frac_high,
      clip_frac_dual, ratio_mean, ppo_kl (token mean of old_logp − logp), approx_kl
      (token mean of ρ − 1 − log ρ), and kl_ref (mean k3) / entropy when those
      inputs are given; every mean is over the valid tokens of this batch. Metrics
      carry no gradient.
    """
    return _run(
        _Plan("fused"),
        logprobs,
        old_logprobs,
        advantages,
        mask,
        ref_logprobs,
        entropy,
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


# ----------------------------------------------------------------------------- Pallas


def _policy_kernel(*refs, hp: _Hyper):
    it = iter(refs)
    lp, old, adv, mask = (next(it)[...] for _ in range(4))
    ref = next(it)[...] if hp.has_ref else None
    ent = next(it)[...] if hp.has_entropy else None
    w = next(it)[...]
    d_lp_ref = next(it)
    d_ent_ref = next(it) if hp.has_entropy else None
    stats_ref = next(it)
    d_lp, d_ent, stats = _token_terms(hp, lp, old, adv, mask, ref, ent, w)
    d_lp_ref[...] = d_lp
    if hp.has_entropy:
        d_ent_ref[...] = d_ent
    stats_ref[...] = stats


def _next_pow2(x: int) -> int:
    return 1 << max(int(x) - 1, 0).bit_length()


def _pallas_terms(plan: _Plan, hp: _Hyper, lp, ent, old, adv, mask, ref, w):
    b, t = lp.shape
    # Tiles: rows a multiple of 8 (Mosaic) and a power of two (Triton); tokens a power of
    # two >= 128. The [B, T] inputs are small, so they are padded rather than masked.
    bb = max(8, _next_pow2(plan.block_rows))
    bt = min(max(128, _next_pow2(plan.block_tokens)), max(128, _next_pow2(t)))
    bp, tp = pl.cdiv(b, bb) * bb, pl.cdiv(t, bt) * bt

    def pad(x):
        return jnp.pad(x, [(0, bp - b), (0, tp - t)])

    tokens = (
        [lp, old, adv, mask] + ([ref] if hp.has_ref else []) + ([ent] if hp.has_entropy else [])
    )
    tokens = [pad(x) for x in tokens]
    w = jnp.pad(w, (0, bp - b))[:, None]
    grid = (bp // bb, tp // bt)
    tile = pl.BlockSpec((bb, bt), lambda i, j: (i, j))
    out_shape = [jax.ShapeDtypeStruct((bp, tp), jnp.float32)] * (1 + hp.has_entropy)
    out_specs = [tile] * (1 + hp.has_entropy)
    # Per-(row, token-tile) partial sums; summed over token tiles below.
    out_shape.append(jax.ShapeDtypeStruct((grid[1], bp, _NUM_STATS), jnp.float32))
    out_specs.append(pl.BlockSpec((pl.squeezed, bb, _NUM_STATS), lambda i, j: (j, i, 0)))
    if plan.target == "gpu":
        compiler_params = triton_params()
    elif plan.interpret:
        compiler_params = None
    else:
        from jax.experimental.pallas import tpu as pltpu

        compiler_params = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel"))
    outs = pl.pallas_call(
        functools.partial(_policy_kernel, hp=hp),
        out_shape=tuple(out_shape),
        grid=grid,
        in_specs=[tile] * len(tokens) + [pl.BlockSpec((bb, 1), lambda i, j: (i, 0))],
        out_specs=tuple(out_specs),
        compiler_params=compiler_params,
        interpret=plan.interpret,
        name="policy_loss",
    )(*tokens, w)
    d_lp = outs[0][:b, :t]
    d_ent = outs[1][:b, :t] if hp.has_entropy else None
    stats = jnp.sum(outs[-1], axis=0)[:b]
    return d_lp, d_ent, stats


def pallas_policy_loss(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B, T] or [B]
    mask: Array,  # [B, T]
    *,
    ref_logprobs: Array | None = None,  # [B, T]
    entropy: Array | None = None,  # [B, T]
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    aggregation: str = "token_mean",
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
    block_rows: int = 8,
    block_tokens: int = 512,
    target: str = "gpu",
    interpret: bool = False,
) -> tuple[Array, dict[str, Array]]:
    """Policy loss and its gradient in one pass of a Pallas kernel over (row, token) tiles.

    Args:
      logprobs, old_logprobs, advantages, mask, ref_logprobs, entropy, clip_low,
        clip_high, dual_clip, kl_coef, entropy_coef, aggregation, num_tokens,
        num_seqs, loss_scale_factor: as in `fused_policy_loss`.
      block_rows: rows per tile (rounded up to a power of two >= 8).
      block_tokens: tokens per tile (a power of two >= 128, at most T rounded up).
      target: "gpu" (Triton) or "tpu" (Mosaic).
      interpret: run the kernel in the Pallas interpreter.

    Returns:
      (loss, metrics) as in `fused_policy_loss`.
    """
    if target not in ("gpu", "tpu"):
        raise ValueError(f"target must be 'gpu' or 'tpu', got {target!r}")
    return _run(
        _Plan("pallas", block_rows, block_tokens, target, interpret),
        logprobs,
        old_logprobs,
        advantages,
        mask,
        ref_logprobs,
        entropy,
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
