"""Loss aggregation modes and masked reductions.

A policy loss produces a per-token loss ℓ [B, T]; the aggregation mode turns it
into the scalar that is minimised. Every policy loss takes one explicit
`aggregation=` keyword naming a key of `LOSS_AGGREGATIONS`:

| key                       | scalar                                  | used by        |
|---------------------------|-----------------------------------------|----------------|
| `token_mean`              | Σ mask·ℓ / N_tok                        | DAPO, PPO      |
| `seq_mean_token_sum`      | (1/B′)·Σ_b Σ_t mask·ℓ                    | verl           |
| `seq_mean_token_mean`     | (1/B′)·Σ_b (Σ_t mask·ℓ / |y_b|)          | GRPO           |
| `seq_mean_token_sum_norm` | (1/B′)·Σ_b Σ_t mask·ℓ / C                | Dr.GRPO        |

N_tok = Σ mask (valid tokens), B′ = number of rows with |y| > 0, C a constant
(`loss_scale_factor`, default the padded length T).

Global normalizers (gradient accumulation, data parallelism). Every mode is a
sum over rows divided by a count. When a batch is split into micro-batches, pass
the counts of the *whole* batch, `num_tokens` = Σ mask and `num_seqs` = B′
(`global_counts(full_mask)` computes both); each micro-batch's loss is then its
share of the full-batch loss and the micro-batch losses must be **summed**, not
averaged, to give exactly the full-batch loss (and gradient). Without them the
local counts are used, which is right for a single batch and for the TRL
`bnpo`-style local normalisation. For `seq_mean_token_sum_norm` keep C fixed
across micro-batches (pass `loss_scale_factor`, e.g. the maximum response
length); the default C = T is invariant only when every micro-batch has the
same padded length.

Each mode is a weighted sum Σ_b w_b·Σ_t mask·ℓ with per-row weights w_b
(`row_weights`, the one place the modes are defined; the fused policy-loss
kernel takes those weights). All aggregations accept the same keywords (`num_tokens`, `num_seqs`,
`loss_scale_factor`) and ignore those they do not use, so a policy loss can
forward them unchanged. A batch with no valid token gives 0, never NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from rewardjax.registry import LOSS_AGGREGATIONS
from rewardjax.types import Array

__all__ = [
    "LossCounts",
    "aggregate",
    "f32",
    "global_counts",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "row_masked_mean",
    "row_weights",
    "safe_denominator",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
    "token_mean",
    "weighted_sum",
]


def f32(x) -> Array:
    """Casts to float32: loss math runs in float32 even with a bf16 model."""
    return jnp.asarray(x, jnp.float32)


def safe_denominator(x: Array) -> Array:
    """x where x > 0 else 1, so that an empty sum divided by it stays 0."""
    return jnp.where(x > 0, x, 1.0)


def masked_sum(x: Array, mask: Array, axis=None) -> Array:
    """Σ mask·x, with masked entries ignored even when they hold inf or garbage."""
    return jnp.sum(jnp.where(mask > 0, f32(x) * f32(mask), 0.0), axis=axis)


def masked_mean(x: Array, mask: Array, axis=None) -> Array:
    """Σ mask·x / Σ mask; 0 where the mask is empty."""
    return masked_sum(x, mask, axis) / safe_denominator(jnp.sum(f32(mask), axis=axis))


def row_masked_mean(x: Array, mask: Array) -> Array:
    """Per-row masked mean over the last axis: [B, T] -> [B]; 0 for empty rows."""
    return masked_mean(x, mask, axis=-1)


def masked_var(x: Array, mask: Array, *, ddof: int = 1) -> Array:
    """Masked variance over all entries, Σ mask·(x − x̄)² / (Σ mask − ddof)."""
    mean = masked_mean(x, mask)
    n = jnp.sum(f32(mask))
    return masked_sum(jnp.square(f32(x) - mean), mask) / safe_denominator(n - ddof)


def masked_whiten(
    x: Array, mask: Array, *, shift_mean: bool = True, scale: bool = True, eps: float = 1e-8
) -> Array:
    """(x − mean)/sqrt(var + eps) over the masked entries; masked entries become 0.

    The variance uses ddof = 1 (verl `masked_whiten`). `shift_mean=False` keeps the
    mean (scale only), `scale=False` only centres (OpenRLHF `no_std_norm`).
    """
    x = f32(x)
    mean = masked_mean(x, mask)
    out = x - mean if shift_mean else x
    if scale:
        out = (x - mean) * jax.lax.rsqrt(masked_var(x, mask) + eps)
        if not shift_mean:
            out = out + mean
    return jnp.where(mask > 0, out, 0.0)


class LossCounts(NamedTuple):
    """Global normalizers of a batch: valid tokens and non-empty rows."""

    num_tokens: Array
    num_seqs: Array


def global_counts(mask: Array) -> LossCounts:
    """Counts of a full batch, to pass to each micro-batch's loss.

    Args:
      mask: [B, T] 1.0 on completion tokens of the *full* batch.

    Returns:
      LossCounts(num_tokens = Σ mask, num_seqs = #rows with |y| > 0), float32 scalars.
    """
    chex.assert_rank(mask, 2)
    mask = f32(mask)
    return LossCounts(jnp.sum(mask), jnp.sum((jnp.sum(mask, axis=-1) > 0).astype(jnp.float32)))


def _check(values: Array, mask: Array) -> tuple[Array, Array]:
    chex.assert_rank([values, mask], 2)
    chex.assert_equal_shape([values, mask])
    return f32(values), f32(mask)


def row_weights(
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    aggregation: str,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:  # [B]
    """Per-row weights w_b with agg(ℓ) = Σ_b w_b·Σ_t mask·ℓ: the one definition of every mode.

      token_mean               w_b = 1 / N_tok
      seq_mean_token_sum       w_b = 1 / B′
      seq_mean_token_mean      w_b = 1 / (B′·|y_b|)
      seq_mean_token_sum_norm  w_b = 1 / (B′·C)

    Every mode is this weighted sum, so the fused policy-loss kernel takes the
    weights instead of a mode name (`rewardjax.ops.policy_loss`). Empty
    normalisers count as 1.

    Args:
      mask: [B, T] 1.0 on completion tokens.
      aggregation: a `LOSS_AGGREGATIONS` key.
      num_tokens, num_seqs, loss_scale_factor: see the module docstring.

    Returns:
      [B] float32 weights.
    """
    chex.assert_rank(mask, 2)
    if aggregation not in LOSS_AGGREGATIONS:
        raise ValueError(
            f"unknown aggregation {aggregation!r}; known: {', '.join(LOSS_AGGREGATIONS.names())}"
        )
    mask = jnp.where(mask > 0, f32(mask), 0.0)
    lengths = jnp.sum(mask, axis=-1)
    if aggregation == "token_mean":
        n_tok = jnp.sum(lengths) if num_tokens is None else f32(num_tokens)
        return jnp.broadcast_to(1.0 / safe_denominator(n_tok), lengths.shape)
    n_seq = safe_denominator(_num_seqs(mask, num_seqs))
    if aggregation == "seq_mean_token_sum":
        return jnp.broadcast_to(1.0 / n_seq, lengths.shape)
    if aggregation == "seq_mean_token_mean":
        return 1.0 / (n_seq * safe_denominator(lengths))
    if aggregation == "seq_mean_token_sum_norm":
        c = mask.shape[1] if loss_scale_factor is None else loss_scale_factor
        return jnp.broadcast_to(1.0 / (n_seq * f32(c)), lengths.shape)
    raise ValueError(f"aggregation {aggregation!r} is registered but has no row weights here")


def weighted_sum(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    weights: Array,  # [B] from `row_weights`
) -> Array:
    """Σ_b w_b·Σ_t mask·values, masked entries ignored even when they hold inf or NaN."""
    return jnp.sum(weights * masked_sum(values, mask, axis=-1))


def _num_seqs(mask: Array, num_seqs) -> Array:
    if num_seqs is not None:
        return f32(num_seqs)
    return jnp.sum((jnp.sum(mask, axis=-1) > 0).astype(jnp.float32))


def _mode(name: str, values, mask, num_tokens, num_seqs, loss_scale_factor) -> Array:
    values, mask = _check(values, mask)
    w = row_weights(
        mask,
        aggregation=name,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
    return weighted_sum(values, mask, w)


@LOSS_AGGREGATIONS.register("token_mean")
def token_mean(
    values: Array,  # [B, T] per-token loss
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Token-level mean over the (global) batch: every token weighs the same.

      L = Σ_{b,t} mask·ℓ / N_tok,   N_tok = num_tokens or Σ mask

    Args:
      values: [B, T] per-token loss ℓ.
      mask: [B, T] 1.0 on completion tokens.
      num_tokens: global number of valid tokens (gradient accumulation); the
        local Σ mask when None.
      num_seqs, loss_scale_factor: unused; accepted so every mode shares one signature.

    Returns:
      Scalar float32 loss; 0 when there is no valid token.

    Source: DAPO token-level policy-gradient loss (verl default `token-mean`, TRL
    `dapo` with global active tokens, OpenRLHF, tunix).
    """
    return _mode("token_mean", values, mask, num_tokens, num_seqs, loss_scale_factor)


@LOSS_AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Mean over sequences of the per-sequence token sum.

      L = (1/B′)·Σ_b Σ_t mask·ℓ,   B′ = num_seqs or #rows with |y| > 0

    Args:
      values: [B, T] per-token loss ℓ.
      mask: [B, T] 1.0 on completion tokens.
      num_seqs: global number of non-empty rows; local count when None.
      num_tokens, loss_scale_factor: unused.

    Returns:
      Scalar float32 loss.

    Source: verl `seq-mean-token-sum`.
    """
    return _mode("seq_mean_token_sum", values, mask, num_tokens, num_seqs, loss_scale_factor)


@LOSS_AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Mean over sequences of the per-sequence token mean (original GRPO).

      L = (1/B′)·Σ_b (Σ_t mask·ℓ / |y_b|)

    Args:
      values: [B, T] per-token loss ℓ.
      mask: [B, T] 1.0 on completion tokens.
      num_seqs: global number of non-empty rows; local count when None.
      num_tokens, loss_scale_factor: unused.

    Returns:
      Scalar float32 loss.

    Source: "DeepSeekMath" GRPO objective, as in verl `seq-mean-token-mean`,
    TRL `grpo`, tunix.
    """
    return _mode("seq_mean_token_mean", values, mask, num_tokens, num_seqs, loss_scale_factor)


@LOSS_AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Sequence token sums divided by a constant C (Dr.GRPO, no length bias).

      L = (1/B′)·Σ_b Σ_t mask·ℓ / C

    Args:
      values: [B, T] per-token loss ℓ.
      mask: [B, T] 1.0 on completion tokens.
      num_seqs: global number of non-empty rows; local count when None.
      loss_scale_factor: the constant C; the padded length T when None (verl's
        default). Set it to a constant such as the maximum response length.
      num_tokens: unused.

    Returns:
      Scalar float32 loss.

    Source: "Understanding R1-Zero-Like Training: A Critical Perspective"
    (Dr.GRPO); verl `seq-mean-token-sum-norm`, TRL `dr_grpo`.
    """
    return _mode("seq_mean_token_sum_norm", values, mask, num_tokens, num_seqs, loss_scale_factor)


def aggregate(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    aggregation: str,
    num_tokens: Array | float | None = None,
    num_seqs: Array | float | None = None,
    loss_scale_factor: float | None = None,
) -> Array:
    """Applies the aggregation mode named `aggregation` (a `LOSS_AGGREGATIONS` key)."""
    fn = LOSS_AGGREGATIONS.get(aggregation)
    return fn(
        values,
        mask,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
