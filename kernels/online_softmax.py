"""Tile math shared by the log-prob kernels: online softmax statistics and their cotangent.

A row of logits z ∈ R^V is read one vocabulary tile at a time. Four running
statistics per row are enough for the log-prob of the label, the entropy and
the log-normaliser:

  m = max_j z_j                      (running maximum)
  s = Σ_j exp(z_j − m)               (rescaled partition sum)
  u = Σ_j exp(z_j − m)·(z_j − m)     (rescaled first moment, relative to m)
  a = z_label                        (the label's logit)

and at the end

  lse = m + log s,   H = log s − u/s,   log p(label) = a − lse.

Keeping u relative to m avoids the cancellation of lse − Σ p·z when logits are
large. When the maximum moves from m to m', s ← e^{m−m'}·s and
u ← e^{m−m'}·(u + (m − m')·s).

The cotangent of (log p(label), H, lse) with respect to z, with p = softmax(z)
and E[z] = lse − H:

  ∂ log p(y)/∂z = onehot(y) − p,   ∂H/∂z = p·(E[z] − z),   ∂lse/∂z = p.

These functions work on one tile of values (not refs), so the chunked XLA path
and the Pallas kernels share them.
"""

from __future__ import annotations

import jax.numpy as jnp

from rewardjax.types import Array

# Finite "minus infinity" for the running maximum: exp(m - m') stays 0 or 1, never NaN,
# even when a whole tile holds -inf logits (a masked vocabulary).
NEG_INIT = float(jnp.finfo(jnp.float32).min)


def init_stats(shape: tuple[int, ...]) -> tuple[Array, Array, Array, Array]:
    """Running statistics (m, s, u, a) before any tile, each of `shape` (float32)."""
    return (
        jnp.full(shape, NEG_INIT, jnp.float32),
        jnp.zeros(shape, jnp.float32),
        jnp.zeros(shape, jnp.float32),
        jnp.zeros(shape, jnp.float32),
    )


def update_stats(
    stats: tuple[Array, Array, Array, Array],  # each [R] or [R, 1]
    z: Array,  # [R, C] float32 logits of one tile
    valid: Array,  # [R, C] or [1, C] bool: column belongs to this tile and to the vocabulary
    hit: Array,  # [R, C] bool: column is the row's label
) -> tuple[Array, Array, Array, Array]:
    """Folds one tile of logits into the running statistics (keepdims follows `stats`)."""
    m, s, u, a = stats
    keep = m.ndim == 2
    z = jnp.where(valid, z, -jnp.inf)
    m_tile = jnp.max(z, axis=1, keepdims=keep)
    m_new = jnp.maximum(m, m_tile)
    mb = m_new if keep else m_new[:, None]
    zc = z - mb
    e = jnp.exp(zc)
    alpha = jnp.exp(m - m_new)
    # e == 0 covers masked and -inf logits, whose e·(z − m) would be 0·inf.
    u_tile = jnp.sum(jnp.where(e > 0, e * zc, 0.0), axis=1, keepdims=keep)
    u = alpha * (u + (m - m_new) * s) + u_tile
    s = alpha * s + jnp.sum(e, axis=1, keepdims=keep)
    a = a + jnp.sum(jnp.where(hit & valid, z, 0.0), axis=1, keepdims=keep)
    return m_new, s, u, a


def finalize_stats(stats: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array]:
    """(log p(label), entropy, logsumexp) from the running statistics."""
    m, s, u, a = stats
    log_s = jnp.log(s)
    lse = m + log_s
    entropy = log_s - u / s
    return a - lse, entropy, lse


def logits_cotangent(
    z: Array,  # [R, C] float32 logits of one tile
    hit: Array,  # [R, C] bool: column is the row's label
    lse: Array,  # [R, 1] log-normaliser of each row
    entropy: Array,  # [R, 1] entropy of each row
    g_logprob: Array,  # [R, 1] cotangent of log p(label)
    g_entropy: Array,  # [R, 1] cotangent of the entropy
    g_lse: Array,  # [R, 1] cotangent of the log-normaliser
) -> Array:
    """d(outputs)/dz for one tile: g_lp·(onehot − p) + g_H·p·(E[z] − z) + g_lse·p."""
    p = jnp.exp(z - lse)
    mean_z = lse - entropy
    # p == 0 covers -inf logits, whose p·(E[z] − z) would be 0·inf.
    soft = jnp.where(p > 0, p * (g_lse - g_logprob + g_entropy * (mean_z - z)), 0.0)
    return jnp.where(hit, g_logprob, 0.0) + soft
