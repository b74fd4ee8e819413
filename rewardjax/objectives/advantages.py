"""Advantage estimators: outcome rewards [B] or token rewards [B, T] -> advantages.

Groups. Rows are group-contiguous (row = p·G + g). Pass either
`group_size=G` (static; B must be a multiple of G) or `group_id` [B] int
(ragged groups; ids in [0, B)). Statistics use segment ops over the groups.

Conventions (mechanisms.md §2):
  * Group std uses ddof = 1 (verl, TRL), configurable with `ddof`.
  * A group whose valid rewards are all equal (zero variance) gets A = 0
    exactly, never NaN, in every group-relative estimator.
  * `valid` [B] (1.0 = scored) marks unscorable rows (a None reward): they get
    A = 0 and are excluded from every statistic (as in TRL).
  * A group of size 1 raises unless `allow_singleton=True`, which applies verl
    semantics (group mean 0, std 1, so A = r). The check runs whenever the group
    layout is known outside jit (`group_size`, or a concrete `group_id`); under
    jit with a traced `group_id` it cannot raise, and singleton rows then get
    A = 0 unless `allow_singleton`.

Outcome estimators return [B] float32; broadcast with `broadcast_to_tokens`.
Token-level estimators (`gae`, `reinforce_pp`, `reinforce_pp_baseline`,
`remax`, `token_reward_returns`) return [B, T] float32 (0 on masked tokens).
Every output is stop-gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.objectives.aggregation import f32, masked_whiten, safe_denominator
from rewardjax.registry import ADVANTAGES, CURATION
from rewardjax.types import Array

__all__ = [
    "batch_std_norm",
    "broadcast_to_tokens",
    "drgrpo_group_center",
    "gae",
    "grpo_group_norm",
    "grpo_passk",
    "last_token_index",
    "opo_length_baseline",
    "outcome_to_token_rewards",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "remax",
    "reverse_discounted_cumsum",
    "rloo",
    "token_reward_returns",
    "zero_variance_policy",
]

sg = jax.lax.stop_gradient


# --------------------------------------------------------------------------- helpers


def broadcast_to_tokens(
    advantages: Array,  # [B]
    mask: Array,  # [B, T]
) -> Array:
    """A [B] -> A·mask [B, T] (float32)."""
    chex.assert_rank([advantages, mask], [1, 2])
    chex.assert_equal_shape_prefix([advantages, mask], 1)
    return jnp.where(f32(mask) > 0, f32(advantages)[:, None], 0.0)


def last_token_index(mask: Array) -> Array:  # [B, T] -> [B] int32
    """Index of the last valid token of each row (0 for an empty row)."""
    chex.assert_rank(mask, 2)
    t = mask.shape[1]
    positions = jnp.arange(t, dtype=jnp.int32)[None, :]
    return jnp.max(jnp.where(mask > 0, positions, 0), axis=-1)


def outcome_to_token_rewards(
    rewards: Array,  # [B] outcome reward
    mask: Array,  # [B, T]
) -> Array:
    """Places each outcome reward on its row's last valid token: [B] -> [B, T].

    Empty rows get no reward.
    """
    chex.assert_rank([rewards, mask], [1, 2])
    mask = f32(mask)
    t = mask.shape[1]
    last = last_token_index(mask)
    one_hot = jax.nn.one_hot(last, t, dtype=jnp.float32) * (jnp.sum(mask, -1) > 0)[:, None]
    return one_hot * f32(rewards)[:, None]


def reverse_discounted_cumsum(
    x: Array,  # [B, L] per-position rewards
    mask: Array,  # [B, L]
    *,
    gamma: float = 1.0,
) -> Array:
    """G_t = x_t + γ·G_{t'} over valid positions, t' the next valid position.

    A reverse `lax.scan` over the last axis; masked positions output 0 and carry
    the running return unchanged (so observation tokens inside a response do not
    break the recursion). Positions after a row's last valid one contribute 0.
    """
    chex.assert_rank([x, mask], 2)
    chex.assert_equal_shape([x, mask])
    x, valid = f32(x), f32(mask) > 0

    def step(carry, inputs):
        x_t, v_t = inputs
        g = x_t + gamma * carry
        return jnp.where(v_t, g, carry), jnp.where(v_t, g, 0.0)

    init = jnp.zeros(x.shape[0], jnp.float32)
    _, out = jax.lax.scan(step, init, (x.T, valid.T), reverse=True)
    return out.T


class _Groups(NamedTuple):
    ids: Array  # [B] int32
    num_segments: int


def _groups(rewards: Array, group_id, group_size, allow_singleton: bool) -> _Groups:
    b = rewards.shape[0]
    if group_size is not None:
        if group_id is not None:
            raise ValueError("pass group_id or group_size, not both")
        if group_size < 1 or b % group_size:
            raise ValueError(f"group_size={group_size} does not divide the batch of {b} rows")
        if group_size == 1 and not allow_singleton:
            raise ValueError(
                "group_size=1: group-relative advantages need G ≥ 2 (set allow_singleton)"
            )
        return _Groups(jnp.arange(b, dtype=jnp.int32) // group_size, b // group_size)
    if group_id is None:
        raise ValueError("group-relative advantages need group_id [B] or group_size")
    chex.assert_shape(group_id, (b,))
    if not isinstance(group_id, jax.core.Tracer) and not allow_singleton:
        counts = np.bincount(np.asarray(group_id).astype(np.int64).ravel())
        if np.any(counts == 1):
            raise ValueError(
                f"group(s) {np.flatnonzero(counts == 1).tolist()} have a single row: "
                "group-relative advantages need G ≥ 2 (set allow_singleton)"
            )
    return _Groups(jnp.asarray(group_id, jnp.int32), b)


class _GroupStats(NamedTuple):
    mean: Array  # [B] group mean of valid rewards, per row
    std: Array  # [B]
    count: Array  # [B] valid rows in the row's group
    zero_var: Array  # [B] bool: all valid rewards of the group are equal
    singleton: Array  # [B] bool: exactly one valid row


def _group_stats(rewards: Array, valid: Array, groups: _Groups, ddof: int) -> _GroupStats:
    ids, n = groups
    seg = lambda x: jax.ops.segment_sum(x, ids, num_segments=n)  # noqa: E731
    count = seg(valid)
    mean = seg(valid * rewards) / safe_denominator(count)
    dev = jnp.where(valid > 0, rewards - mean[ids], 0.0)
    var = seg(jnp.square(dev)) / safe_denominator(count - ddof)
    hi = jax.ops.segment_max(jnp.where(valid > 0, rewards, -jnp.inf), ids, num_segments=n)
    lo = jax.ops.segment_min(jnp.where(valid > 0, rewards, jnp.inf), ids, num_segments=n)
    return _GroupStats(
        mean=mean[ids],
        std=jnp.sqrt(var)[ids],
        count=count[ids],
        zero_var=(hi == lo)[ids],
        singleton=(count == 1)[ids],
    )


def _prepare(rewards, group_id, group_size, valid, allow_singleton):
    chex.assert_rank(rewards, 1)
    rewards = sg(f32(rewards))
    valid = jnp.ones_like(rewards) if valid is None else f32(valid)
    chex.assert_equal_shape([rewards, valid])
    rewards = jnp.where(valid > 0, rewards, 0.0)
    groups = _groups(rewards, group_id, group_size, allow_singleton)
    return rewards, valid, groups


def _finalize(adv, rewards, valid, stats, allow_singleton, singleton_value=None):
    """Zero-variance groups -> 0; singletons -> verl semantics or 0; invalid rows -> 0."""
    adv = jnp.where(stats.zero_var, 0.0, adv)
    single = rewards if singleton_value is None else singleton_value
    adv = jnp.where(stats.singleton, single if allow_singleton else 0.0, adv)
    return sg(jnp.where(valid > 0, adv, 0.0))


# --------------------------------------------------------------------------- outcome estimators


@ADVANTAGES.register("grpo_group_norm")
def grpo_group_norm(
    rewards: Array,  # [B] outcome rewards
    group_id: Array | None = None,  # [B] int group of each row
    *,
    group_size: int | None = None,
    valid: Array | None = None,  # [B] 1.0 = scored
    scale_by_std: bool = True,
    eps: float = 1e-6,
    ddof: int = 1,
    allow_singleton: bool = False,
) -> Array:
    """Group-normalized advantage (GRPO): reward minus group mean, over group std.

      A_i = (r_i − mean_g)/(std_g + ε)    (scale_by_std=False: A_i = r_i − mean_g)

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or pass group_size for contiguous groups).
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows; unscored rows get 0 and are excluded.
      scale_by_std: divide by the group std (False = Dr.GRPO centring).
      eps: ε (verl 1e-6, TRL 1e-4, OpenRLHF 1e-9).
      ddof: delta degrees of freedom of the std (1: verl, TRL).
      allow_singleton: accept G = 1 with A = r.

    Returns:
      [B] float32 advantages; exactly 0 for zero-variance groups.

    Source: "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
    Language Models" (GRPO); verl `grpo`, OpenRLHF `group_norm`, TRL.
    """
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, allow_singleton)
    stats = _group_stats(rewards, valid, groups, ddof)
    adv = rewards - stats.mean
    if scale_by_std:
        adv = adv / (stats.std + eps)
    return _finalize(adv, rewards, valid, stats, allow_singleton)


@ADVANTAGES.register("drgrpo_group_center")
def drgrpo_group_center(
    rewards: Array,  # [B]
    group_id: Array | None = None,  # [B]
    *,
    group_size: int | None = None,
    valid: Array | None = None,
    allow_singleton: bool = False,
) -> Array:
    """Group-centred advantage without std scaling (Dr.GRPO).

      A_i = r_i − mean_g

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or group_size).
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows.
      allow_singleton: accept G = 1 with A = r.

    Returns:
      [B] float32 advantages; exactly 0 for zero-variance groups.

    Source: "Understanding R1-Zero-Like Training: A Critical Perspective"
    (Dr.GRPO); verl `norm_adv_by_std_in_grpo=False`, OpenRLHF `dr_grpo`, TRL
    `scale_rewards=none`.
    """
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, allow_singleton)
    stats = _group_stats(rewards, valid, groups, 1)
    return _finalize(rewards - stats.mean, rewards, valid, stats, allow_singleton)


@ADVANTAGES.register("batch_std_norm")
def batch_std_norm(
    rewards: Array,  # [B]
    group_id: Array | None = None,  # [B]
    *,
    group_size: int | None = None,
    valid: Array | None = None,
    eps: float = 1e-4,
    ddof: int = 1,
    allow_singleton: bool = False,
) -> Array:
    """Group-centred reward over the batch std.

      A_i = (r_i − mean_g)/(std_batch + ε)

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or group_size).
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows (the batch std uses valid rows only).
      eps: ε (1e-4).
      ddof: delta degrees of freedom of the batch std.
      allow_singleton: accept G = 1 with A = r/(std_batch + ε).

    Returns:
      [B] float32 advantages; exactly 0 for zero-variance groups.

    Source: TRL `scale_rewards=batch` ("PPO Lite" in "Part I: Tricks or Traps? A
    Deep Dive into RL for LLM Reasoning").
    """
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, allow_singleton)
    stats = _group_stats(rewards, valid, groups, ddof)
    n = jnp.sum(valid)
    mean = jnp.sum(valid * rewards) / safe_denominator(n)
    var = jnp.sum(valid * jnp.square(rewards - mean)) / safe_denominator(n - ddof)
    scale = 1.0 / (jnp.sqrt(var) + eps)
    adv = (rewards - stats.mean) * scale
    return _finalize(adv, rewards, valid, stats, allow_singleton, rewards * scale)


@ADVANTAGES.register("rloo")
def rloo(
    rewards: Array,  # [B]
    group_id: Array | None = None,  # [B]
    *,
    group_size: int | None = None,
    valid: Array | None = None,
    allow_singleton: bool = False,
) -> Array:
    """REINFORCE leave-one-out: reward minus the mean of the other rows of the group.

      A_i = r_i − mean_{j≠i} r_j = G/(G−1)·(r_i − mean_g)

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or group_size).
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows; G counts valid rows only (TRL excludes None).
      allow_singleton: accept G = 1 with A = r.

    Returns:
      [B] float32 advantages; exactly 0 for zero-variance groups.

    Source: "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
    from Human Feedback in LLMs" (RLOO); verl, OpenRLHF, TRL.
    """
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, allow_singleton)
    stats = _group_stats(rewards, valid, groups, 1)
    g = stats.count
    adv = g / safe_denominator(g - 1.0) * (rewards - stats.mean)
    return _finalize(adv, rewards, valid, stats, allow_singleton)


@ADVANTAGES.register("opo_length_baseline")
def opo_length_baseline(
    rewards: Array,  # [B]
    group_id: Array | None = None,  # [B]
    *,
    mask: Array,  # [B, T] gives the lengths |y|
    group_size: int | None = None,
    valid: Array | None = None,
    allow_singleton: bool = False,
) -> Array:
    """Length-weighted group baseline (the optimal baseline for on-policy sequence rewards).

      b_g = Σ_j |y_j|·r_j / Σ_j |y_j|;   A_i = r_i − b_g

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or group_size).
      mask: [B, T] completion mask; |y| = Σ_t mask.
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows.
      allow_singleton: accept G = 1 with A = r.

    Returns:
      [B] float32 advantages; equal lengths reduce to group centring; exactly 0
      for zero-variance groups.

    Source: "On-Policy RL with Optimal Reward Baseline" (OPO); verl `opo`.
    """
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, allow_singleton)
    chex.assert_rank(mask, 2)
    chex.assert_equal_shape_prefix([rewards, mask], 1)
    stats = _group_stats(rewards, valid, groups, 1)
    lengths = jnp.sum(f32(mask), axis=-1) * valid
    ids, n = groups
    num = jax.ops.segment_sum(lengths * rewards, ids, num_segments=n)
    den = jax.ops.segment_sum(lengths, ids, num_segments=n)
    baseline = jnp.where(den > 0, num / safe_denominator(den), 0.0)[ids]
    baseline = jnp.where(den[ids] > 0, baseline, stats.mean)
    return _finalize(rewards - baseline, rewards, valid, stats, allow_singleton)


@ADVANTAGES.register("grpo_passk")
def grpo_passk(
    rewards: Array,  # [B]
    group_id: Array | None = None,  # [B]
    *,
    group_size: int | None = None,
    valid: Array | None = None,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    ddof: int = 1,
) -> Array:
    """Pass@k advantage: only the best row of each group learns, by its lead over the runner-up.

      A_{argmax} = (r_max − r_2nd)/(std_g + ε);  A_i = 0 for every other row

    Ties for the maximum give 0 (r_max = r_2nd); the first best row is the argmax.

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or group_size). G ≥ 2 always.
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows.
      scale_by_std: divide by the group std.
      eps: ε (1e-6).
      ddof: delta degrees of freedom of the std.

    Returns:
      [B] float32 advantages.

    Source: verl `grpo_passk` (pass@k training).
    """
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, False)
    stats = _group_stats(rewards, valid, groups, ddof)
    ids, n = groups
    b = rewards.shape[0]
    masked = jnp.where(valid > 0, rewards, -jnp.inf)
    best = jax.ops.segment_max(masked, ids, num_segments=n)
    rows = jnp.arange(b, dtype=jnp.int32)
    is_best_value = masked == best[ids]
    argmax = jax.ops.segment_min(jnp.where(is_best_value, rows, b), ids, num_segments=n)
    is_argmax = rows == argmax[ids]
    second = jax.ops.segment_max(jnp.where(is_argmax, -jnp.inf, masked), ids, num_segments=n)
    lead = jnp.where(jnp.isfinite(second[ids]), best[ids] - second[ids], 0.0)
    if scale_by_std:
        lead = lead / (stats.std + eps)
    adv = jnp.where(is_argmax, lead, 0.0)
    adv = jnp.where(stats.zero_var | stats.singleton, 0.0, adv)
    return sg(jnp.where(valid > 0, adv, 0.0))


# --------------------------------------------------------------------------- token-level estimators


@ADVANTAGES.register("token_reward_returns")
def token_reward_returns(
    token_rewards: Array,  # [B, T] per-token rewards (e.g. from credit.py)
    mask: Array,  # [B, T]
    *,
    gamma: float = 1.0,
) -> Array:
    """Reward-to-go of per-token rewards (reverse discounted cumsum).

      G_t = r_t + γ·G_{t+1}   (reverse lax.scan; masked tokens carry G unchanged)

    With the reward only on the last token (γ = 1) every token gets the outcome.

    Args:
      token_rewards: [B, T] per-token rewards.
      mask: [B, T] 1.0 on completion tokens.
      gamma: γ (1).

    Returns:
      [B, T] float32 returns, 0 on masked tokens.

    Source: verl token-level rewards, PRIME ("Process Reinforcement through
    Implicit Rewards").
    """
    return sg(reverse_discounted_cumsum(sg(token_rewards), mask, gamma=gamma))


@ADVANTAGES.register("gae")
def gae(
    token_rewards: Array,  # [B, T] outcome at the last token (− β·KL_t if KL is in the reward)
    values: Array,  # [B, T] critic values V_t
    mask: Array,  # [B, T]
    *,
    gamma: float = 1.0,
    lam: float = 1.0,
    whiten: bool = True,
) -> tuple[Array, Array]:
    """Generalized advantage estimation by a reverse lax.scan over T.

      δ_t = r_t + γ·V_{t+1} − V_t;   A_t = δ_t + γλ·A_{t+1};   R_t = A_t + V_t;   A ← whiten(A)

    "t + 1" is the next valid token: the scan carries (V, A) across masked
    tokens, and both are 0 after a row's last valid token.

    Args:
      token_rewards: [B, T] per-token rewards (`outcome_to_token_rewards`, then
        `kl_in_reward`).
      values: [B, T] critic values.
      mask: [B, T] 1.0 on completion tokens.
      gamma: γ (1: verl, OpenRLHF).
      lam: λ (1: verl, OpenRLHF).
      whiten: masked whitening of A over the batch (R is computed before it).

    Returns:
      (advantages [B, T], returns [B, T]), float32, 0 on masked tokens.

    Source: "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation" (Schulman et al., 2016); verl, OpenRLHF, tunix.
    """
    chex.assert_rank([token_rewards, values, mask], 2)
    chex.assert_equal_shape([token_rewards, values, mask])
    r, v, valid = sg(f32(token_rewards)), sg(f32(values)), f32(mask) > 0

    def step(carry, inputs):
        next_value, next_adv = carry
        r_t, v_t, m_t = inputs
        delta = r_t + gamma * next_value - v_t
        adv = delta + gamma * lam * next_adv
        new_carry = (jnp.where(m_t, v_t, next_value), jnp.where(m_t, adv, next_adv))
        return new_carry, jnp.where(m_t, adv, 0.0)

    zeros = jnp.zeros(r.shape[0], jnp.float32)
    _, adv = jax.lax.scan(step, (zeros, zeros), (r.T, v.T, valid.T), reverse=True)
    adv = adv.T
    returns = jnp.where(valid, adv + v, 0.0)
    if whiten:
        adv = masked_whiten(adv, mask)
    return sg(adv), sg(returns)


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp(
    token_rewards: Array,  # [B, T] outcome at the last token, KL-in-reward penalties included
    mask: Array,  # [B, T]
    *,
    gamma: float = 1.0,
    scale_by_std: bool = True,
) -> Array:
    """REINFORCE++: discounted reward-to-go, whitened over the whole batch.

      G_t = r_t + γ·G_{t+1} (per row);   A = masked batch whiten(G)

    Args:
      token_rewards: [B, T] per-token rewards.
      mask: [B, T] 1.0 on completion tokens.
      gamma: γ (1).
      scale_by_std: divide by the batch std (False: centre only).

    Returns:
      [B, T] float32 advantages, 0 on masked tokens.

    Source: "REINFORCE++: A Simple and Efficient Approach for Aligning Large
    Language Models"; verl `reinforce_plus_plus`, OpenRLHF `reinforce`.
    """
    chex.assert_rank([token_rewards, mask], 2)
    returns = reverse_discounted_cumsum(sg(token_rewards), mask, gamma=gamma)
    return sg(masked_whiten(returns, mask, scale=scale_by_std))


@ADVANTAGES.register("reinforce_pp_baseline")
def reinforce_pp_baseline(
    rewards: Array,  # [B] outcome rewards
    group_id: Array | None = None,  # [B]
    *,
    mask: Array,  # [B, T]
    token_rewards: Array | None = None,  # [B, T] outcome at the last token (− β·KL_t)
    group_size: int | None = None,
    valid: Array | None = None,
    gamma: float = 1.0,
    scale_by_std: bool = True,
    allow_singleton: bool = False,
) -> Array:
    """REINFORCE++ with a group-mean baseline, then batch whitening.

      r̃_t = r_t − 1[t = last]·mean_g(r);   G_t = r̃_t + γ·G_{t+1};   A = masked batch whiten(G)

    The group mean of the outcome rewards is subtracted on each row's last token
    (where the outcome sits); with no KL penalty this is the whitened (r_i − mean_g)
    broadcast over the row.

    Args:
      rewards: [B] outcome rewards (for the group baseline).
      group_id: [B] int group ids (or group_size).
      mask: [B, T] 1.0 on completion tokens.
      token_rewards: [B, T] per-token rewards as for `reinforce_pp`: the outcome on
        the last token plus KL-in-reward penalties; `outcome_to_token_rewards(rewards)`
        when None.
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows.
      gamma: γ (1).
      scale_by_std: divide by the batch std (False: OpenRLHF `no_std_norm`, centre only).
      allow_singleton: accept G = 1.

    Returns:
      [B, T] float32 advantages; masked mean 0 (and std 1 with scale_by_std).

    Source: "REINFORCE++: …"; verl `reinforce_plus_plus_baseline`, OpenRLHF
    `reinforce_baseline`.
    """
    centred = drgrpo_group_center(
        rewards, group_id, group_size=group_size, valid=valid, allow_singleton=allow_singleton
    )
    # baseline = r − centred, so a zero-variance group's last token is r − r = 0 exactly.
    baseline = sg(f32(rewards)) - centred
    if token_rewards is None:
        token_rewards = outcome_to_token_rewards(rewards, mask)
    chex.assert_equal_shape([token_rewards, mask])
    per_token = sg(f32(token_rewards)) - outcome_to_token_rewards(baseline, mask)
    returns = reverse_discounted_cumsum(per_token, mask, gamma=gamma)
    return sg(masked_whiten(returns, mask, scale=scale_by_std))


@ADVANTAGES.register("remax")
def remax(
    token_rewards: Array,  # [B, T] outcome at the last token (− β·KL if in the reward)
    baseline_rewards: Array,  # [B] reward of the greedy rollout of each row's prompt
    mask: Array,  # [B, T]
) -> Array:
    """ReMax: reward-to-go minus the reward of one greedy rollout per prompt.

      A_{i,t} = Σ_{k≥t} r_{i,k} − b_p

    Args:
      token_rewards: [B, T] per-token rewards of the sampled rollouts.
      baseline_rewards: [B] reward of the greedy rollout of the row's prompt
        (repeat it over the prompt's rows).
      mask: [B, T] 1.0 on completion tokens.

    Returns:
      [B, T] float32 advantages, 0 on masked tokens.

    Source: "ReMax: A Simple, Effective, and Efficient Reinforcement Learning
    Method for Aligning Large Language Models"; verl `remax`.
    """
    chex.assert_rank([token_rewards, baseline_rewards, mask], [2, 1, 2])
    returns = reverse_discounted_cumsum(sg(token_rewards), mask)
    return sg(jnp.where(f32(mask) > 0, returns - sg(f32(baseline_rewards))[:, None], 0.0))


# --------------------------------------------------------------------------- zero-variance policy

_ZERO_VARIANCE_MODES = ("keep", "mask")


# A row-weight rule, not an advantage estimator: selecting it as `advantage.name`
# would train with A ≡ 1, so it lives with the curation rules.
@CURATION.register("zero_variance_policy")
def zero_variance_policy(
    rewards: Array,  # [B]
    group_id: Array | None = None,  # [B]
    *,
    group_size: int | None = None,
    valid: Array | None = None,
    mode: str = "keep",
) -> tuple[Array, dict[str, Array]]:
    """What to do with groups whose rewards are all equal (their advantage is 0).

      keep: row weight 1 (the rows still count in `token_mean` and the KL term)
      mask: row weight 0 for zero-variance groups (dropped from loss and normalizers)

    Multiply the loss mask by the row weight before computing losses and
    global counts. Regenerating such groups instead ("resample") is the
    `dynamic_sampling` curation rule.

    Args:
      rewards: [B] outcome rewards.
      group_id: [B] int group ids (or group_size).
      group_size: G for group-contiguous rows.
      valid: [B] 1.0 for scored rows.
      mode: "keep" or "mask".

    Returns:
      (row_weight [B] float32, metrics {zero_std_frac}): zero_std_frac is the
      share of rows that belong to a zero-variance group.

    Source: TRL (zero-std metric, spurious KL gradients); "advantage collapse" in
    "Information Gain-based Policy Optimization: A Simple and Effective Approach
    for Multi-Turn LLM Agents" (IGPO).
    """
    if mode not in _ZERO_VARIANCE_MODES:
        hint = (
            " (regenerate with the `dynamic_sampling` curation rule)" if mode == "resample" else ""
        )
        raise ValueError(f"zero_variance_policy: mode must be one of {_ZERO_VARIANCE_MODES}{hint}")
    rewards, valid, groups = _prepare(rewards, group_id, group_size, valid, True)
    stats = _group_stats(rewards, valid, groups, 1)
    zero = stats.zero_var.astype(jnp.float32)
    frac = jnp.sum(zero * valid) / safe_denominator(jnp.sum(valid))
    weight = jnp.ones_like(rewards) if mode == "keep" else 1.0 - zero
    return sg(weight * valid), {"zero_std_frac": frac}
