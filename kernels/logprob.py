"""Fused log-prob, entropy and logsumexp of the label from logits [N, V].

Three implementations with one contract:

* `reference_token_logprobs`: pure jnp (`log_softmax` over the whole row), the
  ground truth; autodiff gives its gradient.
* `chunked_token_logprobs`: XLA; a scan over vocabulary tiles keeps an online
  logsumexp, so no [N, V] temporary is built. The backward pass is one fused
  elementwise expression for d_logits (which has the size of the input anyway).
* `pallas_token_logprobs`: Pallas. `target="gpu"` (Triton lowering) runs one
  program per row tile that loops over vocabulary tiles; `target="tpu"` (Mosaic
  lowering) puts the vocabulary tiles on a sequential grid axis and keeps the
  statistics in VMEM scratch. The backward kernel recomputes the softmax tile by
  tile from the saved logsumexp and entropy.

Every implementation is wrapped in `jax.custom_vjp` and returns float32
`TokenLogprobs(logprobs, entropy, logsumexp)`, each [N]; the gradient with respect
to the logits has their dtype (float32 or bfloat16).

Tiles that overhang the end of an axis are handled without padding the
(large) input: the last tile starts at `size − block` and the columns it shares
with the previous tile are masked out of the reductions (GPU target), or the
overhang is masked by index (TPU target, where Pallas pads edge blocks).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from rewardjax.kernels import online_softmax as osm

from rewardjax.types import Array

__all__ = [
    "TokenLogprobs",
    "chunked_token_logprobs",
    "pallas_token_logprobs",
    "reference_token_logprobs",
]


class TokenLogprobs(NamedTuple):
    """Per-token outputs of the log-prob kernels (float32, leading shape of the labels).

    Attributes:
      logprobs: log softmax(z)[label].
      entropy: H = −Σ_v p_v log p_v of the full softmax.
      logsumexp: log Σ_v exp(z_v), the log-normaliser.
    """

    logprobs: Array
    entropy: Array
    logsumexp: Array


def _check(logits: Array, labels: Array) -> None:
    chex.assert_rank(logits, 2)
    chex.assert_rank(labels, 1)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"logits {logits.shape} and labels {labels.shape} disagree on the number of tokens"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer token ids, got {labels.dtype}")


# ----------------------------------------------------------------------------- reference


def reference_token_logprobs(
    logits: Array,  # [N, V] float32 or bfloat16
    labels: Array,  # [N] int token ids in [0, V)
) -> TokenLogprobs:
    """log p(label), entropy and logsumexp by a full-row `log_softmax` (the ground truth).

      lse = log Σ_v e^{z_v},  log p(y) = z_y − lse,  H = −Σ_v p_v·log p_v

    Args:
      logits: [N, V] logits.
      labels: [N] token ids.

    Returns:
      TokenLogprobs of [N] float32 arrays.
    """
    _check(logits, labels)
    z = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(z, axis=-1)
    logp = z - lse[:, None]
    p = jnp.exp(logp)
    # 0·log 0 = 0 for masked (-inf) logits, in the value and in the gradient.
    entropy = -jnp.sum(p * jnp.where(p > 0, logp, 0.0), axis=-1)
    label_logp = jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return TokenLogprobs(label_logp, entropy, lse)


# ----------------------------------------------------------------------------- shared


def tile_start(j: Array, block: int, size: int) -> Array:
    """Start of tile j, pulled back so that the tile ends inside the axis."""
    return jnp.minimum(j * block, size - block)


def assemble_rows(tiles: Array, n: int) -> Array:
    """[n_tiles, block, ...] per-tile rows (last tile pulled back) -> [n, ...]."""
    n_tiles, block = tiles.shape[:2]
    if n_tiles == 1:
        return tiles[0]
    head = tiles[:-1].reshape((n_tiles - 1) * block, *tiles.shape[2:])
    overlap = n_tiles * block - n
    return jnp.concatenate([head, tiles[-1, overlap:]], axis=0)


def pow2_floor(x: int) -> int:
    """Largest power of two <= x (x >= 1)."""
    return 1 << (int(x).bit_length() - 1)


def triton_params(num_warps: int = 4, num_stages: int | None = None):
    """Compiler parameters that select the Triton lowering of `pallas_call` on GPU.

    Without them, a GPU `pallas_call` may be routed to Mosaic GPU, which these
    kernels are not written for.
    """
    from jax.experimental.pallas import triton as plgpu

    return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)


@dataclasses.dataclass(frozen=True)
class _Plan:
    impl: str  # "chunked" | "pallas"
    block_rows: int
    block_vocab: int
    target: str = "gpu"
    interpret: bool = False


def _forward(plan: _Plan, logits: Array, labels: Array) -> TokenLogprobs:
    if plan.impl == "chunked":
        return _chunked_forward(logits, labels, plan.block_rows, plan.block_vocab)
    if plan.target == "gpu":
        return _gpu_forward(logits, labels, plan)
    return _tpu_forward(logits, labels, plan)


def _backward(plan: _Plan, logits, labels, out: TokenLogprobs, g: TokenLogprobs) -> Array:
    if plan.impl == "chunked":
        return _elementwise_backward(logits, labels, out, g)
    if plan.target == "gpu":
        return _gpu_backward(logits, labels, out, g, plan)
    return _tpu_backward(logits, labels, out, g, plan)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(plan: _Plan, logits: Array, labels: Array) -> TokenLogprobs:
    return _forward(plan, logits, labels)


def _fused_fwd(plan, logits, labels):
    out = _forward(plan, logits, labels)
    return out, (logits, labels, out)


def _fused_bwd(plan, residuals, g):
    logits, labels, out = residuals
    g = TokenLogprobs(*(jnp.asarray(x, jnp.float32) for x in g))
    return _backward(plan, logits, labels, out, g), None


_fused.defvjp(_fused_fwd, _fused_bwd)


# ----------------------------------------------------------------------------- chunked XLA


def _chunked_forward(logits, labels, block_rows, block_vocab) -> TokenLogprobs:
    n, v = logits.shape
    bn, bv = min(block_rows, n), min(block_vocab, v)
    n_vb = pl.cdiv(v, bv)

    def row_tile(i):
        r0 = tile_start(i, bn, n)
        y = lax.dynamic_slice_in_dim(labels, r0, bn)

        def step(stats, j):
            c0 = tile_start(j, bv, v)
            z = lax.dynamic_slice(logits, (r0, c0), (bn, bv)).astype(jnp.float32)
            cols = c0 + jnp.arange(bv, dtype=jnp.int32)
            valid = (cols >= j * bv)[None, :]
            return osm.update_stats(stats, z, valid, cols[None, :] == y[:, None]), None

        stats, _ = lax.scan(step, osm.init_stats((bn,)), jnp.arange(n_vb, dtype=jnp.int32))
        return osm.finalize_stats(stats)

    tiles = lax.map(row_tile, jnp.arange(pl.cdiv(n, bn), dtype=jnp.int32))
    return TokenLogprobs(*(assemble_rows(t, n) for t in tiles))


def _elementwise_backward(logits, labels, out: TokenLogprobs, g: TokenLogprobs) -> Array:
    # One fused elementwise pass: d_logits is as large as the input, nothing else is.
    z = logits.astype(jnp.float32)
    hit = jnp.arange(logits.shape[1], dtype=jnp.int32)[None, :] == labels[:, None]
    d = osm.logits_cotangent(
        z,
        hit,
        out.logsumexp[:, None],
        out.entropy[:, None],
        g.logprobs[:, None],
        g.entropy[:, None],
        g.logsumexp[:, None],
    )
    return d.astype(logits.dtype)


def chunked_token_logprobs(
    logits: Array,  # [N, V] float32 or bfloat16
    labels: Array,  # [N] int token ids
    *,
    block_rows: int = 1024,
    block_vocab: int = 4096,
) -> TokenLogprobs:
    """Fused log-prob/entropy/logsumexp by an online logsumexp over vocabulary tiles (XLA).

    Args:
      logits: [N, V] logits; any N and V (the last tiles are pulled back and masked).
      labels: [N] token ids.
      block_rows: rows per tile (clipped to N).
      block_vocab: vocabulary columns per tile (clipped to V).

    Returns:
      TokenLogprobs of [N] float32 arrays; differentiable in `logits`.
    """
    _check(logits, labels)
    plan = _Plan("chunked", block_rows, block_vocab)
    return _fused(plan, logits, labels.astype(jnp.int32))


# ----------------------------------------------------------------------------- Pallas, GPU


def _gpu_forward_kernel(logits_ref, labels_ref, lp_ref, ent_ref, lse_ref, *, bn, bv, n, v):
    r0 = tile_start(pl.program_id(0), bn, n)
    rows = pl.ds(r0, bn)
    y = labels_ref[rows]

    def body(j, stats):
        c0 = tile_start(j, bv, v)
        z = logits_ref[rows, pl.ds(c0, bv)].astype(jnp.float32)
        cols = c0 + lax.broadcasted_iota(jnp.int32, (1, bv), 1)
        # Columns before j·bv belong to the previous tile (the last tile is pulled back).
        return osm.update_stats(stats, z, cols >= j * bv, cols == y[:, None])

    stats = lax.fori_loop(0, pl.cdiv(v, bv), body, osm.init_stats((bn,)))
    lp, ent, lse = osm.finalize_stats(stats)
    # Rows shared by two tiles are written twice with identical values.
    lp_ref[rows] = lp
    ent_ref[rows] = ent
    lse_ref[rows] = lse


def _gpu_backward_kernel(
    logits_ref, labels_ref, lse_ref, ent_ref, glp_ref, gent_ref, glse_ref, out_ref, *, bn, bv, n, v
):
    rows = pl.ds(tile_start(pl.program_id(0), bn, n), bn)
    c0 = tile_start(pl.program_id(1), bv, v)
    cols = c0 + lax.broadcasted_iota(jnp.int32, (1, bv), 1)
    z = logits_ref[rows, pl.ds(c0, bv)].astype(jnp.float32)
    d = osm.logits_cotangent(
        z,
        cols == labels_ref[rows][:, None],
        lse_ref[rows][:, None],
        ent_ref[rows][:, None],
        glp_ref[rows][:, None],
        gent_ref[rows][:, None],
        glse_ref[rows][:, None],
    )
    out_ref[rows, pl.ds(c0, bv)] = d.astype(out_ref.dtype)


def _gpu_blocks(plan: _Plan, n: int, v: int) -> tuple[int, int]:
    # Power-of-two tiles (Triton) no larger than the axis, so a pulled-back tile fits.
    return min(plan.block_rows, pow2_floor(n)), min(plan.block_vocab, pow2_floor(v))


def _gpu_forward(logits, labels, plan: _Plan) -> TokenLogprobs:
    n, v = logits.shape
    bn, bv = _gpu_blocks(plan, n, v)
    kernel = functools.partial(_gpu_forward_kernel, bn=bn, bv=bv, n=n, v=v)
    out = jax.ShapeDtypeStruct((n,), jnp.float32)
    lp, ent, lse = pl.pallas_call(
        kernel,
        out_shape=(out, out, out),
        grid=(pl.cdiv(n, bn),),
        compiler_params=triton_params(),
        interpret=plan.interpret,
        name="token_logprobs_fwd",
    )(logits, labels)
    return TokenLogprobs(lp, ent, lse)


def _gpu_backward(logits, labels, out: TokenLogprobs, g: TokenLogprobs, plan: _Plan) -> Array:
    n, v = logits.shape
    bn, bv = _gpu_blocks(plan, n, v)
    kernel = functools.partial(_gpu_backward_kernel, bn=bn, bv=bv, n=n, v=v)
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct(logits.shape, logits.dtype),
        grid=(pl.cdiv(n, bn), pl.cdiv(v, bv)),
        compiler_params=triton_params(),
        interpret=plan.interpret,
        name="token_logprobs_bwd",
    )(logits, labels, out.logsumexp, out.entropy, g.logprobs, g.entropy, g.logsumexp)


# ----------------------------------------------------------------------------- Pallas, TPU


def _tpu_blocks(plan: _Plan, n: int, v: int) -> tuple[int, int]:
    # Mosaic tiles: rows a multiple of 8 and columns a multiple of 128, or the full axis.
    bn = n if n <= plan.block_rows else max(8, plan.block_rows // 8 * 8)
    bv = v if v <= plan.block_vocab else max(128, plan.block_vocab // 128 * 128)
    return bn, bv


def _tpu_params(plan: _Plan, semantics: tuple[str, ...]):
    if plan.interpret:
        return None
    from jax.experimental.pallas import tpu as pltpu

    return pltpu.CompilerParams(dimension_semantics=semantics)


def _tpu_scratch(shape, count):
    from jax.experimental.pallas import tpu as pltpu

    return [pltpu.VMEM(shape, jnp.float32) for _ in range(count)]


def _tpu_forward_kernel(
    logits_ref, labels_ref, lp_ref, ent_ref, lse_ref, m_ref, s_ref, u_ref, a_ref, *, bv, v
):
    j = pl.program_id(1)

    @pl.when(j == 0)
    def _init():
        for ref, value in zip((m_ref, s_ref, u_ref, a_ref), osm.init_stats(m_ref.shape)):
            ref[...] = value

    z = logits_ref[...].astype(jnp.float32)
    cols = j * bv + lax.broadcasted_iota(jnp.int32, z.shape, 1)
    stats = (m_ref[...], s_ref[...], u_ref[...], a_ref[...])
    # Columns past V are padding of the edge block.
    stats = osm.update_stats(stats, z, cols < v, cols == labels_ref[...])
    for ref, value in zip((m_ref, s_ref, u_ref, a_ref), stats):
        ref[...] = value

    @pl.when(j == pl.num_programs(1) - 1)
    def _finish():
        lp, ent, lse = osm.finalize_stats(stats)
        lp_ref[...] = lp
        ent_ref[...] = ent
        lse_ref[...] = lse


def _tpu_forward(logits, labels, plan: _Plan) -> TokenLogprobs:
    n, v = logits.shape
    bn, bv = _tpu_blocks(plan, n, v)
    row = pl.BlockSpec((bn, 1), lambda i, j: (i, 0))
    out = jax.ShapeDtypeStruct((n, 1), jnp.float32)
    lp, ent, lse = pl.pallas_call(
        functools.partial(_tpu_forward_kernel, bv=bv, v=v),
        out_shape=(out, out, out),
        grid=(pl.cdiv(n, bn), pl.cdiv(v, bv)),
        in_specs=[pl.BlockSpec((bn, bv), lambda i, j: (i, j)), row],
        out_specs=(row, row, row),
        scratch_shapes=_tpu_scratch((bn, 1), 4),
        compiler_params=_tpu_params(plan, ("parallel", "arbitrary")),
        interpret=plan.interpret,
        name="token_logprobs_fwd",
    )(logits, labels[:, None])
    return TokenLogprobs(lp[:, 0], ent[:, 0], lse[:, 0])


def _tpu_backward_kernel(
    logits_ref, labels_ref, lse_ref, ent_ref, glp_ref, gent_ref, glse_ref, out_ref, *, bv
):
    z = logits_ref[...].astype(jnp.float32)
    cols = pl.program_id(1) * bv + lax.broadcasted_iota(jnp.int32, z.shape, 1)
    d = osm.logits_cotangent(
        z,
        cols == labels_ref[...],
        lse_ref[...],
        ent_ref[...],
        glp_ref[...],
        gent_ref[...],
        glse_ref[...],
    )
    # Edge-block padding is dropped by Pallas when the block is written back.
    out_ref[...] = d.astype(out_ref.dtype)


def _tpu_backward(logits, labels, out: TokenLogprobs, g: TokenLogprobs, plan: _Plan) -> Array:
    n, v = logits.shape
    bn, bv = _tpu_blocks(plan, n, v)
    tile = pl.BlockSpec((bn, bv), lambda i, j: (i, j))
    row = pl.BlockSpec((bn, 1), lambda i, j: (i, 0))
    columns = (labels, out.logsumexp, out.entropy, g.logprobs, g.entropy, g.logsumexp)
    return pl.pallas_call(
        functools.partial(_tpu_backward_kernel, bv=bv),
        out_shape=jax.ShapeDtypeStruct(logits.shape, logits.dtype),
        grid=(pl.cdiv(n, bn), pl.cdiv(v, bv)),
        in_specs=[tile] + [row] * len(columns),
        out_specs=tile,
        compiler_params=_tpu_params(plan, ("parallel", "parallel")),
        interpret=plan.interpret,
        name="token_logprobs_bwd",
    )(logits, *(c[:, None] for c in columns))


def pallas_token_logprobs(
    logits: Array,  # [N, V] float32 or bfloat16
    labels: Array,  # [N] int token ids
    *,
    block_rows: int | None = None,
    block_vocab: int | None = None,
    target: str = "gpu",
    interpret: bool = False,
) -> TokenLogprobs:
    """Fused log-prob/entropy/logsumexp as Pallas kernels (forward and backward).

    Args:
      logits: [N, V] logits; any N and V.
      labels: [N] token ids.
      block_rows: rows per tile (GPU default 16, TPU default 256).
      block_vocab: vocabulary columns per tile (GPU default 512, TPU default 2048).
      target: "gpu" (Triton lowering) or "tpu" (Mosaic lowering); both run on CPU
        with `interpret=True`.
      interpret: run the kernels in the Pallas interpreter.

    Returns:
      TokenLogprobs of [N] float32 arrays; differentiable in `logits`.
    """
    _check(logits, labels)
    if target not in ("gpu", "tpu"):
        raise ValueError(f"target must be 'gpu' or 'tpu', got {target!r}")
    default_rows, default_vocab = (16, 512) if target == "gpu" else (256, 2048)
    plan = _Plan(
        "pallas",
        block_rows or default_rows,
        block_vocab or default_vocab,
        target,
        interpret,
    )
    return _fused(plan, logits, labels.astype(jnp.int32))
