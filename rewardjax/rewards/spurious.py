"""Spurious rewards: scores that carry no information about the completion."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.rewards.base import register_reward


def _batch_entropy(seed: int, prompts: Sequence[str], completions: Sequence[str]) -> list[int]:
    """256 bits from the seed and the whole batch, as 32-bit words for np.random.SeedSequence."""
    h = hashlib.sha256(f"random_reward:{int(seed)}:{len(completions)}".encode())
    for prompt, completion in zip(prompts, completions):
        # Length-prefixed, so that no two different batches give the same byte string.
        for text in (prompt, completion):
            data = text.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    digest = h.digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, len(digest), 4)]


# Batch-level (per_sample=False): scored row by row, each row's draw would be a
# fixed function of its own text, a reward the policy could learn to hit.
@register_reward("random_reward", per_sample=False)
def random_reward(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    p: float = 0.5,
    seed: int = 0,
) -> list[float]:
    """r_i ~ Bernoulli(p) drawn independently of the completion: r_i = 1[u_i < p].

    u = (u_1..u_B) is uniform noise from a generator seeded by `seed` and a
    hash of the whole batch (every prompt and completion, in order): a call is
    deterministic given its seed and rows (the same batch twice draws the same
    rewards), and each training step, whose rollouts differ, draws afresh.
    Rows draw independently of each other and of their text: identical
    completions in one batch get independent rewards, and no completion is
    rewarded more often than another. The reward must see the whole batch in
    one call, hence per_sample=False.

    Args:
      p: probability of reward 1 (the paper's γ; 0.5 in its main runs).
      seed: seed of the draws; different seeds give unrelated rewards.

    Returns:
      [B] scores in {0, 1}.

    Source: "Spurious Rewards: Rethinking Training Signals in RLVR" (Shao et
    al., 2025), random reward; "Exploration v.s. Exploitation: Rethinking
    RLVR through Clipping, Entropy, and Spurious Reward".
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_reward: p must be in [0, 1], got {p}")
    if len(prompts) != len(completions):
        raise ValueError(
            f"random_reward: {len(prompts)} prompts but {len(completions)} completions"
        )
    rng = np.random.default_rng(np.random.SeedSequence(_batch_entropy(seed, prompts, completions)))
    return (rng.random(len(completions)) < p).astype(np.float64).tolist()
