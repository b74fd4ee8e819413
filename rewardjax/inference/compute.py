"""Compute of test-time methods: tokens and an estimate of forward FLOPs.

  flops = forward_flops(config, tokens=prompt + generated, attended=pairs)

A decoder's forward pass over one token costs about 2 FLOPs per matmul weight
(every projection, the MLP and the LM head; the embedding lookup is free) plus
the attention itself: q·k and the weighted sum of v, 2·2·heads·head_dim FLOPs
per attended position in each layer ("Scaling Laws for Neural Language
Models", Kaplan et al., 2020, Table 1, with both attention matmuls counted).
A token at position t of a causal sequence attends to t positions, so a
sequence of n tokens read in one pass attends to n(n+1)/2 positions; decoding
with a KV cache attends to the same positions one token at a time.

The searches of `rewardjax.inference.search` count, per problem, the tokens
each model reads and the positions they attend to (`SearchResult`);
`search_flops` turns those counts into FLOPs for a policy and a scorer.
"""

from __future__ import annotations

import numpy as np

from rewardjax.models.config import ModelConfig

__all__ = [
    "causal_pairs",
    "forward_flops",
    "matmul_params",
    "scorer_configs",
    "scorer_flops",
    "search_flops",
]


def matmul_params(config: ModelConfig) -> int:
    """Weights a token multiplies through: the layers' projections and MLP, and the LM head."""
    d, h, k, hd = (
        config.hidden_size,
        config.num_heads,
        config.num_kv_heads,
        config.resolved_head_dim,
    )
    attention = d * h * hd + 2 * d * k * hd + h * hd * d
    mlp = 3 * d * config.intermediate_size  # gate, up, down
    return config.num_layers * (attention + mlp) + d * config.vocab_size


def causal_pairs(start, length):
    """Positions attended by `length` tokens appended after `start` cached ones.

    Σ_{i=1..length} (start + i) = length·start + length(length+1)/2; with
    start = 0, a whole sequence read in one pass. Works on arrays.
    """
    start = np.asarray(start, np.float64)
    length = np.asarray(length, np.float64)
    return length * start + length * (length + 1) / 2


def forward_flops(config: ModelConfig, *, tokens, attended):
    """FLOPs of forward passes reading `tokens` tokens that attend to `attended` positions.

    2·matmul_params·tokens + 4·layers·heads·head_dim·attended (no backward).
    """
    per_position = 4 * config.num_layers * config.num_heads * config.resolved_head_dim
    return 2.0 * matmul_params(config) * np.asarray(tokens, np.float64) + per_position * np.asarray(
        attended, np.float64
    )


def scorer_configs(scorer) -> tuple[ModelConfig, ...]:
    """The models a scorer runs: None → (), one config, or several (ψ and π_ref of an implicit PRM)."""
    if scorer is None:
        return ()
    return tuple(scorer) if isinstance(scorer, (list, tuple)) else (scorer,)


def scorer_flops(scorer, *, tokens, attended):
    """`forward_flops` summed over the models of `scorer` (see `scorer_configs`)."""
    return sum(
        (forward_flops(c, tokens=tokens, attended=attended) for c in scorer_configs(scorer)),
        np.zeros_like(np.asarray(tokens, np.float64)),
    )


def search_flops(result, policy: ModelConfig, scorer=None) -> np.ndarray:
    """[P] forward FLOPs of a `SearchResult`: the policy's prefill and decode, the scorer's passes.

    The policy reads each prompt once and each generated token once (the KV
    cache is reused across steps, forks and truncations); the scorer reads
    every scored (partial) solution whole, prompt included, in each call.
    `scorer` is the scorer's ModelConfig, a sequence of them when it runs
    several models (an implicit PRM runs ψ and π_ref), or None to leave its
    passes out (e.g. majority vote).
    """
    flops = forward_flops(
        policy,
        tokens=result.prompt_tokens + result.generated_tokens,
        attended=result.policy_attended,
    )
    return flops + scorer_flops(
        scorer, tokens=result.scorer_input_tokens, attended=result.scorer_attended
    )
