"""Decoder-only transformer for the Llama 3, Qwen2/2.5 and Qwen3 families, with shared heads.

One implementation, configured by `ModelConfig`: GQA, RoPE (with llama3 scaling),
RMSNorm, SwiGLU, optional q/k/v bias (Qwen2), optional q/k RMSNorm (Qwen3), tied
or untied embeddings. Layers are one `nn.scan` over a stacked `layers` axis, so
compile time does not grow with depth; `remat` rematerialises each block.

Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv`,
`mlp`, `layers`) so `rewardjax.parallel` can shard it by a rules table.

Ragged and left-padded batches: the caller passes `attention_mask` [B, T]; the
RoPE positions default to `cumsum(mask) - 1` so a left-padded row sees the same
positions as the unpadded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.models import lora
from rewardjax.models.config import ModelConfig

Array = jax.Array
HEAD_KINDS = ("lm", "value", "reward", "prm")
# Finite stand-in for -inf: fully masked rows (padding queries) give a uniform
# softmax instead of NaN.
_MASK_VALUE = -1e30


class KVCache(NamedTuple):
    """Per-layer keys and values, stacked on the layer axis.

    Attributes:
      k: [num_layers, B, K, Dh, S] keys at cache slots 0..S-1, stored transposed:
        a single query's scores are then a [G, Dh] × [Dh, S] product with the
        long slot axis contiguous (1.5× faster than [S, Dh] on a 2-core CPU at
        S = 1,088, benchmarks/sampler.py).
      v: [num_layers, B, K, S, Dh] values.
    """

    k: Array
    v: Array


def init_cache(config: ModelConfig, batch: int, max_length: int, dtype=None) -> KVCache:
    """An all-zero cache of `max_length` slots for `batch` rows."""
    shape = (config.num_layers, batch, config.num_kv_heads, max_length, config.resolved_head_dim)
    dtype = dtype or config.jnp_dtype
    k_shape = (*shape[:3], shape[4], shape[3])
    return KVCache(jnp.zeros(k_shape, dtype), jnp.zeros(shape, dtype))


def write_cache(
    cache: KVCache,
    new_kv: tuple[Array, Array],  # keys, values [num_layers, B, T, K, Dh] of T new tokens
    cache_index: Array | int,  # their first slot
) -> KVCache:
    """The cache with the new keys and values written at slots cache_index.. (all layers at once)."""
    k = new_kv[0].transpose(0, 1, 3, 4, 2).astype(cache.k.dtype)  # [L, B, K, Dh, T]
    v = new_kv[1].swapaxes(2, 3).astype(cache.v.dtype)  # [L, B, K, T, Dh]
    return KVCache(
        jax.lax.dynamic_update_slice(cache.k, k, (0, 0, 0, 0, cache_index)),
        jax.lax.dynamic_update_slice(cache.v, v, (0, 0, 0, cache_index, 0)),
    )


def cache_read_limits(slots: int, block: int) -> tuple[int, ...]:
    """The static cache lengths a cached attention call may read: block, 2·block, ..., slots."""
    if block < 1:
        raise ValueError(f"cache read block {block} must be >= 1")
    return tuple(min(slots, j * block) for j in range(1, -(-slots // block) + 1))


def _attend_cached(
    q: Array,  # [B, T, K, G, Dh]
    k: Array,  # [B, T, K, Dh] this call's keys
    v: Array,  # [B, T, K, Dh]
    mask: Array,  # [B, T, S] bool over all cache slots (this call's included)
    cache: tuple[Array, Array],  # all layers: [L, B, K, Dh, S], [L, B, K, S, Dh]
    layer: Array,  # this layer's index into the cache
    cache_index: Array | int | None,  # slots [0, cache_index) are cached; this call's
    # start there (None: after the whole cache, a static length)
    scale: float,
    block: int,
) -> Array:
    """Attention of T new tokens over the cached slots and themselves; output [B, T, K, G, Dh].

    Only the filled part of the cache is read: a `lax.switch` picks the
    shortest static length in `cache_read_limits` that covers cache_index, so
    a step early in a long completion does not pay for the slots still empty.
    Queries are laid out as rows [B, K, G·T, Dh], so both products are batched
    matmuls over (B, K) with the long slot axis contiguous, and the softmax over
    cached and new scores is taken without concatenating them.
    """
    k_all, v_all = cache
    if cache_index is None:  # the cache holds exactly a prefix: read all of it
        cache_index = k_all.shape[-1]
    batch, length, kv_heads, groups, head_dim = q.shape
    rows = groups * length
    dtype = q.dtype
    q = q.transpose(0, 2, 3, 1, 4).reshape(batch, kv_heads, rows, head_dim)
    # [B, T, S] → [B, 1, G·T, S]: row g·T + t masks like query t.
    mask = jnp.broadcast_to(mask[:, None], (batch, groups, length, mask.shape[2]))
    mask = mask.reshape(batch, 1, rows, -1)
    batched = ((0, 1), (0, 1))
    new_scores = jax.lax.dot_general(
        q, k.transpose(0, 2, 3, 1), (((3,), (2,)), batched), preferred_element_type=jnp.float32
    )  # [B, K, G·T, T]
    new_mask = jax.lax.dynamic_slice_in_dim(mask, cache_index, length, axis=3)
    new_scores = jnp.where(new_mask, new_scores * scale, _MASK_VALUE)
    v = v.transpose(0, 2, 1, 3)  # [B, K, T, Dh]

    def read(limit: int):
        def attend(q, new_scores, v, mask):
            k_cache = jax.lax.dynamic_slice(
                k_all, (layer, 0, 0, 0, 0), (1, batch, kv_heads, head_dim, limit)
            )[0]
            v_cache = jax.lax.dynamic_slice(
                v_all, (layer, 0, 0, 0, 0), (1, batch, kv_heads, limit, head_dim)
            )[0]
            scores = jax.lax.dot_general(
                q,
                k_cache.astype(dtype),
                (((3,), (2,)), batched),
                preferred_element_type=jnp.float32,
            )  # [B, K, G·T, limit]
            cached = mask[..., :limit] & (jnp.arange(limit) < cache_index)
            scores = jnp.where(cached, scores * scale, _MASK_VALUE)
            top = jnp.maximum(scores.max(-1, keepdims=True), new_scores.max(-1, keepdims=True))
            p_cache, p_new = jnp.exp(scores - top), jnp.exp(new_scores - top)
            total = p_cache.sum(-1, keepdims=True) + p_new.sum(-1, keepdims=True)
            out = jax.lax.dot_general(
                p_cache.astype(dtype), v_cache.astype(dtype), (((3,), (2,)), batched)
            )
            out = out + jax.lax.dot_general(p_new.astype(dtype), v, (((3,), (2,)), batched))
            return out / total.astype(dtype)  # [B, K, G·T, Dh]

        return attend

    limits = cache_read_limits(mask.shape[3], block)
    if isinstance(cache_index, int):  # a static start (a shared prefix): read exactly it
        out = read(cache_index)(q, new_scores, v, mask)
    elif len(limits) == 1:
        out = read(limits[0])(q, new_scores, v, mask)
    else:
        branch = jnp.clip((cache_index + block - 1) // block - 1, 0, len(limits) - 1)
        out = jax.lax.switch(branch, [read(limit) for limit in limits], q, new_scores, v, mask)
    return out.reshape(batch, kv_heads, groups, length, head_dim).transpose(0, 3, 1, 2, 4)


def rope_inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """[Dh/2] float32 inverse frequencies, with llama3 scaling when configured.

    Follows the HF `rope_type="llama3"` rule: wavelengths longer than
    original_len/low_freq_factor are divided by `factor`, shorter than
    original_len/high_freq_factor are kept, and the band between is a smooth mix.
    """
    dim = config.resolved_head_dim
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
    scaling = config.rope_scaling_dict
    if scaling is None or scaling.get("rope_type", scaling.get("type")) == "default":
        return inv_freq
    factor = float(scaling["factor"])
    low = float(scaling["low_freq_factor"])
    high = float(scaling["high_freq_factor"])
    original = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    mixed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return np.where(medium, mixed, scaled).astype(np.float32)


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray) -> Array:
    """Rotates x [B, T, H, Dh] by angles positions [B, T] × inv_freq (HF rotate-half layout)."""
    angles = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)  # [B, T, Dh/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


def default_positions(attention_mask: Array) -> Array:
    """Positions [B, T] from a [B, T] mask: cumsum(mask) - 1, 0 on leading padding."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def _partitioned(init, names: tuple[str, ...]):
    """`init` with logical axis names, applying no sharding constraint when unboxed.

    Parameters are placed by the jit's in/out shardings. A constraint on unboxing
    would also break under an active mesh: flax's DenseGeneral initialises (and
    unboxes) a flattened [in, out] kernel that the rank-3 names do not fit.
    """
    return nn.with_logical_partitioning(init, names, rules=())


def _dense_init(config: ModelConfig, names: tuple[str, ...]):
    return _partitioned(nn.initializers.normal(config.initializer_range), names)


def _adapted(config, name: str, x: Array, y: Array, axes_in, axes_out) -> Array:
    """y plus the LoRA update of projection `name` on its input x, when it is a target."""
    if name not in config.lora_targets:
        return y
    shape_in, shape_out = lora.projection_shapes(config, name)
    delta = lora.LoRA(config, shape_in, axes_in, shape_out, axes_out, name=name + lora.LORA_SUFFIX)
    return y + delta(x).astype(y.dtype)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · scale, statistics in float32."""

    eps: float
    dtype: Any
    param_dtype: Any
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param(
            "scale",
            _partitioned(nn.initializers.ones, (self.axis_name,)),
            (x.shape[-1],),
            self.param_dtype,
        )
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * xf.astype(self.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE, optional q/k/v bias and q/k norm."""

    config: ModelConfig
    cache_block: int = 0

    @nn.compact
    def __call__(
        self,
        x: Array,  # [B, T, D]
        layer: Array,  # this layer's index (into a cache stacked over layers)
        positions: Array,  # [B, T] int32 RoPE positions
        mask: Array,  # [B, T, S] bool: query t may attend key slot s
        cache: tuple[Array, Array] | None,  # all layers' (keys, values) or None
        cache_index: Array | int | None,  # first cache slot of this call's tokens (None:
        # the slot after the whole cache, whose length is static)
    ) -> tuple[Array, tuple[Array, Array] | None]:
        """Returns (output [B, T, D], this call's new (keys, values) [B, T, K, Dh] or None).

        The cache is only read here, by layer index and only up to its filled
        length; the caller writes the new keys and values into it once for all
        layers (`Decoder.decode`), so the scan over layers neither carries nor
        slices (copies) the whole cache.
        """
        c = self.config
        heads, kv_heads, head_dim = c.num_heads, c.num_kv_heads, c.resolved_head_dim
        common = dict(dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)

        def projection(name: str, num: int) -> Array:
            y = nn.DenseGeneral(
                (num, head_dim),
                use_bias=c.qkv_bias,
                kernel_init=_dense_init(c, ("embed", "heads", "kv")),
                bias_init=_partitioned(nn.initializers.zeros, ("heads", "kv")),
                name=name,
                **common,
            )(x)
            return _adapted(c, name, x, y, ("embed",), ("heads", "kv"))

        q = projection("q_proj", heads)  # [B, T, H, Dh]
        k = projection("k_proj", kv_heads)  # [B, T, K, Dh]
        v = projection("v_proj", kv_heads)
        if c.qk_norm:
            q = RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype, "kv", name="q_norm")(q)
            k = RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype, "kv", name="k_norm")(k)
        inv_freq = rope_inverse_frequencies(c)
        q = apply_rope(q, positions, inv_freq)
        k = apply_rope(k, positions, inv_freq)

        batch, length = q.shape[:2]
        q = q.reshape(batch, length, kv_heads, heads // kv_heads, head_dim)
        scale = head_dim**-0.5
        new_kv = None if cache is None else (k, v)
        # Nothing cached to read: no cache, a prefill at slot 0, or a cache of no
        # slots (`prefix_states`: the layers only return their keys and values).
        nothing_cached = cache is None or cache[0].shape[-1] == 0
        nothing_cached |= isinstance(cache_index, int) and cache_index == 0
        if not nothing_cached:
            block = self.cache_block or mask.shape[2]
            out = _attend_cached(q, k, v, mask, cache, layer, cache_index, scale, block)
        else:
            mask = mask[:, :, :length] if cache is not None else mask
            scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
            scores = jnp.where(mask[:, None, None], scores * scale, _MASK_VALUE)
            probs = jax.nn.softmax(scores, axis=-1).astype(c.jnp_dtype)
            out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
        out = out.reshape(batch, length, heads, head_dim)
        y = nn.DenseGeneral(
            c.hidden_size,
            axis=(-2, -1),
            use_bias=False,
            kernel_init=_dense_init(c, ("heads", "kv", "embed")),
            name="o_proj",
            **common,
        )(out)
        return _adapted(c, "o_proj", out, y, ("heads", "kv"), ("embed",)), new_kv


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x))."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.config
        common = dict(use_bias=False, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)

        def dense(name, inputs, width, axes):
            y = nn.Dense(width, kernel_init=_dense_init(c, axes), name=name, **common)(inputs)
            return _adapted(c, name, inputs, y, axes[:1], axes[1:])

        gate = dense("gate_proj", x, c.intermediate_size, ("embed", "mlp"))
        up = dense("up_proj", x, c.intermediate_size, ("embed", "mlp"))
        h = nn.with_logical_constraint(nn.silu(gate) * up, ("act_batch", "act_length", "act_mlp"))
        return dense("down_proj", h, c.hidden_size, ("mlp", "embed"))


class Block(nn.Module):
    """Pre-norm decoder block; the signature is nn.scan's (carry, scanned, *broadcast)."""

    config: ModelConfig
    cache_block: int = 0

    @nn.compact
    def __call__(self, x, layer, cache, positions, mask, cache_index):
        c = self.config
        norm = dict(eps=c.rms_norm_eps, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)
        h = RMSNorm(**norm, name="input_norm")(x)
        attn, new_kv = Attention(c, self.cache_block, name="attn")(
            h, layer, positions, mask, cache, cache_index
        )
        x = x + attn
        h = RMSNorm(**norm, name="post_attn_norm")(x)
        x = x + MLP(c, name="mlp")(h)
        x = nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))
        return x, new_kv


class ScalarHead(nn.Module):
    """Linear map hidden [B, T, D] → one float32 score per position [B, T].

    With `num_outputs` K > 1, K scores per position [B, T, K] (kernel [D, K],
    bias [K]); K = 1 keeps the scalar head's shapes (kernel [D], bias []).
    """

    config: ModelConfig
    num_outputs: int = 1

    @nn.compact
    def __call__(self, hidden: Array) -> Array:
        d, k = self.config.hidden_size, self.num_outputs
        shape, axes = ((d,), ("embed",)) if k == 1 else ((d, k), ("embed", None))
        kernel = self.param(
            "kernel",
            _partitioned(nn.initializers.normal(1.0 / np.sqrt(d + 1)), axes),
            shape,
            self.config.jnp_param_dtype,
        )
        bias = self.param("bias", nn.initializers.zeros, shape[1:], self.config.jnp_param_dtype)
        return hidden.astype(jnp.float32) @ kernel.astype(jnp.float32) + bias.astype(jnp.float32)


_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Decoder(nn.Module):
    """Decoder backbone with heads.

    Attributes:
      config: the ModelConfig.
      heads: which heads to build, any of "lm" (logits [B, T, V], float32),
        "value" and "reward" (scalar per position [B, T]; read one position with
        `gather_positions`), "prm" (a per-token logit [B, T] read at step ends).
      cache_block: cached attention (`decode` after the prefill) reads the cache
        up to the filled length rounded up to a multiple of this (0: the whole
        cache); the sampler sets it.

    `apply({"params": p}, tokens, attention_mask=...)` returns the single head's
    output, or a dict keyed by head name when several heads are built.
    """

    config: ModelConfig
    heads: tuple[str, ...] = ("lm",)
    cache_block: int = 0

    def setup(self):
        c = self.config
        unknown = [h for h in self.heads if h not in HEAD_KINDS]
        if unknown or not self.heads:
            raise ValueError(
                f"unknown heads {unknown or self.heads}; known: {', '.join(HEAD_KINDS)}"
            )
        self.embed = nn.Embed(
            c.vocab_size,
            c.hidden_size,
            embedding_init=_partitioned(
                nn.initializers.normal(c.initializer_range), ("vocab", "embed")
            ),
            dtype=c.jnp_dtype,
            param_dtype=c.jnp_param_dtype,
        )
        block = Block
        if c.remat != "none":
            block = nn.remat(Block, policy=_REMAT_POLICIES[c.remat], prevent_cse=False)
        self.layers = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
            length=c.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(c, self.cache_block, name="layers")
        self.final_norm = RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype)
        if "lm" in self.heads and not c.tie_word_embeddings:
            self.lm_head = nn.Dense(
                c.vocab_size,
                use_bias=False,
                kernel_init=_dense_init(c, ("embed", "vocab")),
                dtype=c.jnp_dtype,
                param_dtype=c.jnp_param_dtype,
            )
        for name in ("value", "reward", "prm"):
            if name in self.heads:
                outputs = c.reward_outputs if name == "reward" else 1
                setattr(self, f"{name}_head", ScalarHead(c, num_outputs=outputs))

    def _backbone(self, tokens, positions, mask, cache, cache_index):
        x = self.embed(tokens)
        x = nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))
        layers = jnp.arange(self.config.num_layers, dtype=jnp.int32)
        x, cache = self.layers(x, layers, cache, positions, mask, cache_index)
        return self.final_norm(x), cache

    def _logits(self, hidden: Array) -> Array:
        if self.config.tie_word_embeddings:
            logits = self.embed.attend(hidden)
        else:
            logits = self.lm_head(hidden)
        return logits.astype(jnp.float32)

    def _heads(self, hidden: Array):
        outputs = {}
        for name in self.heads:
            outputs[name] = (
                self._logits(hidden) if name == "lm" else getattr(self, f"{name}_head")(hidden)
            )
        return outputs[self.heads[0]] if len(self.heads) == 1 else outputs

    def hidden_states(
        self,
        tokens: Array,  # [B, T] int32
        attention_mask: Array | None = None,  # [B, T] 1 = real token
        positions: Array | None = None,  # [B, T] int32
    ) -> Array:
        """Final-normed hidden states [B, T, D] (for logits-free log-prob kernels)."""
        if attention_mask is None:
            attention_mask = jnp.ones(tokens.shape, jnp.int32)
        if positions is None:
            positions = default_positions(attention_mask)
        length = tokens.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))
        mask = causal[None] & (attention_mask[:, None, :] > 0)
        hidden, _ = self._backbone(tokens, positions, mask, None, 0)
        return hidden

    def __call__(
        self,
        tokens: Array,  # [B, T] int32
        attention_mask: Array | None = None,  # [B, T]
        positions: Array | None = None,  # [B, T]
    ):
        return self._heads(self.hidden_states(tokens, attention_mask, positions))

    def apply_heads(self, hidden: Array):
        """Head outputs from hidden states [B, T, D]."""
        return self._heads(hidden)

    def prefix_states(
        self,
        tokens: Array,  # [P, L] int32, left-padded
        attention_mask: Array,  # [P, L]
    ) -> tuple[Array, KVCache]:
        """Runs a prefix once: (final-normed hidden [P, L, D], its keys and values, L slots).

        The cache feeds `extend_hidden`, which runs rows that continue the
        prefix without recomputing it (e.g. the G completions of one prompt).
        """
        positions = default_positions(attention_mask)
        length = tokens.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))
        mask = causal[None] & (attention_mask[:, None, :] > 0)
        # A cache at slot 0 is never read: a placeholder makes the layers return their keys.
        placeholder = (jnp.zeros((0,), self.config.jnp_dtype),) * 2
        hidden, new_kv = self._backbone(tokens, positions, mask, placeholder, None)
        k, v = new_kv  # [num_layers, P, L, K, Dh]
        return hidden, KVCache(k.transpose(0, 1, 3, 4, 2), v.swapaxes(2, 3))

    def extend_hidden(
        self,
        tokens: Array,  # [B, T] int32 continuing a prefix
        positions: Array,  # [B, T] RoPE positions
        slot_mask: Array,  # [B, S + T]: 1 on the prefix's real slots and on real tokens
        prefix: KVCache,  # [num_layers, B, ..., S slots] (from `prefix_states`, per row)
    ) -> Array:
        """Final-normed hidden states [B, T] of tokens after a cached prefix (cache not written)."""
        slots, length = prefix.k.shape[-1], tokens.shape[1]
        query_slot = slots + jnp.arange(length)
        causal = jnp.arange(slots + length)[None, :] <= query_slot[:, None]  # [T, S + T]
        mask = causal[None] & (slot_mask[:, None, :] > 0)
        hidden, _ = self._backbone(tokens, positions, mask, (prefix.k, prefix.v), None)
        return hidden

    def decode(
        self,
        tokens: Array,  # [B, T] new tokens (T = prompt length at prefill, 1 per decode step)
        positions: Array,  # [B, T] RoPE positions of the new tokens
        slot_mask: Array,  # [B, S] 1 on cache slots holding real tokens (new ones included)
        cache: KVCache,
        cache_index: Array | int,  # slot of tokens[:, 0]
    ) -> tuple[Array, KVCache]:
        """Runs new tokens against a KV cache; returns (logits [B, T, V] float32, cache)."""
        length, slots = tokens.shape[1], slot_mask.shape[1]
        query_slot = cache_index + jnp.arange(length)
        causal = jnp.arange(slots)[None, :] <= query_slot[:, None]  # [T, S]
        mask = causal[None] & (slot_mask[:, None, :] > 0)
        hidden, new_kv = self._backbone(tokens, positions, mask, (cache.k, cache.v), cache_index)
        return self._logits(hidden), write_cache(cache, new_kv, cache_index)


def build(config: ModelConfig, heads: Sequence[str] = ("lm",), cache_block: int = 0) -> Decoder:
    """The linen module for `config` with the given heads (cache_block: see `Decoder`)."""
    return Decoder(config, tuple(heads), cache_block)


def init_params(config: ModelConfig, rng: Array, heads: Sequence[str] = ("lm",)) -> dict:
    """Fresh parameters (a plain pytree, logical-axis boxes removed)."""
    model = build(config, heads)
    tokens = jnp.zeros((1, 1), jnp.int32)
    variables = model.init(rng, tokens)
    return nn.unbox(variables["params"])


def logical_axes(config: ModelConfig, heads: Sequence[str] = ("lm",)) -> dict:
    """Pytree matching `init_params` whose leaves are PartitionSpecs of logical names."""
    model = build(config, heads)
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    return nn.get_partition_spec(abstract)["params"]


def lm_head_kernel(config: ModelConfig, params: dict) -> Array:
    """The output projection [D, V] (the transposed embedding when tied)."""
    if config.tie_word_embeddings:
        return params["embed"]["embedding"].T
    return params["lm_head"]["kernel"]


def gather_positions(values: Array, positions: Array) -> Array:
    """values [B, T, ...] read at one position per row, positions [B] → [B, ...]."""
    return jnp.take_along_axis(
        values, positions.reshape((-1, 1) + (1,) * (values.ndim - 2)), axis=1
    ).squeeze(1)


def last_token_positions(attention_mask: Array) -> Array:
    """Index of the last real token of each row of a [B, T] mask (right or left padded)."""
    t = attention_mask.shape[1]
    return (t - 1 - jnp.argmax(attention_mask[:, ::-1] > 0, axis=1)).astype(jnp.int32)
