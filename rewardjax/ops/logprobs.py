"""Per-token log-probs, entropy and logsumexp, from logits or from hidden states.

Both ops accept any leading shape ([N], [B, T], ...) and flatten it for the
kernels, then restore it. `impl` picks the implementation (see
`rewardjax.ops.dispatch.resolve_impl`); all of them return the same values and
gradients up to float rounding.
"""

from __future__ import annotations

import math

from rewardjax.kernels.linear_logprob import (
    chunked_linear_logprobs,
    pallas_linear_logprobs,
    reference_linear_logprobs,
)
from rewardjax.kernels.logprob import (
    TokenLogprobs,
    chunked_token_logprobs,
    pallas_token_logprobs,
    reference_token_logprobs,
)
from rewardjax.ops.dispatch import resolve_impl
from rewardjax.types import Array


def _blocks(**blocks: int | None) -> dict[str, int]:
    return {k: v for k, v in blocks.items() if v is not None}


def _unflatten(out: TokenLogprobs, lead: tuple[int, ...]) -> TokenLogprobs:
    return TokenLogprobs(*(x.reshape(lead) for x in out))


def token_logprobs(
    logits: Array,  # [..., V] float32 or bfloat16
    labels: Array,  # [...] int token ids
    *,
    impl: str = "auto",
    block_rows: int | None = None,
    block_vocab: int | None = None,
) -> TokenLogprobs:
    """log p(label), entropy and logsumexp of each position's logits, fused.

      lse = log Σ_v e^{z_v},  log p(y) = z_y − lse,  H = lse − Σ_v p_v·z_v

    Args:
      logits: [..., V] logits (e.g. [B, T, V]).
      labels: [...] token ids, the leading shape of `logits`.
      impl: "auto" | "reference" | "chunked" | "pallas".
      block_rows: rows per tile (chunked and Pallas); the kernel default when None.
      block_vocab: vocabulary columns per tile; the kernel default when None.

    Returns:
      TokenLogprobs(logprobs, entropy, logsumexp), each float32 with the shape of
      `labels`; differentiable in `logits`.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {logits.shape} must be labels {labels.shape} plus a vocabulary axis"
        )
    lead = labels.shape
    n = math.prod(lead)
    flat_logits = logits.reshape(n, logits.shape[-1])
    flat_labels = labels.reshape(n)
    choice = resolve_impl(impl)
    blocks = _blocks(block_rows=block_rows, block_vocab=block_vocab)
    if choice.impl == "reference":
        out = reference_token_logprobs(flat_logits, flat_labels)
    elif choice.impl == "chunked":
        out = chunked_token_logprobs(flat_logits, flat_labels, **blocks)
    else:
        out = pallas_token_logprobs(
            flat_logits,
            flat_labels,
            target=choice.target,
            interpret=choice.interpret,
            **blocks,
        )
    return _unflatten(out, lead)


def token_logprobs_from_hidden(
    hidden: Array,  # [..., D] final hidden states
    projection: Array,  # [D, V] output projection
    labels: Array,  # [...] int token ids
    *,
    temperature: float = 1.0,
    impl: str = "auto",
    block_rows: int | None = None,
    block_vocab: int | None = None,
    block_hidden: int | None = None,
) -> TokenLogprobs:
    """Log-prob, entropy and logsumexp of z = hidden @ projection / τ, never holding z.

    The memory of the [tokens, V] logits is replaced by tiles of a few MB; the
    backward pass recomputes them ("Cut Your Losses in Large-Vocabulary Language
    Models"). With `impl="reference"` the logits are materialised.

    Args:
      hidden: [..., D] hidden states after the final norm (e.g. [B, T, D]).
      projection: [D, V] output projection (the transposed embedding when tied).
      labels: [...] token ids, the leading shape of `hidden`.
      temperature: τ > 0, a Python number; use the sampler's temperature so that
        the log-probs match those of the sampled distribution.
      impl: "auto" | "reference" | "chunked" | "pallas".
      block_rows, block_vocab: tile sizes; the kernel defaults when None.
      block_hidden: hidden-width slice of the GPU Pallas kernels; default when None.

    Returns:
      TokenLogprobs(logprobs, entropy, logsumexp), each float32 with the shape of
      `labels`; differentiable in `hidden` and `projection`.
    """
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"hidden {hidden.shape} must be labels {labels.shape} plus a width axis")
    lead = labels.shape
    n = math.prod(lead)
    flat_hidden = hidden.reshape(n, hidden.shape[-1])
    flat_labels = labels.reshape(n)
    choice = resolve_impl(impl)
    if choice.impl == "reference":
        out = reference_linear_logprobs(
            flat_hidden, projection, flat_labels, temperature=temperature
        )
    elif choice.impl == "chunked":
        blocks = _blocks(block_rows=block_rows, block_vocab=block_vocab)
        out = chunked_linear_logprobs(
            flat_hidden, projection, flat_labels, temperature=temperature, **blocks
        )
    else:
        blocks = _blocks(block_rows=block_rows, block_vocab=block_vocab, block_hidden=block_hidden)
        out = pallas_linear_logprobs(
            flat_hidden,
            projection,
            flat_labels,
            temperature=temperature,
            target=choice.target,
            interpret=choice.interpret,
            **blocks,
        )
    return _unflatten(out, lead)


__all__ = ["TokenLogprobs", "token_logprobs", "token_logprobs_from_hidden"]
