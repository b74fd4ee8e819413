"""Fused policy-loss math over [B, T]: ratio, clipping, k3 KL, entropy bonus, aggregation.

  ρ = exp(clip(logp − old_logp, −20, 20))
  ℓ = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))          (PPO clip, ε_high > ε_low: clip-higher)
  ℓ ← min(ℓ, −c·A) where A < 0                               (dual clip, c > 1)
  k3 = clip(e^δ − δ − 1, −10, 10),  δ = clip(ref_logp − logp, −20, 20)
  L = Σ_b w_b Σ_t mask·(ℓ + β·k3 − c_H·H)

The aggregation mode enters only through the per-row weights w_b
(`rewardjax.objectives.aggregation.row_weights`, where the modes are defined):
every mode is such a weighted sum. β (`kl_coef`) may be a traced scalar, so a
coefficient that changes between steps never recompiles; it reaches the kernel
as the row weights β·w_b.

Since L is a sum of per-token terms with weights that depend only on the mask,
the fused implementations compute ∂L/∂logp and ∂L/∂H in the same pass as L
(one read of each input, no second pass in the backward) and the backward pass
only scales them by the incoming cotangent. `old_logprobs`, `advantages`,
`ref_logprobs`, `mask` and the weights are constants of the loss (their
cotangent is zero).

One entry point, `fused_policy_loss(..., impl=)`, with three implementations:

* "reference": plain jnp, differentiated by autodiff (ground truth).
* "chunked": the one-pass XLA version; the whole computation is elementwise
  plus row sums, which XLA fuses, so it needs no explicit blocking.
* "pallas": the same pass as a Pallas kernel over (row, token) tiles.

Sources: "Proximal Policy Optimization Algorithms" (Schulman et al., 2017);
dual clip from "Mastering Complex Control in MOBA Games with Deep Reinforcement
Learning" (Ye et al., 2020), as in verl; clip-higher from DAPO; k3 from verl's
`low_var_kl`.
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

__all__ = ["IMPLS", "fused_policy_loss"]

IMPLS = ("reference", "chunked", "pallas")

_LOG_RATIO_CLAMP = 20.0
_K3_CLAMP = 10.0

# Columns of the per-row statistics.
_PG, _KL_W, _ENT_W, _KL, _ENT, _LOW, _HIGH, _DUAL, _RATIO, _PPO_KL, _APPROX_KL, _TOKENS = range(12)
_NUM_STATS = 16


def _safe(x: Array) -> Array:
    return jnp.where(x > 0, x, 1.0)


@dataclasses.dataclass(frozen=True)
class _Hyper:
    clip_low: float
    clip_high: float
    dual_clip: float | None
    entropy_coef: float
    has_ref: bool
    has_entropy: bool


# ----------------------------------------------------------------------------- reference


def _reference(hp: _Hyper, lp, old, adv, mask, ref, ent, w, kl_coef):
    """PPO-clip (+ dual clip) + β·k3 − c_H·H, weighted by w; plain jnp (see module docstring)."""
    valid = mask > 0
    # Sanitise padding first so that no inf/NaN there reaches a gradient.
    lp = jnp.where(valid, lp, 0.0)
    old = lax.stop_gradient(jnp.where(valid, old, 0.0))
    adv = lax.stop_gradient(jnp.where(valid, adv, 0.0))
    w = lax.stop_gradient(w)

    def agg(x):
        return jnp.sum(w * jnp.sum(jnp.where(valid, x * mask, 0.0), axis=1))

    log_ratio = jnp.clip(lp - old, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio)
    pg1 = -adv * ratio
    pg2 = -adv * jnp.clip(ratio, 1.0 - hp.clip_low, 1.0 + hp.clip_high)
    pg = jnp.maximum(pg1, pg2)
    dual = jnp.zeros_like(valid)
    if hp.dual_clip is not None:
        dual = (adv < 0) & (pg > -hp.dual_clip * adv)
        pg = jnp.where(adv < 0, jnp.minimum(pg, -hp.dual_clip * adv), pg)
    n_tok = _safe(jnp.sum(jnp.where(valid, mask, 0.0)))

    def token_mean(x):
        return jnp.sum(jnp.where(valid, x * mask, 0.0)) / n_tok

    loss = agg(pg)
    metrics = {
        "pg_loss": loss,
        "clip_frac_low": token_mean(
            ((pg2 > pg1) & (ratio < 1.0 - hp.clip_low)).astype(jnp.float32)
        ),
        "clip_frac_high": token_mean(
            ((pg2 > pg1) & (ratio > 1.0 + hp.clip_high)).astype(jnp.float32)
        ),
        "clip_frac_dual": token_mean(dual.astype(jnp.float32)),
        "ratio_mean": token_mean(ratio),
        "ppo_kl": token_mean(old - lp),
        "approx_kl": token_mean(ratio - 1.0 - log_ratio),
    }
    metrics["clip_frac"] = (
        metrics["clip_frac_low"] + metrics["clip_frac_high"] + metrics["clip_frac_dual"]
    )
    if hp.has_ref:
        ref = lax.stop_gradient(jnp.where(valid, ref, 0.0))
        delta = jnp.clip(ref - lp, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        k3 = jnp.clip(jnp.exp(delta) - delta - 1.0, -_K3_CLAMP, _K3_CLAMP)
        kl_loss = kl_coef * agg(k3)
        loss = loss + kl_loss
        metrics["kl_ref"] = token_mean(k3)
        metrics["kl_loss"] = kl_loss
    if hp.has_entropy:
        ent = jnp.where(valid, ent, 0.0)
        loss = loss - hp.entropy_coef * agg(ent)
        metrics["entropy"] = token_mean(ent)
    return loss, jax.tree.map(lax.stop_gradient, metrics)


def _prepare(logprobs, old_logprobs, advantages, mask, ref_logprobs, entropy, row_weights):
    chex.assert_rank([logprobs, old_logprobs, mask], 2)
    chex.assert_equal_shape([logprobs, old_logprobs, mask])
    chex.assert_shape(row_weights, logprobs.shape[:1])
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
    arrays = (logprobs, old_logprobs, advantages, mask)
    return (*(f32(x) for x in arrays), ref_logprobs, entropy, f32(row_weights))


# ----------------------------------------------------------------------------- fused math


def _token_terms(hp: _Hyper, lp, old, adv, mask, ref, ent, w, w_kl):
    """One tile: (∂L/∂logp, ∂L/∂H, per-row statistics [R, 16]).

    lp, old, adv, mask, ref, ent: [R, C] tiles (ref/ent None when absent);
    w: [R, 1] aggregation weight of each row; w_kl: [R, 1] β·w (None without ref).
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
    d_lp = wm * d_pg
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
        d_lp = d_lp + (w_kl * m) * jnp.where(live, 1.0 - jnp.exp(delta_c), 0.0)
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


def _loss_from_stats(hp: _Hyper, totals: Array, kl_coef: Array) -> Array:
    return totals[_PG] + kl_coef * totals[_KL_W] - hp.entropy_coef * totals[_ENT_W]


def _metrics_from_stats(hp: _Hyper, totals: Array, kl_coef: Array) -> dict[str, Array]:
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
        metrics["kl_loss"] = kl_coef * totals[_KL_W]
    if hp.has_entropy:
        metrics["entropy"] = totals[_ENT] / n
    return metrics


@dataclasses.dataclass(frozen=True)
class _Plan:
    impl: str  # "chunked" | "pallas"
    block_rows: int = 8
    block_tokens: int = 512
    target: str = "gpu"
    interpret: bool = False


def _terms(plan: _Plan, hp: _Hyper, lp, ent, old, adv, mask, ref, w, kl_coef):
    w_kl = kl_coef * w if hp.has_ref else None
    if plan.impl == "chunked":
        w_kl = None if w_kl is None else w_kl[:, None]
        return _token_terms(hp, lp, old, adv, mask, ref, ent, w[:, None], w_kl)
    return _pallas_terms(plan, hp, lp, ent, old, adv, mask, ref, w, w_kl)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused(plan, hp, lp, ent, old, adv, mask, ref, w, kl_coef):
    _, _, stats = _terms(plan, hp, lp, ent, old, adv, mask, ref, w, kl_coef)
    totals = jnp.sum(stats, axis=0)
    return _loss_from_stats(hp, totals, kl_coef), totals


def _fused_fwd(plan, hp, lp, ent, old, adv, mask, ref, w, kl_coef):
    d_lp, d_ent, stats = _terms(plan, hp, lp, ent, old, adv, mask, ref, w, kl_coef)
    totals = jnp.sum(stats, axis=0)
    return (_loss_from_stats(hp, totals, kl_coef), totals), (d_lp, d_ent, totals[_KL_W])


def _fused_bwd(plan, hp, residuals, g):
    d_lp, d_ent, kl_w = residuals
    g_loss = g[0]  # the statistics are metrics: the caller stops their gradient
    d_ent = None if d_ent is None else g_loss * d_ent
    # ∂L/∂β = agg(k3): β is an input of the step, rarely differentiated, but exact.
    return g_loss * d_lp, d_ent, None, None, None, None, None, g_loss * kl_w


_fused.defvjp(_fused_fwd, _fused_bwd)


def fused_policy_loss(
    logprobs: Array,  # [B, T] log π_θ(y_t | x, y_<t)
    old_logprobs: Array,  # [B, T] same tokens under the behaviour policy
    advantages: Array,  # [B, T] or [B]
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    row_weights: Array,  # [B] aggregation weight w_b of each row
    ref_logprobs: Array | None = None,  # [B, T] under the reference policy
    entropy: Array | None = None,  # [B, T] entropy of π_θ at each position
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    kl_coef: Array | float = 0.0,
    entropy_coef: float = 0.0,
    impl: str = "chunked",
    block_rows: int = 8,
    block_tokens: int = 512,
    target: str = "gpu",
    interpret: bool = False,
) -> tuple[Array, dict[str, Array]]:
    """Policy loss Σ_b w_b Σ_t mask·(ℓ + β·k3 − c_H·H) and its gradient in one pass.

    Args:
      logprobs: [B, T] log π_θ(y_t | x, y_<t); differentiable.
      old_logprobs: [B, T] the same tokens under the behaviour policy (constant).
      advantages: [B, T], or [B] broadcast over tokens (constant).
      mask: [B, T] 1.0 on completion tokens; masked entries may hold anything.
      row_weights: [B] w_b of the aggregation mode (`objectives.aggregation.row_weights`).
      ref_logprobs: [B, T] under the reference policy, or None (no KL term, no `kl_ref`).
      entropy: [B, T] entropy of π_θ at each position, or None; differentiable.
      clip_low, clip_high: ε_low, ε_high of the ratio clip.
      dual_clip: c > 1 of the dual clip (applied where A < 0), or None.
      kl_coef: β of the k3 term (used with `ref_logprobs`); a float or a traced
        f32 scalar.
      entropy_coef: c_H of the entropy bonus (used with `entropy`).
      impl: "reference" (jnp + autodiff), "chunked" (one fused XLA pass) or
        "pallas" (the same pass as a Pallas kernel).
      block_rows: Pallas rows per tile (rounded up to a power of two >= 8).
      block_tokens: Pallas tokens per tile (a power of two >= 128, at most T rounded up).
      target: Pallas lowering, "gpu" (Triton) or "tpu" (Mosaic).
      interpret: run the Pallas kernel in the interpreter.

    Returns:
      (loss, metrics): the scalar float32 loss and scalar float32 metrics
      pg_loss (Σ w·ℓ), clip_frac (any clip), clip_frac_low, clip_frac_high,
      clip_frac_dual, ratio_mean, ppo_kl (token mean of old_logp − logp), approx_kl
      (token mean of ρ − 1 − log ρ), kl_ref (mean k3) and kl_loss (β·Σ w·k3) with
      `ref_logprobs`, entropy with `entropy`; every mean is over the valid tokens
      of this batch. Metrics carry no gradient.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if target not in ("gpu", "tpu"):
        raise ValueError(f"target must be 'gpu' or 'tpu', got {target!r}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    lp, old, adv, mask, ref, ent, w = _prepare(
        logprobs, old_logprobs, advantages, mask, ref_logprobs, entropy, row_weights
    )
    hp = _Hyper(
        float(clip_low),
        float(clip_high),
        None if dual_clip is None else float(dual_clip),
        float(entropy_coef),
        ref is not None,
        ent is not None,
    )
    kl_coef = jnp.asarray(kl_coef, jnp.float32)
    chex.assert_rank(kl_coef, 0)
    if impl == "reference":
        return _reference(hp, lp, old, adv, mask, ref, ent, w, kl_coef)
    plan = _Plan(impl, block_rows, block_tokens, target, interpret)
    loss, totals = _fused(plan, hp, lp, ent, old, adv, mask, ref, w, kl_coef)
    metrics = _metrics_from_stats(hp, lax.stop_gradient(totals), lax.stop_gradient(kl_coef))
    return loss, metrics


# ----------------------------------------------------------------------------- Pallas


def _policy_kernel(*refs, hp: _Hyper):
    it = iter(refs)
    lp, old, adv, mask = (next(it)[...] for _ in range(4))
    ref = next(it)[...] if hp.has_ref else None
    ent = next(it)[...] if hp.has_entropy else None
    w = next(it)[...]
    w_kl = next(it)[...] if hp.has_ref else None
    d_lp_ref = next(it)
    d_ent_ref = next(it) if hp.has_entropy else None
    stats_ref = next(it)
    d_lp, d_ent, stats = _token_terms(hp, lp, old, adv, mask, ref, ent, w, w_kl)
    d_lp_ref[...] = d_lp
    if hp.has_entropy:
        d_ent_ref[...] = d_ent
    stats_ref[...] = stats


def _next_pow2(x: int) -> int:
    return 1 << max(int(x) - 1, 0).bit_length()


def _pallas_terms(plan: _Plan, hp: _Hyper, lp, ent, old, adv, mask, ref, w, w_kl):
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
    rows = [w] + ([w_kl] if hp.has_ref else [])
    rows = [jnp.pad(x, (0, bp - b))[:, None] for x in rows]
    grid = (bp // bb, tp // bt)
    tile = pl.BlockSpec((bb, bt), lambda i, j: (i, j))
    row_tile = pl.BlockSpec((bb, 1), lambda i, j: (i, 0))
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
        in_specs=[tile] * len(tokens) + [row_tile] * len(rows),
        out_specs=tuple(out_specs),
        compiler_params=compiler_params,
        interpret=plan.interpret,
        name="policy_loss",
    )(*tokens, *rows)
    d_lp = outs[0][:b, :t]
    d_ent = outs[1][:b, :t] if hp.has_entropy else None
    stats = jnp.sum(outs[-1], axis=0)[:b]
    return d_lp, d_ent, stats
