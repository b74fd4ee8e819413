"""Process credit: step scores p [B, S] (+ outcome r [B]) -> step or token rewards.

Inputs: per-step scores p [B, S] with `step_mask` [B, S] (1.0 on real steps,
steps left-aligned) and, to go to tokens, `step_end` [B, S] (token index of
each step's last token). Step rewards become token rewards with `step_to_token`,
and token rewards become returns with `advantages.token_reward_returns` (or an
advantage estimator). Every output is float32 and stop-gradient.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from rewardjax.objectives.advantages import (
    last_token_index,
    reverse_discounted_cumsum,
)
from rewardjax.objectives.aggregation import f32, masked_whiten, safe_denominator
from rewardjax.registry import ADVANTAGES, CREDIT_RULES
from rewardjax.types import Array

__all__ = [
    "clip_delta_bounded",
    "min_form_returns",
    "pav_progress",
    "prime_combined_rloo",
    "returns_to_step_rewards",
    "step_to_token",
    "success_gated_process",
    "sum_form_returns",
]

sg = jax.lax.stop_gradient


def _steps(step_rewards, step_mask):
    chex.assert_rank([step_rewards, step_mask], 2)
    chex.assert_equal_shape([step_rewards, step_mask])
    return sg(f32(step_rewards)), f32(step_mask)


def _last_step_one_hot(step_mask: Array) -> Array:
    has = (jnp.sum(step_mask, -1) > 0)[:, None]
    return jax.nn.one_hot(last_token_index(step_mask), step_mask.shape[1]) * has


@CREDIT_RULES.register("step_to_token")
def step_to_token(
    step_rewards: Array,  # [B, S] reward of each step
    step_end: Array,  # [B, S] int token index of each step's last token
    step_mask: Array,  # [B, S] 1.0 on real steps
    mask: Array,  # [B, T] 1.0 on completion tokens
    *,
    mode: str = "sparse",
) -> Array:
    """Places step rewards on tokens: at the step's last token, or spread over its tokens.

      sparse: r_{step_end_s} = p_s;   spread: r_t = p_s·mask_t / Σ_{t' ∈ s} mask_t'

    Step s spans the tokens after step s−1's end up to step_end_s. Both modes
    preserve Σ_t r_t = Σ_s p_s (provided each step has a valid token).

    Args:
      step_rewards: [B, S] step rewards.
      step_end: [B, S] int token index of each step's last token.
      step_mask: [B, S] 1.0 on real steps.
      mask: [B, T] completion mask (fixes T; spread weights).
      mode: "sparse" or "spread".

    Returns:
      [B, T] float32 token rewards.

    Source: process-reward RL (PRIME, PURE, verl token-level rewards).
    """
    p, sm = _steps(step_rewards, step_mask)
    chex.assert_equal_shape([p, step_end])
    chex.assert_rank(mask, 2)
    mask = f32(mask)
    t = mask.shape[1]
    ends = jnp.clip(jnp.asarray(step_end, jnp.int32), 0, t - 1)
    p = jnp.where(sm > 0, p, 0.0)
    if mode == "sparse":
        one_hot = jax.nn.one_hot(ends, t, dtype=jnp.float32) * sm[..., None]  # [B, S, T]
        return jnp.einsum("bs,bst->bt", p, one_hot)
    if mode != "spread":
        raise ValueError(f"step_to_token: mode must be 'sparse' or 'spread', got {mode!r}")
    positions = jnp.arange(t)[None, None, :]
    prev_end = jnp.concatenate([jnp.full_like(ends[:, :1], -1), ends[:, :-1]], axis=-1)
    member = (
        (positions > prev_end[..., None]) & (positions <= ends[..., None]) & (sm[..., None] > 0)
    )
    weights = member * mask[:, None, :]
    counts = jnp.sum(weights, axis=-1, keepdims=True)
    # A step with no valid token keeps its reward on its end token, so the sum is preserved.
    fallback = jax.nn.one_hot(ends, t, dtype=jnp.float32) * sm[..., None]
    weights = jnp.where(counts > 0, weights / safe_denominator(counts), fallback)
    return jnp.einsum("bs,bst->bt", p, weights)


@CREDIT_RULES.register("sum_form_returns")
def sum_form_returns(
    step_rewards: Array,  # [B, S]
    step_mask: Array,  # [B, S]
    *,
    gamma: float = 1.0,
) -> Array:
    """Canonical (summation-form) step returns.

      G_s = Σ_{k≥s} γ^{k−s}·p_k

    Args:
      step_rewards: [B, S] step scores p.
      step_mask: [B, S] 1.0 on real steps.
      gamma: γ (1).

    Returns:
      [B, S] float32 returns, 0 on padded steps.

    Source: canonical RL returns (the form "Stop Summation: Min-Form Credit
    Assignment Is All Process Reward Model Needs for Reasoning" argues against).
    """
    p, sm = _steps(step_rewards, step_mask)
    return sg(reverse_discounted_cumsum(p, sm, gamma=gamma))


@CREDIT_RULES.register("min_form_returns")
def min_form_returns(
    step_rewards: Array,  # [B, S]
    step_mask: Array,  # [B, S]
    *,
    outcome_rewards: Array | None = None,  # [B] verifiable reward
    outcome_mask: Array | None = None,  # [B] 1.0 on rows that receive it
) -> Array:
    """Min-form credit: a step's value is the minimum of the future step scores (PURE).

      G_s = min_{k≥s} p_k   (reverse cumulative minimum over real steps)

    A high-scoring step can no longer raise the value of the steps before it,
    so repeating good steps cannot be farmed. A verifiable outcome reward, on
    the rows selected by `outcome_mask` (PURE mixes it into ~10% of samples),
    is added as a terminal reward: G_s ← G_s + r_out on every real step. The
    baseline is the advantage estimator's job.

    Args:
      step_rewards: [B, S] step scores p.
      step_mask: [B, S] 1.0 on real steps.
      outcome_rewards: [B] verifiable rewards (optional).
      outcome_mask: [B] rows that receive them (all rows when None).

    Returns:
      [B, S] float32 returns, 0 on padded steps. `returns_to_step_rewards`
      converts them to step rewards whose sum-form returns are G.

    Source: "Stop Summation: Min-Form Credit Assignment Is All Process Reward
    Model Needs for Reasoning" (PURE; its exact reward transform and baseline
    are in the paper).
    """
    p, sm = _steps(step_rewards, step_mask)
    valid = sm > 0

    def step(carry, inputs):
        p_s, v_s = inputs
        g = jnp.minimum(p_s, carry)
        return jnp.where(v_s, g, carry), jnp.where(v_s, g, 0.0)

    init = jnp.full((p.shape[0],), jnp.inf, jnp.float32)
    _, out = jax.lax.scan(step, init, (p.T, valid.T), reverse=True)
    returns = out.T
    if outcome_rewards is not None:
        chex.assert_shape(outcome_rewards, (p.shape[0],))
        r = sg(f32(outcome_rewards))
        if outcome_mask is not None:
            r = r * f32(outcome_mask)
        returns = jnp.where(valid, returns + r[:, None], 0.0)
    return sg(returns)


def returns_to_step_rewards(
    returns: Array,  # [B, S] step returns G
    step_mask: Array,  # [B, S]
) -> Array:
    """Step rewards r_s = G_s − G_{s+1} (G after the last step = 0), so Σ_{k≥s} r_k = G_s."""
    g, sm = _steps(returns, step_mask)
    nxt = jnp.concatenate([g[:, 1:], jnp.zeros_like(g[:, :1])], axis=-1)
    nxt_valid = jnp.concatenate([sm[:, 1:], jnp.zeros_like(sm[:, :1])], axis=-1)
    return jnp.where(sm > 0, g - jnp.where(nxt_valid > 0, nxt, 0.0), 0.0)


@CREDIT_RULES.register("clip_delta_bounded")
def clip_delta_bounded(
    step_rewards: Array,  # [B, S] learned process rewards p
    step_mask: Array,  # [B, S]
    *,
    mode: str = "clip",
    threshold: float | Array | None = None,
) -> Array:
    """Bounded process rewards that cannot be farmed by repeating steps (Clip or Delta).

      clip:  p̃_s = min(p_s − η, 0)                       (every p̃ ≤ 0, total ≤ 0)
      delta: p̃_s = p_s − p_{s+1} (s < S),  p̃_S = p_S      (Σ_s p̃_s = p_1)

    Add the result to the outcome reward.

    Args:
      step_rewards: [B, S] process-reward scores.
      step_mask: [B, S] 1.0 on real steps (left-aligned).
      mode: "clip" or "delta".
      threshold: η for clip; the batch mean of the valid step scores when None.

    Returns:
      [B, S] float32 step rewards, 0 on padded steps.

    Source: "On Designing Effective RL Reward at Training Time for LLM
    Reasoning" (Gao et al., 2024: Clipping and Delta mechanisms).
    """
    p, sm = _steps(step_rewards, step_mask)
    if mode == "clip":
        if threshold is None:
            eta = jnp.sum(jnp.where(sm > 0, p, 0.0)) / safe_denominator(jnp.sum(sm))
        else:
            eta = sg(f32(threshold))
        return jnp.where(sm > 0, jnp.minimum(p - eta, 0.0), 0.0)
    if mode == "delta":
        return returns_to_step_rewards(p, sm)
    raise ValueError(f"clip_delta_bounded: mode must be 'clip' or 'delta', got {mode!r}")


@CREDIT_RULES.register("pav_progress")
def pav_progress(
    prefix_values: Array,  # [B, S] V^μ(h_≤s): prover success rate after step s
    prompt_values: Array,  # [B] V^μ(h_<1): prover success rate from the prompt alone
    step_mask: Array,  # [B, S]
    *,
    coef: float,
    outcome_rewards: Array | None = None,  # [B]
) -> Array:
    """Process advantage (progress) rewards: the change in the prover's success probability.

      progress_s = V^μ(h_≤s) − V^μ(h_<s);   reward_s = α·progress_s (+ r_out at the last step)

    V^μ(h) ≈ (1/K)·Σ_k 1[rollout k from h under the prover μ is correct]
    (`reward_modeling.mc_step_labels`), or a trained PAV's prediction.
    Σ_s progress_s = V(full) − V(prompt). MRT's per-block bonus is the same
    quantity.

    Args:
      prefix_values: [B, S] value after each step.
      prompt_values: [B] value of the prompt alone.
      step_mask: [B, S] 1.0 on real steps.
      coef: α (not in the abstract, so required).
      outcome_rewards: [B] outcome reward added at each row's last step.

    Returns:
      [B, S] float32 step rewards.

    Source: "Rewarding Progress: Scaling Automated Process Verifiers for LLM
    Reasoning" (PAV); "Optimizing Test-Time Compute via Meta Reinforcement
    Fine-Tuning" (MRT).
    """
    v, sm = _steps(prefix_values, step_mask)
    chex.assert_shape(prompt_values, (v.shape[0],))
    v0 = sg(f32(prompt_values))[:, None]
    prev = jnp.concatenate([v0, v[:, :-1]], axis=-1)
    rewards = jnp.where(sm > 0, coef * (v - prev), 0.0)
    if outcome_rewards is not None:
        chex.assert_shape(outcome_rewards, (v.shape[0],))
        rewards = rewards + _last_step_one_hot(sm) * sg(f32(outcome_rewards))[:, None]
    return sg(rewards)


# An advantage estimator (selectable as advantage.name) built from credit pieces.
@ADVANTAGES.register("prime_combined_rloo")
def prime_combined_rloo(
    process_rewards: Array,  # [B, T] implicit token rewards β·log π_ψ/π_ref
    outcome_rewards: Array,  # [B] verifier outcome
    mask: Array,  # [B, T]
    *,
    group_size: int,
    rm_coef: float = 5.0,
    gt_coef: float = 5.0,
    gamma: float = 1.0,
) -> Array:
    """PRIME advantages: leave-one-out per reward source, combined, returns, whitened.

      r′_{i,t} = (G·r_{i,t} − Σ_j r̄_j)/(G−1),  r̄_j = token mean of row j (same rule for the
      outcome, placed at the last token);  A = whiten(reverse-cumsum(c_rm·r′ + c_gt·o′))

    Args:
      process_rewards: [B, T] implicit process rewards (`implicit_process_rewards`).
      outcome_rewards: [B] verifier rewards.
      mask: [B, T] 1.0 on completion tokens.
      group_size: G ≥ 2 (4 in the PRIME recipe); rows are group-contiguous.
      rm_coef: c_rm (5). gt_coef: c_gt (5).
      gamma: γ of the returns (1).

    Returns:
      [B, T] float32 advantages for `ppo_clip`; c_rm = 0 is the whitened
      outcome RLOO.

    Source: "Process Reinforcement through Implicit Rewards" (PRIME); PRIME /
    verl-recipe `compute_rloo_advantage_return`.
    """
    chex.assert_rank([process_rewards, outcome_rewards, mask], [2, 1, 2])
    chex.assert_equal_shape([process_rewards, mask])
    b = mask.shape[0]
    if group_size < 2 or b % group_size:
        raise ValueError(
            f"prime_combined_rloo: group_size={group_size} must be ≥ 2 and divide B={b}"
        )
    mask = f32(mask)
    valid = mask > 0

    def leave_one_out(r, m):  # r, m: [B, T]; RLOO on token rewards with row means
        row_mean = jnp.sum(jnp.where(m > 0, r, 0.0), -1) / safe_denominator(jnp.sum(m, -1))
        group_sum = jnp.sum(row_mean.reshape(-1, group_size), -1)
        group_sum = jnp.repeat(group_sum, group_size)[:, None]
        out = (group_size * r - group_sum) / (group_size - 1)
        return jnp.where(m > 0, out, 0.0)

    proc = leave_one_out(sg(f32(process_rewards)), mask)
    last = jax.nn.one_hot(last_token_index(mask), mask.shape[1]) * (jnp.sum(mask, -1) > 0)[:, None]
    outcome = leave_one_out(last * sg(f32(outcome_rewards))[:, None], last)
    combined = rm_coef * proc + gt_coef * outcome
    returns = reverse_discounted_cumsum(combined, mask, gamma=gamma)
    return sg(jnp.where(valid, masked_whiten(returns, mask), 0.0))


@CREDIT_RULES.register("success_gated_process")
def success_gated_process(
    outcome_rewards: Array,  # [B]
    process_rewards: Array,  # [B] reasoning-quality reward of each response
    *,
    coef: float,
    success: Array | None = None,  # [B] bool / {0, 1}
    success_threshold: float = 0.5,
) -> Array:
    """Process rewards count only for successful responses (Posterior-GRPO).

      r_i = r_out,i + λ·1[success_i]·r_proc,i

    Args:
      outcome_rewards: [B] outcome rewards.
      process_rewards: [B] process (reasoning) rewards.
      coef: λ (not in the abstract, so required).
      success: [B] explicit success flags; r_out > success_threshold when None
        (0.5 works for {0, 1} and {−1, +1} verifiers).
      success_threshold: see `success`.

    Returns:
      [B] float32 rewards; failures ignore r_proc.

    Source: "Posterior-GRPO: Rewarding Reasoning Processes in Code Generation".
    """
    chex.assert_rank([outcome_rewards, process_rewards], 1)
    chex.assert_equal_shape([outcome_rewards, process_rewards])
    r_out, r_proc = sg(f32(outcome_rewards)), sg(f32(process_rewards))
    ok = r_out > success_threshold if success is None else jnp.asarray(success) > 0
    return r_out + coef * jnp.where(ok, r_proc, 0.0)
