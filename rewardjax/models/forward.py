"""Model forward passes the trainers share: completion log-probs, entropy, values, scores.

A sequence is [prompt (L, left-padded) | completion (T, right-padded)]. The
hidden state at position L-1+t predicts completion token t, so completion
log-probs read hidden[:, L-1 : L-1+T]. Log-probs and entropy go through
`rewardjax.ops`, which never materialises [tokens × vocabulary] logits on the
chunked and Pallas paths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rewardjax import ops
from rewardjax.models.transformer import Decoder, lm_head_kernel

Array = jax.Array


def _sequence(prompt_tokens, prompt_mask, tokens, mask):
    full_tokens = jnp.concatenate([prompt_tokens, tokens], axis=1)
    full_mask = jnp.concatenate(
        [prompt_mask.astype(jnp.int32), (mask > 0).astype(jnp.int32)], axis=1
    )
    return full_tokens, full_mask


def completion_hidden(
    model: Decoder,
    params,
    prompt_tokens: Array,  # [B, L]
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
) -> Array:
    """Hidden states [B, T, D] that predict each completion token."""
    full_tokens, full_mask = _sequence(prompt_tokens, prompt_mask, tokens, mask)
    # Padding after the completion still gets a row of hidden states; its
    # attention mask keeps real tokens from seeing it.
    hidden = model.apply({"params": params}, full_tokens, full_mask, method="hidden_states")
    length, t = prompt_tokens.shape[1], tokens.shape[1]
    return hidden[:, length - 1 : length - 1 + t]


def completion_logprobs(
    model: Decoder,
    params,
    prompt_tokens: Array,  # [B, L]
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    temperature: float = 1.0,
    impl: str = "auto",
) -> tuple[Array, Array]:
    """(log-prob [B, T], entropy [B, T]) of completion tokens, logits divided by `temperature`.

    The temperature must equal the sampler's, so that the trainer's log-probs
    and the sampler's describe the same distribution.
    """
    hidden = completion_hidden(model, params, prompt_tokens, prompt_mask, tokens, mask)
    kernel = lm_head_kernel(model.config, params)
    out = ops.token_logprobs_from_hidden(hidden, kernel, tokens, temperature=temperature, impl=impl)
    return out.logprobs, out.entropy


def completion_values(
    model: Decoder,
    params,
    prompt_tokens: Array,
    prompt_mask: Array,
    tokens: Array,
    mask: Array,
    *,
    head: str = "value",
) -> Array:
    """Scalar head [B, T] read at the positions that predict each completion token (V(s_t))."""
    full_tokens, full_mask = _sequence(prompt_tokens, prompt_mask, tokens, mask)
    out = model.apply({"params": params}, full_tokens, full_mask)
    values = out[head] if isinstance(out, dict) else out
    length, t = prompt_tokens.shape[1], tokens.shape[1]
    return values[:, length - 1 : length - 1 + t]
