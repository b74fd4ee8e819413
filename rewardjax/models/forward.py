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
from rewardjax.models.transformer import Decoder, default_positions, lm_head_kernel

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
    *,
    group_size: int = 1,
) -> Array:
    """Hidden states [B, T, D] that predict each completion token.

    group_size > 1 says that rows come in groups of that many consecutive rows
    sharing one prompt (an RL rollout's G samples): each prompt then runs once
    and its keys and values serve the whole group (`shared_prompt_hidden`).
    """
    if group_size > 1:
        return shared_prompt_hidden(
            model, params, prompt_tokens, prompt_mask, tokens, mask, group_size=group_size
        )
    full_tokens, full_mask = _sequence(prompt_tokens, prompt_mask, tokens, mask)
    # Padding after the completion still gets a row of hidden states; its
    # attention mask keeps real tokens from seeing it.
    hidden = model.apply({"params": params}, full_tokens, full_mask, method="hidden_states")
    length, t = prompt_tokens.shape[1], tokens.shape[1]
    return hidden[:, length - 1 : length - 1 + t]


def shared_prompt_hidden(
    model: Decoder,
    params,
    prompt_tokens: Array,  # [B, L], rows g·G .. g·G + G - 1 equal
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    group_size: int,
) -> Array:
    """`completion_hidden` with each group's prompt run once, not G times.

    The prompt of group g is read from row g·G (the caller guarantees that the
    G rows of a group share it). Its keys and values are repeated over the
    group, so the backward pass sums the group's gradients into one prompt
    pass: the prompt's share of the work falls by a factor G. The result equals
    the unshared pass up to float rounding (the softmax over prompt and
    completion keys is taken in two parts).
    """
    rows = tokens.shape[0]
    if rows % group_size:
        raise ValueError(f"{rows} rows do not split into groups of {group_size}")
    length, t = prompt_tokens.shape[1], tokens.shape[1]
    hidden, cache = model.apply(
        {"params": params},
        prompt_tokens[::group_size],
        prompt_mask[::group_size],
        method="prefix_states",
    )
    # The prompt's last position predicts completion token 0; completion token
    # i predicts token i + 1, so the last completion token is not run.
    first = jnp.repeat(hidden[:, length - 1 :], group_size, axis=0)
    if t == 1:
        return first
    cache = jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=1), cache)
    _, full_mask = _sequence(prompt_tokens, prompt_mask, tokens[:, :-1], mask[:, :-1])
    positions = default_positions(full_mask)[:, length:]
    after = model.apply(
        {"params": params}, tokens[:, :-1], positions, full_mask, cache, method="extend_hidden"
    )
    return jnp.concatenate([first, after], axis=1)


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
    group_size: int = 1,
) -> tuple[Array, Array]:
    """(log-prob [B, T], entropy [B, T]) of completion tokens, logits divided by `temperature`.

    The temperature must equal the sampler's, so that the trainer's log-probs
    and the sampler's describe the same distribution. group_size: see
    `completion_hidden`.
    """
    hidden = completion_hidden(
        model, params, prompt_tokens, prompt_mask, tokens, mask, group_size=group_size
    )
    kernel = lm_head_kernel(model.config, params)
    out = ops.token_logprobs_from_hidden(hidden, kernel, tokens, temperature=temperature, impl=impl)
    return out.logprobs, out.entropy


def completion_logprobs_and_next(
    model: Decoder,
    params,
    prompt_tokens: Array,  # [B, L]
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    next_token: int,
    temperature: float = 1.0,
    impl: str = "auto",
    group_size: int = 1,
) -> tuple[Array, Array, Array]:
    """`completion_logprobs`, plus log π(next_token | x, y) after each row's last token.

    One forward pass over the completion with one more position, so the
    distribution after the last real token (the EOS) is read as well: LaSeR's
    last-token self-reward. That log-prob is taken at temperature 1.

    Returns:
      (logprobs [B, T], entropy [B, T], next_logprob [B]).
    """
    t = tokens.shape[1]
    hidden = completion_hidden(
        model,
        params,
        prompt_tokens,
        prompt_mask,
        jnp.pad(tokens, ((0, 0), (0, 1))),
        jnp.pad(mask, ((0, 0), (0, 1))),
        group_size=group_size,
    )  # [B, T + 1, D]: position i predicts token i
    kernel = lm_head_kernel(model.config, params)
    out = ops.token_logprobs_from_hidden(
        hidden[:, :t], kernel, tokens, temperature=temperature, impl=impl
    )
    length = jnp.sum(mask > 0, axis=-1).astype(jnp.int32)  # [B]
    after = jnp.take_along_axis(hidden, length[:, None, None], axis=1)[:, 0]  # [B, D]
    labels = jnp.full((tokens.shape[0],), next_token, jnp.int32)
    final = ops.token_logprobs_from_hidden(after, kernel, labels, impl=impl)
    return out.logprobs, out.entropy, final.logprobs


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
