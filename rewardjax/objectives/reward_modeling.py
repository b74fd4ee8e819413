"""Reward-model and process-reward-model losses.

Outcome reward models read a scalar r from the last non-pad token: the losses
take those scalars ([B] for the chosen and rejected responses of each pair).
Process reward models score every step: `prm_step_bce` takes the logit at each
step's last token ([B, S], see `gather_at_steps`). `implicit_prm` and
`laser_last_token_mse` turn an LM's own log-probs into rewards.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from rewardjax.objectives.aggregation import f32, safe_denominator
from rewardjax.registry import REWARD_MODEL_LOSSES
from rewardjax.types import Array

__all__ = [
    "bt_pairwise_loss",
    "bt_plus_regression_loss",
    "bt_tie_aware_loss",
    "gather_at_steps",
    "implicit_prm_loss",
    "implicit_process_rewards",
    "laser_last_token_mse_loss",
    "mc_step_labels",
    "prm_step_bce_loss",
    "regression_rm_loss",
    "rm_ensemble",
]

sg = jax.lax.stop_gradient


def _weighted_mean(x: Array, weights: Array | None, total_weight=None) -> Array:
    w = jnp.ones_like(x) if weights is None else sg(f32(weights))
    chex.assert_equal_shape([x, w])
    denom = jnp.sum(w) if total_weight is None else f32(total_weight)
    return jnp.sum(jnp.where(w > 0, w * x, 0.0)) / safe_denominator(denom)


def _bce_with_logits(logits: Array, labels: Array) -> Array:
    """−y·log σ(z) − (1−y)·log σ(−z), stable for any z; soft labels allowed."""
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


def _pair(chosen_rewards, rejected_rewards):
    chex.assert_rank([chosen_rewards, rejected_rewards], 1)
    chex.assert_equal_shape([chosen_rewards, rejected_rewards])
    return f32(chosen_rewards), f32(rejected_rewards)


@REWARD_MODEL_LOSSES.register("bt_pairwise")
def bt_pairwise_loss(
    chosen_rewards: Array,  # [B] r(x, y_w)
    rejected_rewards: Array,  # [B] r(x, y_l)
    *,
    margin: Array | None = None,  # [B] per-pair margin m
    center_coef: float = 0.0,
    weights: Array | None = None,  # [B]
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Bradley-Terry pairwise loss with optional margin and reward centering.

      ℓ = −log σ(r_w − r_l − m) + λ_c·(r_w + r_l)²

    Args:
      chosen_rewards: [B] scalar rewards of the preferred responses.
      rejected_rewards: [B] scalar rewards of the dispreferred responses.
      margin: [B] margin m per pair (0 by default).
      center_coef: λ_c (off by default; 0.01 recommended by TRL).
      weights: [B] per-pair weights; total_weight: global Σ w (micro-batching).

    Returns:
      (loss, metrics {accuracy, margin_mean, reward_mean}).

    Source: TRL RewardTrainer (centering: Eq. 2 of "Helping or Herding? Reward
    Model Ensembles Mitigate but do not Eliminate Reward Hacking"), OpenRLHF
    `LogExpLoss`/`PairWiseLoss`, EasyDeL.
    """
    r_w, r_l = _pair(chosen_rewards, rejected_rewards)
    m = jnp.zeros_like(r_w) if margin is None else sg(f32(margin))
    per_pair = -jax.nn.log_sigmoid(r_w - r_l - m) + center_coef * jnp.square(r_w + r_l)
    loss = _weighted_mean(per_pair, weights, total_weight)
    metrics = {
        "accuracy": sg(_weighted_mean((r_w > r_l).astype(jnp.float32), weights)),
        "margin_mean": sg(_weighted_mean(r_w - r_l, weights)),
        "reward_mean": sg(0.5 * _weighted_mean(r_w + r_l, weights)),
    }
    return loss, metrics


@REWARD_MODEL_LOSSES.register("regression_rm")
def regression_rm_loss(
    predictions: Array,  # [B, K] one predicted score per attribute
    targets: Array,  # [B, K] ratings
    *,
    attribute_weights: Array | None = None,  # [K]
    target_mask: Array | None = None,  # [B, K] 1.0 where a rating exists
    weights: Array | None = None,  # [B]
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Multi-attribute regression reward model (squared error per attribute).

      ℓ_i = Σ_k w_k·(r_ik − rating_ik)²

    Args:
      predictions: [B, K] predicted attribute scores.
      targets: [B, K] ratings.
      attribute_weights: [K] per-attribute weights w_k (1 by default).
      target_mask: [B, K] 1.0 where a rating is present.
      weights: [B] per-row weights; total_weight: global Σ w.

    Returns:
      (loss, metrics {mse}).

    Source: "HelpSteer2-Preference: Complementing Ratings with Preferences"
    (regression arm); "Optimizing Safe and Aligned Language Generation: A
    Multi-Objective GRPO Approach".
    """
    chex.assert_rank([predictions, targets], 2)
    chex.assert_equal_shape([predictions, targets])
    pred, tgt = f32(predictions), sg(f32(targets))
    k = pred.shape[1]
    w_k = jnp.ones((k,), jnp.float32) if attribute_weights is None else f32(attribute_weights)
    chex.assert_shape(w_k, (k,))
    present = jnp.ones_like(pred) if target_mask is None else f32(target_mask)
    sq = jnp.where(present > 0, jnp.square(pred - tgt), 0.0)
    per_row = jnp.sum(w_k[None, :] * sq, axis=-1)
    loss = _weighted_mean(per_row, weights, total_weight)
    return loss, {"mse": sg(jnp.sum(sq) / safe_denominator(jnp.sum(present)))}


@REWARD_MODEL_LOSSES.register("bt_plus_regression")
def bt_plus_regression_loss(
    chosen_rewards: Array,  # [B] scalar reward of y_w
    rejected_rewards: Array,  # [B] scalar reward of y_l
    predictions: Array,  # [N, K] attribute predictions on rated responses
    targets: Array,  # [N, K] ratings
    *,
    regression_coef: float,
    margin: Array | None = None,
    center_coef: float = 0.0,
    attribute_weights: Array | None = None,
    target_mask: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Bradley-Terry preference loss plus a rating-regression loss.

      L = L_BT + λ·L_MSE

    The generic combination; the HelpSteer2-Preference recipe (BT initialised
    from the regression RM) is a schedule over these two losses.

    Args:
      chosen_rewards, rejected_rewards: [B] scalar rewards of the pair.
      predictions: [N, K] attribute predictions; targets: [N, K] ratings.
      regression_coef: λ (the paper's combination is not in the abstract, so it
        is required); λ = 0 is `bt_pairwise`.
      margin, center_coef: as `bt_pairwise`.
      attribute_weights, target_mask: as `regression_rm`.

    Returns:
      (loss, metrics {bt_loss, mse_loss, accuracy}).

    Source: "HelpSteer2-Preference: Complementing Ratings with Preferences".
    """
    bt, bt_metrics = bt_pairwise_loss(
        chosen_rewards, rejected_rewards, margin=margin, center_coef=center_coef
    )
    mse, _ = regression_rm_loss(
        predictions, targets, attribute_weights=attribute_weights, target_mask=target_mask
    )
    metrics = {"bt_loss": sg(bt), "mse_loss": sg(mse), "accuracy": bt_metrics["accuracy"]}
    return bt + regression_coef * mse, metrics


@REWARD_MODEL_LOSSES.register("bt_tie_aware")
def bt_tie_aware_loss(
    chosen_rewards: Array,  # [B] r of the first response (the preferred one if not a tie)
    rejected_rewards: Array,  # [B] r of the second response
    is_tie: Array,  # [B] 1.0 for tie pairs
    *,
    tie_weight: float = 1.0,
    margin: Array | None = None,
    weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Pairwise loss where tie pairs are pulled to equal rewards (BCE with label ½).

      ties: ℓ = −½·log σ(Δ) − ½·log σ(−Δ);   others: ℓ = −log σ(Δ − m);   Δ = r_w − r_l

    The tie loss is symmetric in the pair and minimal (log 2) at Δ = 0.

    Args:
      chosen_rewards, rejected_rewards: [B] scalar rewards.
      is_tie: [B] 1.0 marks a tie pair (e.g. Crome's neutral augmentations).
      tie_weight: weight of tie pairs relative to ordered pairs.
      margin: [B] margin for ordered pairs.
      weights: [B] per-pair weights; total_weight: global Σ w.

    Returns:
      (loss, metrics {accuracy (ordered pairs), tie_abs_gap}).

    Source: "Robust Reward Modeling via Causal Rubrics" (Crome; neutral
    augmentations are tie-label pairs; its exact tie loss is in the paper).
    """
    r_w, r_l = _pair(chosen_rewards, rejected_rewards)
    tie = sg(f32(is_tie))
    chex.assert_equal_shape([r_w, tie])
    delta = r_w - r_l
    m = jnp.zeros_like(delta) if margin is None else sg(f32(margin))
    tie_loss = _bce_with_logits(delta, 0.5)
    bt_loss = -jax.nn.log_sigmoid(delta - m)
    per_pair = jnp.where(tie > 0, tie_weight * tie_loss, bt_loss)
    loss = _weighted_mean(per_pair, weights, total_weight)
    w = jnp.ones_like(delta) if weights is None else sg(f32(weights))
    ordered_w, tie_w = w * (1.0 - tie), w * tie
    metrics = {
        "accuracy": sg(jnp.sum(ordered_w * (delta > 0)) / safe_denominator(jnp.sum(ordered_w))),
        "tie_abs_gap": sg(jnp.sum(tie_w * jnp.abs(delta)) / safe_denominator(jnp.sum(tie_w))),
    }
    return loss, metrics


def gather_at_steps(
    x: Array,  # [B, T] per-token values (e.g. PRM logits)
    step_end: Array,  # [B, S] int token index of each step's last token
) -> Array:
    """Values at each step's last token: [B, T] -> [B, S]."""
    chex.assert_rank([x, step_end], 2)
    chex.assert_equal_shape_prefix([x, step_end], 1)
    idx = jnp.clip(jnp.asarray(step_end, jnp.int32), 0, x.shape[1] - 1)
    return jnp.take_along_axis(x, idx, axis=1)


def mc_step_labels(
    correct: Array,  # [B, S, K] 1.0 if completion k from the prefix ending at step s is correct
    *,
    hard: bool = False,
) -> Array:
    """Monte-Carlo step labels (Math-Shepherd style): soft ŷ = mean_k, hard ŷ = 1[any k correct]."""
    chex.assert_rank(correct, 3)
    c = f32(correct)
    return (jnp.max(c, axis=-1) > 0).astype(jnp.float32) if hard else jnp.mean(c, axis=-1)


@REWARD_MODEL_LOSSES.register("prm_step_bce")
def prm_step_bce_loss(
    step_logits: Array,  # [B, S] PRM logit z_s at each step's last token
    step_labels: Array,  # [B, S] hard {0, 1} or soft [0, 1] labels
    step_mask: Array,  # [B, S] 1.0 on real steps
    *,
    last_step_only: bool = False,
    weights: Array | None = None,  # [B]
) -> tuple[Array, dict[str, Array]]:
    """Per-step binary cross-entropy of a process reward model, at step-end tokens only.

      L = Σ_{b,s} mask·BCE(σ(z_s), y_s) / Σ mask

    Args:
      step_logits: [B, S] logits at step ends (`gather_at_steps` of token logits).
      step_labels: [B, S] hard or soft labels (`mc_step_labels`).
      step_mask: [B, S] 1.0 on real steps.
      last_step_only: train on each row's last step only (TRL
        `train_on_last_step_only`).
      weights: [B] per-row weights.

    Returns:
      (loss, metrics {step_accuracy}); label ½ with z = 0 gives log 2 and zero
      gradient.

    Source: TRL PRMTrainer; "The Lessons of Developing Process Reward Models in
    Mathematical Reasoning" (MC vs judge labels); "Free Process Rewards without
    Process Labels".
    """
    chex.assert_rank([step_logits, step_labels, step_mask], 2)
    chex.assert_equal_shape([step_logits, step_labels, step_mask])
    z, y, m = f32(step_logits), sg(f32(step_labels)), f32(step_mask)
    if last_step_only:
        s = m.shape[1]
        last = jnp.max(jnp.where(m > 0, jnp.arange(s)[None, :], -1), axis=-1)
        m = m * (jnp.arange(s)[None, :] == last[:, None])
    if weights is not None:
        m = m * sg(f32(weights))[:, None]
    per_step = _bce_with_logits(z, y)
    loss = jnp.sum(jnp.where(m > 0, m * per_step, 0.0)) / safe_denominator(jnp.sum(m))
    hit = ((z > 0) == (y > 0.5)).astype(jnp.float32)
    acc = jnp.sum(jnp.where(m > 0, m * hit, 0.0)) / safe_denominator(jnp.sum(m))
    return loss, {"step_accuracy": sg(acc)}


def implicit_process_rewards(
    policy_logprobs: Array,  # [B, T] log π_ψ of the tokens (the implicit PRM)
    ref_logprobs: Array,  # [B, T] log π_ref
    mask: Array,  # [B, T]
    *,
    beta: float = 0.05,
    step_end: Array | None = None,  # [B, S] int
    step_mask: Array | None = None,  # [B, S]
) -> Array:
    """Implicit process rewards: β·log π_ψ/π_ref per token, or summed per step.

    Returns [B, T] token rewards β·q_t (0 on masked tokens), or, with `step_end`,
    [B, S] step rewards Σ_{t ∈ step s} β·q_t, where step s spans the tokens after
    step s−1's end up to its own end.
    """
    chex.assert_equal_shape([policy_logprobs, ref_logprobs, mask])
    q = jnp.where(f32(mask) > 0, beta * (f32(policy_logprobs) - f32(ref_logprobs)), 0.0)
    if step_end is None:
        return q
    cum = jnp.cumsum(q, axis=-1)
    at_end = gather_at_steps(cum, step_end)
    prev = jnp.concatenate([jnp.zeros_like(at_end[:, :1]), at_end[:, :-1]], axis=-1)
    sm = jnp.ones_like(at_end) if step_mask is None else f32(step_mask)
    return jnp.where(sm > 0, at_end - prev, 0.0)


@REWARD_MODEL_LOSSES.register("implicit_prm")
def implicit_prm_loss(
    policy_logprobs: Array,  # [B, T] log π_ψ of the response tokens (gradient flows)
    ref_logprobs: Array,  # [B, T] log π_ref (frozen, or the policy: `ref_type`)
    mask: Array,  # [B, T]
    labels: Array,  # [B] outcome label in {0, 1} (or soft)
    *,
    beta: float = 0.05,
    weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Implicit PRM trained with cross-entropy on outcome labels.

      q_t = log π_ψ(y_t) − log π_ref(y_t);   L = BCE(σ(β·Σ_t mask·q_t), label)

    After training, β·q_t is a token-level process reward
    (`implicit_process_rewards`). ψ = ref gives rewards 0 and loss log 2.

    Args:
      policy_logprobs: [B, T] log-probs under the PRM ψ (initialised from SFT).
      ref_logprobs: [B, T] reference log-probs (stop-gradient).
      mask: [B, T] 1.0 on response tokens.
      labels: [B] outcome labels.
      beta: β (0.05, PRIME).
      weights: [B] per-row weights; total_weight: global Σ w.

    Returns:
      (loss, metrics {accuracy, reward_mean}).

    Source: "Free Process Rewards without Process Labels"; "Process
    Reinforcement through Implicit Rewards" (PRIME, loss `ce`).
    """
    chex.assert_rank([policy_logprobs, ref_logprobs, mask, labels], [2, 2, 2, 1])
    chex.assert_equal_shape([policy_logprobs, ref_logprobs, mask])
    q = implicit_process_rewards(policy_logprobs, sg(f32(ref_logprobs)), mask, beta=beta)
    score = jnp.sum(q, axis=-1)
    y = sg(f32(labels))
    loss = _weighted_mean(_bce_with_logits(score, y), weights, total_weight)
    metrics = {
        "accuracy": sg(_weighted_mean(((score > 0) == (y > 0.5)).astype(jnp.float32), weights)),
        "reward_mean": sg(_weighted_mean(score, weights)),
    }
    return loss, metrics


@REWARD_MODEL_LOSSES.register("laser_last_token_mse")
def laser_last_token_mse_loss(
    token_logprobs: Array,  # [B] log π(t* | x, y) read after the last response token
    verifier_rewards: Array,  # [B] r_verifier
    *,
    kl_coef: float,
    ref_constant: float,
    coef: float,
    valid: Array | None = None,  # [B]
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Last-token self-rewarding: align β_KL·(log π(t*) − c) with the verifier reward.

      score = β_KL·(log π(t* | x, y) − c);   L = α·mean((score − r_verifier)²)

    Added to the RLVR loss. t* is any pre-specified token; c a pre-computed
    constant (the reference model's log-prob of t*).

    Args:
      token_logprobs: [B] policy log-prob of t* at the position after the
        response's last token.
      verifier_rewards: [B] verifier rewards.
      kl_coef: β_KL. ref_constant: c. coef: α. (None is given in the abstract,
        so all three are required.)
      valid: [B] 1.0 on rows that count; total_weight: global count.

    Returns:
      (α·MSE, metrics {self_reward_mean, self_reward_mse}); log π(t*) = c gives score 0.

    Source: "LaSeR: Reinforcement Learning with Last-Token Self-Rewarding".
    """
    chex.assert_rank([token_logprobs, verifier_rewards], 1)
    chex.assert_equal_shape([token_logprobs, verifier_rewards])
    score = kl_coef * (f32(token_logprobs) - ref_constant)
    mse = _weighted_mean(jnp.square(score - sg(f32(verifier_rewards))), valid, total_weight)
    metrics = {"self_reward_mean": sg(_weighted_mean(score, valid)), "self_reward_mse": sg(mse)}
    return coef * mse, metrics


_ENSEMBLE_MODES = ("mean", "median", "min", "mean_minus_std")


@REWARD_MODEL_LOSSES.register("rm_ensemble")
def rm_ensemble(
    member_rewards: Array,  # [M, B] reward of each of M members
    *,
    mode: str = "mean",
    std_coef: float = 1.0,
) -> Array:
    """Aggregates an ensemble of M reward models into one reward per sample.

      mean | median | min | mean − λ·std   over the M members

    Members differing in pretraining seed are more diverse (and more useful)
    than members differing only in fine-tuning seed.

    Args:
      member_rewards: [M, B] rewards.
      mode: "mean", "median", "min" or "mean_minus_std".
      std_coef: λ of `mean_minus_std` (the paper's rule is not in the abstract).

    Returns:
      [B] float32 aggregated rewards (identical members: std 0, all modes equal).

    Source: "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking".
    """
    chex.assert_rank(member_rewards, 2)
    r = f32(member_rewards)
    if mode == "mean":
        return jnp.mean(r, axis=0)
    if mode == "median":
        return jnp.median(r, axis=0)
    if mode == "min":
        return jnp.min(r, axis=0)
    if mode == "mean_minus_std":
        return jnp.mean(r, axis=0) - std_coef * jnp.std(r, axis=0)
    raise ValueError(f"rm_ensemble: unknown mode {mode!r}; known: {_ENSEMBLE_MODES}")
