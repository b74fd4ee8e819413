"""Logits-free log-prob, entropy and logsumexp from hidden states and the output projection.

z = (hidden @ projection) / temperature is the [N, V] logits matrix of a
language-model head: 8,192 tokens × 151,936 vocabulary in float32 is 5 GB for one
micro-batch, needed only to read one log-prob and the entropy per token. These
implementations never hold it: they compute [rows × vocabulary] tiles of z,
fold each into the online statistics of `online_softmax`, and drop it. The
backward pass recomputes each tile from the saved logsumexp and entropy, forms
its cotangent dz, and accumulates

  d_hidden = dz @ projectionᵀ / τ,   d_projection = hiddenᵀ @ dz / τ

tile by tile. This is the idea of "Cut Your Losses in Large-Vocabulary Language
Models" (Cut Cross-Entropy) and of fused linear cross-entropy kernels, extended
to the entropy and the logsumexp.

* `reference_linear_logprobs`: materialises the logits (ground truth).
* `chunked_linear_logprobs`: XLA; map over row tiles × scan over vocabulary tiles.
* `pallas_linear_logprobs`: Pallas. `target="gpu"` (Triton): the forward kernel
  runs one program per row tile looping over vocabulary and hidden tiles; the
  backward kernel runs one program per (row tile, vocabulary tile) and adds its
  d_hidden and d_projection tiles with atomic adds. `target="tpu"` (Mosaic):
  vocabulary tiles on a sequential grid axis; the backward pass is two kernels
  (d_hidden accumulates over vocabulary tiles, d_projection over row tiles).

Each costs one matmul forward and three backward (recompute, d_hidden,
d_projection); materialising the logits costs one and two.

The temperature matches the sampler's: log-probs of tokens sampled at τ must be
computed from z/τ for the importance ratio to be right.
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from rewardjax.kernels import online_softmax as osm
from rewardjax.kernels.logprob import (
    TokenLogprobs,
    assemble_rows,
    pow2_floor,
    reference_token_logprobs,
    tile_start,
    triton_params,
)

from rewardjax.types import Array

__all__ = [
    "chunked_linear_logprobs",
    "pallas_linear_logprobs",
    "reference_linear_logprobs",
]


def _check(hidden: Array, projection: Array, labels: Array, temperature: float) -> None:
    chex.assert_rank([hidden, projection, labels], [2, 2, 1])
    if hidden.shape[1] != projection.shape[0]:
        raise ValueError(
            f"hidden {hidden.shape} and projection {projection.shape} disagree on the width D"
        )
    if hidden.shape[0] != labels.shape[0]:
        raise ValueError(
            f"hidden {hidden.shape} and labels {labels.shape} disagree on the number of tokens"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer token ids, got {labels.dtype}")
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature must be a positive Python number, got {temperature!r}")


def _compute_dtype(hidden: Array, projection: Array):
    return jnp.promote_types(hidden.dtype, projection.dtype)


def _dot(a: Array, b: Array, contract: tuple[int, int] = (1, 0)) -> Array:
    """2-D matmul contracting a's axis contract[0] with b's axis contract[1], float32 result."""
    return lax.dot_general(
        a, b, (((contract[0],), (contract[1],)), ((), ())), preferred_element_type=jnp.float32
    )


# ----------------------------------------------------------------------------- reference


def reference_linear_logprobs(
    hidden: Array,  # [N, D]
    projection: Array,  # [D, V]
    labels: Array,  # [N] int token ids
    *,
    temperature: float = 1.0,
) -> TokenLogprobs:
    """log p(label), entropy and logsumexp of z = hidden @ projection / τ, materialising z.

    Args:
      hidden: [N, D] final hidden states (after the last norm).
      projection: [D, V] output projection (the transposed embedding when tied).
      labels: [N] token ids.
      temperature: τ > 0, the sampler's temperature.

    Returns:
      TokenLogprobs of [N] float32 arrays.
    """
    _check(hidden, projection, labels, temperature)
    z = jnp.dot(
        hidden.astype(jnp.float32),
        projection.astype(jnp.float32),
        precision=lax.Precision.HIGHEST,
    )
    return reference_token_logprobs(z / temperature, labels)


# ----------------------------------------------------------------------------- shared


@dataclasses.dataclass(frozen=True)
class _Plan:
    impl: str  # "chunked" | "pallas"
    block_rows: int
    block_vocab: int
    block_hidden: int
    inv_temperature: float
    target: str = "gpu"
    interpret: bool = False


def _forward(plan: _Plan, hidden, projection, labels) -> TokenLogprobs:
    if plan.impl == "chunked":
        return _chunked_forward(hidden, projection, labels, plan)
    if plan.target == "gpu":
        return _gpu_forward(hidden, projection, labels, plan)
    return _tpu_forward(hidden, projection, labels, plan)


def _backward(plan: _Plan, hidden, projection, labels, out, g) -> tuple[Array, Array]:
    if plan.impl == "chunked":
        return _chunked_backward(hidden, projection, labels, out, g, plan)
    if plan.target == "gpu":
        return _gpu_backward(hidden, projection, labels, out, g, plan)
    return _tpu_backward(hidden, projection, labels, out, g, plan)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(plan: _Plan, hidden: Array, projection: Array, labels: Array) -> TokenLogprobs:
    return _forward(plan, hidden, projection, labels)


def _fused_fwd(plan, hidden, projection, labels):
    out = _forward(plan, hidden, projection, labels)
    # Only [N]-sized statistics are saved; the logits are recomputed in the backward pass.
    return out, (hidden, projection, labels, out)


def _fused_bwd(plan, residuals, g):
    hidden, projection, labels, out = residuals
    g = TokenLogprobs(*(jnp.asarray(x, jnp.float32) for x in g))
    d_hidden, d_projection = _backward(plan, hidden, projection, labels, out, g)
    return d_hidden, d_projection, None


_fused.defvjp(_fused_fwd, _fused_bwd)


# ----------------------------------------------------------------------------- chunked XLA


def _chunked_forward(hidden, projection, labels, plan: _Plan) -> TokenLogprobs:
    n, d = hidden.shape
    v = projection.shape[1]
    bn, bv = min(plan.block_rows, n), min(plan.block_vocab, v)
    n_vb = pl.cdiv(v, bv)

    def row_tile(i):
        r0 = tile_start(i, bn, n)
        h = lax.dynamic_slice(hidden, (r0, 0), (bn, d))
        y = lax.dynamic_slice_in_dim(labels, r0, bn)

        def step(stats, j):
            c0 = tile_start(j, bv, v)
            w = lax.dynamic_slice(projection, (0, c0), (d, bv))
            z = _dot(h, w) * plan.inv_temperature
            cols = c0 + jnp.arange(bv, dtype=jnp.int32)
            valid = (cols >= j * bv)[None, :]
            return osm.update_stats(stats, z, valid, cols[None, :] == y[:, None]), None

        stats, _ = lax.scan(step, osm.init_stats((bn,)), jnp.arange(n_vb, dtype=jnp.int32))
        return osm.finalize_stats(stats)

    tiles = lax.map(row_tile, jnp.arange(pl.cdiv(n, bn), dtype=jnp.int32))
    return TokenLogprobs(*(assemble_rows(t, n) for t in tiles))


def _chunked_backward(hidden, projection, labels, out, g, plan: _Plan):
    n, d = hidden.shape
    v = projection.shape[1]
    bn, bv = min(plan.block_rows, n), min(plan.block_vocab, v)
    cdt = _compute_dtype(hidden, projection)
    stats = jnp.stack([out.logsumexp, out.entropy, g.logprobs, g.entropy, g.logsumexp], axis=1)

    def row_tile(d_proj, i):
        r0 = tile_start(i, bn, n)
        h = lax.dynamic_slice(hidden, (r0, 0), (bn, d))
        y = lax.dynamic_slice_in_dim(labels, r0, bn)
        lse, ent, g_lp, g_ent, g_lse = jnp.split(lax.dynamic_slice(stats, (r0, 0), (bn, 5)), 5, 1)
        # Rows before i·bn belong to the previous tile: they must not add to d_projection twice.
        row_ok = (r0 + jnp.arange(bn, dtype=jnp.int32) >= i * bn)[:, None]

        def step(carry, j):
            d_h, d_proj = carry
            c0 = tile_start(j, bv, v)
            w = lax.dynamic_slice(projection, (0, c0), (d, bv))
            z = _dot(h, w) * plan.inv_temperature
            cols = c0 + jnp.arange(bv, dtype=jnp.int32)
            ok = row_ok & (cols >= j * bv)[None, :]
            dz = osm.logits_cotangent(z, cols[None, :] == y[:, None], lse, ent, g_lp, g_ent, g_lse)
            dz = (jnp.where(ok, dz, 0.0) * plan.inv_temperature).astype(cdt)
            d_h = d_h + _dot(dz, w, (1, 1))
            tile = lax.dynamic_slice(d_proj, (0, c0), (d, bv)) + _dot(h, dz, (0, 0))
            return (d_h, lax.dynamic_update_slice(d_proj, tile, (0, c0))), None

        init = (jnp.zeros((bn, d), jnp.float32), d_proj)
        (d_h, d_proj), _ = lax.scan(step, init, jnp.arange(pl.cdiv(v, bv), dtype=jnp.int32))
        return d_proj, d_h

    d_proj = jnp.zeros((d, v), jnp.float32)
    d_proj, d_h = lax.scan(row_tile, d_proj, jnp.arange(pl.cdiv(n, bn), dtype=jnp.int32))
    return assemble_rows(d_h, n).astype(hidden.dtype), d_proj.astype(projection.dtype)


def chunked_linear_logprobs(
    hidden: Array,  # [N, D]
    projection: Array,  # [D, V]
    labels: Array,  # [N] int token ids
    *,
    temperature: float = 1.0,
    block_rows: int = 2048,
    block_vocab: int = 4096,
) -> TokenLogprobs:
    """Logits-free log-prob/entropy/logsumexp by tiles of z = hidden @ projection / τ (XLA).

    The largest temporary is a few [block_rows, block_vocab] float32 tiles, plus a
    float32 accumulator for d_projection in the backward pass.

    Args:
      hidden: [N, D] final hidden states.
      projection: [D, V] output projection.
      labels: [N] token ids.
      temperature: τ > 0 (a Python number: it is part of the compiled program).
      block_rows: rows per tile (clipped to N).
      block_vocab: vocabulary columns per tile (clipped to V).

    Returns:
      TokenLogprobs of [N] float32 arrays; differentiable in `hidden` and `projection`.
    """
    _check(hidden, projection, labels, temperature)
    plan = _Plan("chunked", block_rows, block_vocab, 0, 1.0 / float(temperature))
    return _fused(plan, hidden, projection, labels.astype(jnp.int32))


# ----------------------------------------------------------------------------- Pallas, GPU


def _gpu_logits_tile(h_ref, w_ref, rows, c0, *, bn, bv, bd, d, inv_t):
    """z[rows, c0:c0+bv] = Σ_k h[rows, k-tile] @ w[k-tile, c0:c0+bv], float32."""

    def body(k, acc):
        k0 = tile_start(k, bd, d)
        h = h_ref[rows, pl.ds(k0, bd)]
        if d % bd:
            # The last hidden tile is pulled back: zero the columns the previous tile summed.
            kc = k0 + lax.broadcasted_iota(jnp.int32, (1, bd), 1)
            h = jnp.where(kc >= k * bd, h, jnp.zeros_like(h))
        return acc + _dot(h, w_ref[pl.ds(k0, bd), pl.ds(c0, bv)])

    acc = lax.fori_loop(0, pl.cdiv(d, bd), body, jnp.zeros((bn, bv), jnp.float32))
    return acc * inv_t


def _gpu_forward_kernel(
    h_ref, w_ref, y_ref, lp_ref, ent_ref, lse_ref, *, bn, bv, bd, n, d, v, inv_t
):
    rows = pl.ds(tile_start(pl.program_id(0), bn, n), bn)
    y = y_ref[rows]

    def body(j, stats):
        c0 = tile_start(j, bv, v)
        z = _gpu_logits_tile(h_ref, w_ref, rows, c0, bn=bn, bv=bv, bd=bd, d=d, inv_t=inv_t)
        cols = c0 + lax.broadcasted_iota(jnp.int32, (1, bv), 1)
        return osm.update_stats(stats, z, cols >= j * bv, cols == y[:, None])

    stats = lax.fori_loop(0, pl.cdiv(v, bv), body, osm.init_stats((bn,)))
    lp, ent, lse = osm.finalize_stats(stats)
    lp_ref[rows] = lp
    ent_ref[rows] = ent
    lse_ref[rows] = lse


def _gpu_backward_kernel(
    h_ref,
    w_ref,
    y_ref,
    lse_ref,
    ent_ref,
    glp_ref,
    gent_ref,
    glse_ref,
    dh_in,
    dw_in,
    dh_ref,
    dw_ref,
    *,
    bn,
    bv,
    bd,
    n,
    d,
    v,
    inv_t,
):
    del dh_in, dw_in  # aliased to dh_ref / dw_ref: zero-initialised accumulators
    i, j = pl.program_id(0), pl.program_id(1)
    r0 = tile_start(i, bn, n)
    c0 = tile_start(j, bv, v)
    rows = pl.ds(r0, bn)
    z = _gpu_logits_tile(h_ref, w_ref, rows, c0, bn=bn, bv=bv, bd=bd, d=d, inv_t=inv_t)
    cols = c0 + lax.broadcasted_iota(jnp.int32, (1, bv), 1)
    row_ids = r0 + lax.broadcasted_iota(jnp.int32, (bn, 1), 0)
    dz = osm.logits_cotangent(
        z,
        cols == y_ref[rows][:, None],
        lse_ref[rows][:, None],
        ent_ref[rows][:, None],
        glp_ref[rows][:, None],
        gent_ref[rows][:, None],
        glse_ref[rows][:, None],
    )
    # Each (row, column) pair is owned by exactly one program: pulled-back overlaps add zero.
    ok = (row_ids >= i * bn) & (cols >= j * bv)
    dz = (jnp.where(ok, dz, 0.0) * inv_t).astype(h_ref.dtype)

    def body(k, carry):
        k0 = tile_start(k, bd, d)
        kcols = pl.ds(k0, bd)
        d_h = _dot(dz, w_ref[kcols, pl.ds(c0, bv)], (1, 1))  # [bn, bd]
        d_w = _dot(h_ref[rows, kcols], dz, (0, 0))  # [bd, bv]
        if d % bd:
            # Hidden columns before k·bd were handled by the previous (pulled-back) slice.
            d_h = jnp.where(k0 + lax.broadcasted_iota(jnp.int32, (1, bd), 1) >= k * bd, d_h, 0.0)
            d_w = jnp.where(k0 + lax.broadcasted_iota(jnp.int32, (bd, 1), 0) >= k * bd, d_w, 0.0)
        _atomic_add(dh_ref, (rows, kcols), d_h)
        _atomic_add(dw_ref, (kcols, pl.ds(c0, bv)), d_w)
        return carry

    lax.fori_loop(0, pl.cdiv(d, bd), body, 0)


def _atomic_add(ref, idx, value):
    from jax.experimental.pallas import triton as plgpu

    plgpu.atomic_add(ref, idx, value)


def _gpu_blocks(plan: _Plan, n: int, d: int, v: int) -> tuple[int, int, int]:
    return (
        min(plan.block_rows, pow2_floor(n)),
        min(plan.block_vocab, pow2_floor(v)),
        min(plan.block_hidden, pow2_floor(d)),
    )


# Triton's dot needs every tile dimension >= 16; tiny batches are padded up to it.
_MIN_GPU_ROWS = 16


def _gpu_pad_rows(x: Array, n: int) -> Array:
    if x.shape[0] >= _MIN_GPU_ROWS:
        return x
    return jnp.pad(x, [(0, _MIN_GPU_ROWS - n)] + [(0, 0)] * (x.ndim - 1))


def _gpu_forward(hidden, projection, labels, plan: _Plan) -> TokenLogprobs:
    n0 = hidden.shape[0]
    hidden, labels = _gpu_pad_rows(hidden, n0), _gpu_pad_rows(labels, n0)
    (n, d), v = hidden.shape, projection.shape[1]
    bn, bv, bd = _gpu_blocks(plan, n, d, v)
    kernel = functools.partial(
        _gpu_forward_kernel, bn=bn, bv=bv, bd=bd, n=n, d=d, v=v, inv_t=plan.inv_temperature
    )
    out = jax.ShapeDtypeStruct((n,), jnp.float32)
    lp, ent, lse = pl.pallas_call(
        kernel,
        out_shape=(out, out, out),
        grid=(pl.cdiv(n, bn),),
        compiler_params=triton_params(num_warps=4, num_stages=2),
        interpret=plan.interpret,
        name="linear_logprobs_fwd",
    )(hidden, projection, labels)
    return TokenLogprobs(lp[:n0], ent[:n0], lse[:n0])


def _gpu_backward(hidden, projection, labels, out, g, plan: _Plan):
    n0 = hidden.shape[0]
    rows = [_gpu_pad_rows(x, n0) for x in (hidden, labels, *out, *g)]
    # Padded rows get zero cotangents, so they add nothing to d_projection.
    hidden, labels, _, ent, lse, g_lp, g_ent, g_lse = rows
    (n, d), v = hidden.shape, projection.shape[1]
    bn, bv, bd = _gpu_blocks(plan, n, d, v)
    kernel = functools.partial(
        _gpu_backward_kernel, bn=bn, bv=bv, bd=bd, n=n, d=d, v=v, inv_t=plan.inv_temperature
    )
    d_h, d_w = pl.pallas_call(
        kernel,
        out_shape=(
            jax.ShapeDtypeStruct((n, d), jnp.float32),
            jax.ShapeDtypeStruct((d, v), jnp.float32),
        ),
        grid=(pl.cdiv(n, bn), pl.cdiv(v, bv)),
        input_output_aliases={8: 0, 9: 1},
        compiler_params=triton_params(num_warps=4, num_stages=2),
        interpret=plan.interpret,
        name="linear_logprobs_bwd",
    )(
        hidden,
        projection,
        labels,
        lse,
        ent,
        g_lp,
        g_ent,
        g_lse,
        jnp.zeros((n, d), jnp.float32),
        jnp.zeros((d, v), jnp.float32),
    )
    return d_h[:n0].astype(hidden.dtype), d_w.astype(projection.dtype)


# ----------------------------------------------------------------------------- Pallas, TPU


def _tpu_blocks(plan: _Plan, n: int, v: int) -> tuple[int, int]:
    bn = n if n <= plan.block_rows else max(8, plan.block_rows // 8 * 8)
    bv = v if v <= plan.block_vocab else max(128, plan.block_vocab // 128 * 128)
    return bn, bv


def _tpu_params(plan: _Plan, semantics: tuple[str, ...]):
    if plan.interpret:
        return None
    from jax.experimental.pallas import tpu as pltpu

    return pltpu.CompilerParams(dimension_semantics=semantics)


def _tpu_scratch(shapes):
    from jax.experimental.pallas import tpu as pltpu

    return [pltpu.VMEM(s, jnp.float32) for s in shapes]


def _tpu_tile(h_ref, w_ref, row_block, col_block, *, bn, bv, n, v, inv_t):
    """Logits tile with edge-block padding zeroed in both operands (it may hold NaN)."""
    rows = row_block * bn + lax.broadcasted_iota(jnp.int32, (bn, 1), 0)
    cols = col_block * bv + lax.broadcasted_iota(jnp.int32, (1, bv), 1)
    h = h_ref[...]
    w = w_ref[...]
    h = jnp.where(rows < n, h, jnp.zeros_like(h))
    w = jnp.where(cols < v, w, jnp.zeros_like(w))
    return h, w, _dot(h, w) * inv_t, rows < n, cols


def _tpu_forward_kernel(
    h_ref,
    w_ref,
    y_ref,
    lp_ref,
    ent_ref,
    lse_ref,
    m_ref,
    s_ref,
    u_ref,
    a_ref,
    *,
    bn,
    bv,
    n,
    v,
    inv_t,
):
    i, j = pl.program_id(0), pl.program_id(1)

    @pl.when(j == 0)
    def _init():
        for ref, value in zip((m_ref, s_ref, u_ref, a_ref), osm.init_stats(m_ref.shape)):
            ref[...] = value

    _, _, z, _, cols = _tpu_tile(h_ref, w_ref, i, j, bn=bn, bv=bv, n=n, v=v, inv_t=inv_t)
    stats = (m_ref[...], s_ref[...], u_ref[...], a_ref[...])
    stats = osm.update_stats(stats, z, cols < v, cols == y_ref[...])
    for ref, value in zip((m_ref, s_ref, u_ref, a_ref), stats):
        ref[...] = value

    @pl.when(j == pl.num_programs(1) - 1)
    def _finish():
        lp, ent, lse = osm.finalize_stats(stats)
        lp_ref[...] = lp
        ent_ref[...] = ent
        lse_ref[...] = lse


def _tpu_forward(hidden, projection, labels, plan: _Plan) -> TokenLogprobs:
    (n, d), v = hidden.shape, projection.shape[1]
    bn, bv = _tpu_blocks(plan, n, v)
    row = pl.BlockSpec((bn, 1), lambda i, j: (i, 0))
    out = jax.ShapeDtypeStruct((n, 1), jnp.float32)
    kernel = functools.partial(
        _tpu_forward_kernel, bn=bn, bv=bv, n=n, v=v, inv_t=plan.inv_temperature
    )
    lp, ent, lse = pl.pallas_call(
        kernel,
        out_shape=(out, out, out),
        grid=(pl.cdiv(n, bn), pl.cdiv(v, bv)),
        in_specs=[
            pl.BlockSpec((bn, d), lambda i, j: (i, 0)),
            pl.BlockSpec((d, bv), lambda i, j: (0, j)),
            row,
        ],
        out_specs=(row, row, row),
        scratch_shapes=_tpu_scratch([(bn, 1)] * 4),
        compiler_params=_tpu_params(plan, ("parallel", "arbitrary")),
        interpret=plan.interpret,
        name="linear_logprobs_fwd",
    )(hidden, projection, labels[:, None])
    return TokenLogprobs(lp[:, 0], ent[:, 0], lse[:, 0])


def _tpu_cotangent(
    z, rows_ok, cols, y_ref, lse_ref, ent_ref, glp_ref, gent_ref, glse_ref, *, v, inv_t
):
    dz = osm.logits_cotangent(
        z,
        cols == y_ref[...],
        lse_ref[...],
        ent_ref[...],
        glp_ref[...],
        gent_ref[...],
        glse_ref[...],
    )
    return jnp.where(rows_ok & (cols < v), dz, 0.0) * inv_t


def _tpu_dhidden_kernel(
    h_ref,
    w_ref,
    y_ref,
    lse_ref,
    ent_ref,
    glp_ref,
    gent_ref,
    glse_ref,
    dh_ref,
    acc_ref,
    *,
    bn,
    bv,
    n,
    v,
    inv_t,
):
    i, j = pl.program_id(0), pl.program_id(1)

    @pl.when(j == 0)
    def _init():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    _, w, z, rows_ok, cols = _tpu_tile(h_ref, w_ref, i, j, bn=bn, bv=bv, n=n, v=v, inv_t=inv_t)
    dz = _tpu_cotangent(
        z, rows_ok, cols, y_ref, lse_ref, ent_ref, glp_ref, gent_ref, glse_ref, v=v, inv_t=inv_t
    )
    acc_ref[...] += _dot(dz.astype(w.dtype), w, (1, 1))

    @pl.when(j == pl.num_programs(1) - 1)
    def _finish():
        dh_ref[...] = acc_ref[...].astype(dh_ref.dtype)


def _tpu_dprojection_kernel(
    h_ref,
    w_ref,
    y_ref,
    lse_ref,
    ent_ref,
    glp_ref,
    gent_ref,
    glse_ref,
    dw_ref,
    acc_ref,
    *,
    bn,
    bv,
    n,
    v,
    inv_t,
):
    j, i = pl.program_id(0), pl.program_id(1)

    @pl.when(i == 0)
    def _init():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    h, _, z, rows_ok, cols = _tpu_tile(h_ref, w_ref, i, j, bn=bn, bv=bv, n=n, v=v, inv_t=inv_t)
    dz = _tpu_cotangent(
        z, rows_ok, cols, y_ref, lse_ref, ent_ref, glp_ref, gent_ref, glse_ref, v=v, inv_t=inv_t
    )
    acc_ref[...] += _dot(h, dz.astype(h.dtype), (0, 0))

    @pl.when(i == pl.num_programs(1) - 1)
    def _finish():
        dw_ref[...] = acc_ref[...].astype(dw_ref.dtype)


def _tpu_backward(hidden, projection, labels, out, g, plan: _Plan):
    (n, d), v = hidden.shape, projection.shape[1]
    bn, bv = _tpu_blocks(plan, n, v)
    columns = [c[:, None] for c in (labels, out.logsumexp, out.entropy, *g)]
    kw = dict(bn=bn, bv=bv, n=n, v=v, inv_t=plan.inv_temperature)

    row = pl.BlockSpec((bn, 1), lambda i, j: (i, 0))
    d_h = pl.pallas_call(
        functools.partial(_tpu_dhidden_kernel, **kw),
        out_shape=jax.ShapeDtypeStruct((n, d), hidden.dtype),
        grid=(pl.cdiv(n, bn), pl.cdiv(v, bv)),
        in_specs=[
            pl.BlockSpec((bn, d), lambda i, j: (i, 0)),
            pl.BlockSpec((d, bv), lambda i, j: (0, j)),
        ]
        + [row] * len(columns),
        out_specs=pl.BlockSpec((bn, d), lambda i, j: (i, 0)),
        scratch_shapes=_tpu_scratch([(bn, d)]),
        compiler_params=_tpu_params(plan, ("parallel", "arbitrary")),
        interpret=plan.interpret,
        name="linear_logprobs_bwd_hidden",
    )(hidden, projection, *columns)

    row_t = pl.BlockSpec((bn, 1), lambda j, i: (i, 0))
    d_w = pl.pallas_call(
        functools.partial(_tpu_dprojection_kernel, **kw),
        out_shape=jax.ShapeDtypeStruct((d, v), projection.dtype),
        grid=(pl.cdiv(v, bv), pl.cdiv(n, bn)),
        in_specs=[
            pl.BlockSpec((bn, d), lambda j, i: (i, 0)),
            pl.BlockSpec((d, bv), lambda j, i: (0, j)),
        ]
        + [row_t] * len(columns),
        out_specs=pl.BlockSpec((d, bv), lambda j, i: (0, j)),
        scratch_shapes=_tpu_scratch([(d, bv)]),
        compiler_params=_tpu_params(plan, ("parallel", "arbitrary")),
        interpret=plan.interpret,
        name="linear_logprobs_bwd_projection",
    )(hidden, projection, *columns)
    return d_h, d_w


def pallas_linear_logprobs(
    hidden: Array,  # [N, D]
    projection: Array,  # [D, V]
    labels: Array,  # [N] int token ids
    *,
    temperature: float = 1.0,
    block_rows: int | None = None,
    block_vocab: int | None = None,
    block_hidden: int | None = None,
    target: str = "gpu",
    interpret: bool = False,
) -> TokenLogprobs:
    """Logits-free log-prob/entropy/logsumexp as Pallas kernels (forward and backward).

    Args:
      hidden: [N, D] final hidden states.
      projection: [D, V] output projection.
      labels: [N] token ids.
      temperature: τ > 0 (a Python number).
      block_rows: rows per tile (GPU default 64, TPU default 256).
      block_vocab: vocabulary columns per tile (GPU default 128, TPU default 512).
      block_hidden: hidden-width slice per matmul step on GPU (default 64); the TPU
        kernels take the whole width D in one block.
      target: "gpu" (Triton) or "tpu" (Mosaic); both run on CPU with `interpret=True`.
      interpret: run the kernels in the Pallas interpreter.

    Returns:
      TokenLogprobs of [N] float32 arrays; differentiable in `hidden` and `projection`.
      On GPU, d_projection and d_hidden are summed with float32 atomic adds, so
      their last bits may vary from run to run.
    """
    _check(hidden, projection, labels, temperature)
    if target not in ("gpu", "tpu"):
        raise ValueError(f"target must be 'gpu' or 'tpu', got {target!r}")
    default_rows, default_vocab = (64, 128) if target == "gpu" else (256, 512)
    plan = _Plan(
        "pallas",
        block_rows or default_rows,
        block_vocab or default_vocab,
        block_hidden or 64,
        1.0 / float(temperature),
        target,
        interpret,
    )
    # The kernels' matmuls take one operand dtype; autodiff casts the gradients back.
    cdt = _compute_dtype(hidden, projection)
    hidden, projection = hidden.astype(cdt), projection.astype(cdt)
    return _fused(plan, hidden, projection, labels.astype(jnp.int32))
