"""Preference-optimisation losses on (chosen, rejected) pairs.

Inputs are per-sequence log-prob sums [B] of the policy and of the reference
for the chosen (y_w) and rejected (y_l) responses, from one concatenated
forward (reference sums may be precomputed). With s(y) = Σ_t mask·(logp −
ref_logp) = policy_sum − ref_sum, the DPO margin is d = s(y_w) − s(y_l).

Every pairwise loss is a function f of the signed margin and is reduced by
`pair_weights`: L = Σ_i w_i·ℓ_i / Σ_i w_i (w ≡ 1 by default; w_i = 0 drops the
pair; `total_weight` = the full batch's Σ w for micro-batching, then sum the
micro-batch losses).

Vector (multi-objective) preferences. `labels` [B, K] in {+1, −1, 0} says,
per objective k, whether y_w is preferred (+1), dispreferred (−1) or tied (0);
`vector_preference_labels(chosen_rewards, rejected_rewards)` builds them from
vector rewards [B, K]. The per-pair loss is then

  ℓ_i = Σ_k ω_k·|y_ik|·f(y_ik·d_i)

with per-objective weights ω [K] (`objective_weights`, default 1). K = 1 with
y ≡ +1 is the scalar loss.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from rewardjax.objectives.aggregation import f32, safe_denominator
from rewardjax.registry import PREFERENCE_LOSSES
from rewardjax.types import Array

__all__ = [
    "adpo_anchored_loss",
    "dpo_cdpo_loss",
    "dpo_hinge_loss",
    "dpo_robust_loss",
    "dpo_sigmoid_loss",
    "ipo_identity_loss",
    "pair_weights",
    "vector_preference_labels",
]

sg = jax.lax.stop_gradient


@PREFERENCE_LOSSES.register("pair_weights")
def pair_weights(
    per_pair_loss: Array,  # [B] loss of each pair
    weights: Array | None = None,  # [B] per-pair weight w_i ≥ 0
    *,
    total_weight: Array | float | None = None,
) -> Array:
    """Per-pair weighted mean of a preference loss.

      L = Σ_i w_i·ℓ_i / Σ_i w_i     (w ≡ 1 by default; w_i = 0 drops pair i)

    Args:
      per_pair_loss: [B] loss of each pair.
      weights: [B] non-negative weights (e.g. a reward-margin-based weight).
      total_weight: Σ w of the full batch when this is a micro-batch.

    Returns:
      Scalar float32; 0 when every weight is 0.

    Source: "MM-RLHF: The Next Step Forward in Multimodal LLM Alignment"
    (per-pair "Dynamic Reward Scaling"; its margin-to-weight rule is in the
    paper, not the abstract); TRL per-sample weights.
    """
    chex.assert_rank(per_pair_loss, 1)
    loss = f32(per_pair_loss)
    w = jnp.ones_like(loss) if weights is None else sg(f32(weights))
    chex.assert_equal_shape([loss, w])
    denom = jnp.sum(w) if total_weight is None else f32(total_weight)
    return jnp.sum(jnp.where(w > 0, w * loss, 0.0)) / safe_denominator(denom)


def vector_preference_labels(
    chosen_rewards: Array,  # [B, K] vector reward of y_w
    rejected_rewards: Array,  # [B, K] vector reward of y_l
) -> Array:
    """Per-objective preference labels sign(r_w,k − r_l,k) in {+1, 0, −1}: [B, K]."""
    chex.assert_rank([chosen_rewards, rejected_rewards], 2)
    chex.assert_equal_shape([chosen_rewards, rejected_rewards])
    return jnp.sign(f32(chosen_rewards) - f32(rejected_rewards))


def _pairwise(
    f: Callable[[Array], Array],
    margin: Array,  # [B] the (unsigned) margin entering f
    *,
    weights,
    labels,
    objective_weights,
    total_weight,
) -> Array:
    """ℓ_i = Σ_k ω_k·|y_ik|·f(y_ik·margin_i), reduced by `pair_weights`."""
    b = margin.shape[0]
    if labels is None:
        labels = jnp.ones((b, 1), jnp.float32)
    labels = f32(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    chex.assert_shape(labels, (b, None))
    k = labels.shape[1]
    omega = jnp.ones((k,), jnp.float32) if objective_weights is None else f32(objective_weights)
    chex.assert_shape(omega, (k,))
    signed = labels * margin[:, None]
    per_obj = jnp.where(labels != 0, f(signed), 0.0)
    per_pair = jnp.sum(omega[None, :] * jnp.abs(labels) * per_obj, axis=-1)
    return pair_weights(per_pair, weights, total_weight=total_weight)


def _sequence_inputs(pc, pr, rc, rr):
    chex.assert_rank([pc, pr, rc, rr], 1)
    chex.assert_equal_shape([pc, pr, rc, rr])
    return f32(pc) - sg(f32(rc)), f32(pr) - sg(f32(rr))


def _metrics(s_w, s_l, beta, weights, margin=None):
    d = s_w - s_l if margin is None else margin
    w = jnp.ones_like(d) if weights is None else f32(weights)
    mean = lambda x: jnp.sum(w * x) / safe_denominator(jnp.sum(w))  # noqa: E731
    return {
        "rewards_chosen": sg(mean(beta * s_w)),
        "rewards_rejected": sg(mean(beta * s_l)),
        "reward_margin": sg(mean(beta * d)),
        "reward_accuracy": sg(mean((d > 0).astype(jnp.float32))),
    }


@PREFERENCE_LOSSES.register("dpo_sigmoid")
def dpo_sigmoid_loss(
    policy_chosen_logps: Array,  # [B]
    policy_rejected_logps: Array,  # [B]
    ref_chosen_logps: Array,  # [B]
    ref_rejected_logps: Array,  # [B]
    *,
    beta: float = 0.1,
    weights: Array | None = None,
    labels: Array | None = None,
    objective_weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Direct preference optimisation with the logistic (Bradley-Terry) loss.

      ℓ = −log σ(β·d),   d = s(y_w) − s(y_l)

    Args:
      policy_chosen_logps: [B] Σ_t mask·logp of y_w under the policy.
      policy_rejected_logps: [B] the same for y_l.
      ref_chosen_logps: [B] Σ_t mask·ref_logp of y_w (stop-gradient).
      ref_rejected_logps: [B] the same for y_l.
      beta: β (0.1: TRL, tunix).
      weights: [B] per-pair weights (`pair_weights`).
      labels: [B] or [B, K] signed preference labels (vector preferences, see
        the module docstring).
      objective_weights: [K] per-objective weights ω.
      total_weight: the full batch's Σ w for micro-batching.

    Returns:
      (loss, metrics {rewards_chosen, rewards_rejected, reward_margin, reward_accuracy}).

    Source: "Direct Preference Optimization: Your Language Model is Secretly a
    Reward Model" (Rafailov et al., 2023); TRL, OpenRLHF, tunix, EasyDeL.
    """
    s_w, s_l = _sequence_inputs(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    f = lambda z: -jax.nn.log_sigmoid(beta * z)  # noqa: E731
    loss = _pairwise(
        f,
        s_w - s_l,
        weights=weights,
        labels=labels,
        objective_weights=objective_weights,
        total_weight=total_weight,
    )
    return loss, _metrics(s_w, s_l, beta, weights)


@PREFERENCE_LOSSES.register("dpo_cdpo")
def dpo_cdpo_loss(
    policy_chosen_logps: Array,  # [B]
    policy_rejected_logps: Array,  # [B]
    ref_chosen_logps: Array,  # [B]
    ref_rejected_logps: Array,  # [B]
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    weights: Array | None = None,
    labels: Array | None = None,
    objective_weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Conservative DPO: DPO with label smoothing ε (the label is flipped with probability ε).

      ℓ = −(1−ε)·log σ(β·d) − ε·log σ(−β·d)

    Its optimum is finite, d* = log((1−ε)/ε)/β.

    Args: as `dpo_sigmoid`, plus label_smoothing: ε (0).

    Returns:
      (loss, metrics) as `dpo_sigmoid`.

    Source: "A note on DPO with noisy preferences & relationship to IPO"
    (Mitchell, cDPO); OpenRLHF, tunix (TRL's `sigmoid` ignores ε).
    """
    s_w, s_l = _sequence_inputs(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    eps = label_smoothing

    def f(z):
        return -(1.0 - eps) * jax.nn.log_sigmoid(beta * z) - eps * jax.nn.log_sigmoid(-beta * z)

    loss = _pairwise(
        f,
        s_w - s_l,
        weights=weights,
        labels=labels,
        objective_weights=objective_weights,
        total_weight=total_weight,
    )
    return loss, _metrics(s_w, s_l, beta, weights)


@PREFERENCE_LOSSES.register("dpo_robust")
def dpo_robust_loss(
    policy_chosen_logps: Array,  # [B]
    policy_rejected_logps: Array,  # [B]
    ref_chosen_logps: Array,  # [B]
    ref_rejected_logps: Array,  # [B]
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    weights: Array | None = None,
    labels: Array | None = None,
    objective_weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Robust DPO: an unbiased loss under preference-label noise of rate ε.

      ℓ = [−(1−ε)·log σ(β·d) + ε·log σ(−β·d)] / (1 − 2ε)

    Args: as `dpo_sigmoid`, plus label_smoothing: ε ∈ [0, 0.5) (0.1 typical,
      TRL doc); ε = 0 is `dpo_sigmoid`.

    Returns:
      (loss, metrics) as `dpo_sigmoid`.

    Source: "Provably Robust DPO: Aligning Language Models with Noisy Feedback"
    (Chowdhury et al., 2024); TRL `robust`.
    """
    eps = label_smoothing
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"dpo_robust: label_smoothing must be in [0, 0.5), got {eps}")
    s_w, s_l = _sequence_inputs(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )

    def f(z):
        num = -(1.0 - eps) * jax.nn.log_sigmoid(beta * z) + eps * jax.nn.log_sigmoid(-beta * z)
        return num / (1.0 - 2.0 * eps)

    loss = _pairwise(
        f,
        s_w - s_l,
        weights=weights,
        labels=labels,
        objective_weights=objective_weights,
        total_weight=total_weight,
    )
    return loss, _metrics(s_w, s_l, beta, weights)


@PREFERENCE_LOSSES.register("dpo_hinge")
def dpo_hinge_loss(
    policy_chosen_logps: Array,  # [B]
    policy_rejected_logps: Array,  # [B]
    ref_chosen_logps: Array,  # [B]
    ref_rejected_logps: Array,  # [B]
    *,
    beta: float = 0.1,
    weights: Array | None = None,
    labels: Array | None = None,
    objective_weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Hinge preference loss (SLiC-style): zero once β·d ≥ 1.

      ℓ = relu(1 − β·d)

    Args: as `dpo_sigmoid` (β = 0.1).

    Returns:
      (loss, metrics) as `dpo_sigmoid`.

    Source: "SLiC-HF: Sequence Likelihood Calibration with Human Feedback"; TRL
    `hinge`.
    """
    s_w, s_l = _sequence_inputs(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    f = lambda z: jax.nn.relu(1.0 - beta * z)  # noqa: E731
    loss = _pairwise(
        f,
        s_w - s_l,
        weights=weights,
        labels=labels,
        objective_weights=objective_weights,
        total_weight=total_weight,
    )
    return loss, _metrics(s_w, s_l, beta, weights)


@PREFERENCE_LOSSES.register("ipo_identity")
def ipo_identity_loss(
    policy_chosen_logps: Array,  # [B]
    policy_rejected_logps: Array,  # [B]
    ref_chosen_logps: Array,  # [B]
    ref_rejected_logps: Array,  # [B]
    *,
    beta: float = 0.1,
    chosen_lengths: Array | None = None,  # [B] |y_w|
    rejected_lengths: Array | None = None,  # [B] |y_l|
    length_normalize: bool = True,
    weights: Array | None = None,
    labels: Array | None = None,
    objective_weights: Array | None = None,
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Identity preference optimisation (IPO of Azar et al.): regress the margin to 1/(2β).

      ℓ = (s̄_w − s̄_l − 1/(2β))²,   s̄ = s/|y| (length_normalize) or s

    Args: as `dpo_sigmoid`, plus
      beta: β (τ in the paper) = 0.1.
      chosen_lengths, rejected_lengths: [B] token counts, needed when length_normalize.
      length_normalize: True as TRL (confirmed with the IPO authors); False as
        OpenRLHF (raw sums).

    Returns:
      (loss, metrics) as `dpo_sigmoid`, on the (normalized) margin.

    Source: "A General Theoretical Paradigm to Understand Learning from Human
    Preferences" (Azar et al., IPO); TRL `ipo`, OpenRLHF, EasyDeL.
    """
    s_w, s_l = _sequence_inputs(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    if length_normalize:
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(
                "ipo_identity: length_normalize needs chosen_lengths and rejected_lengths [B]"
            )
        chex.assert_equal_shape([s_w, chosen_lengths, rejected_lengths])
        s_w = s_w / jnp.maximum(f32(chosen_lengths), 1.0)
        s_l = s_l / jnp.maximum(f32(rejected_lengths), 1.0)
    target = 1.0 / (2.0 * beta)
    f = lambda z: jnp.square(z - target)  # noqa: E731
    loss = _pairwise(
        f,
        s_w - s_l,
        weights=weights,
        labels=labels,
        objective_weights=objective_weights,
        total_weight=total_weight,
    )
    return loss, _metrics(s_w, s_l, beta, weights)


@PREFERENCE_LOSSES.register("adpo_anchored")
def adpo_anchored_loss(
    policy_logps: Array,  # [B, K] log π_θ(y_k | x) of K candidates (sequence sums)
    ref_logps: Array,  # [B, K] anchor log-probs ℓ_ref (π_ref, or a dynamic anchor)
    target_probs: Array,  # [B, K] target distribution q (one-hot, soft or listwise)
    *,
    tau: float,
    candidate_mask: Array | None = None,  # [B, K] 1.0 on real candidates
    weights: Array | None = None,  # [B]
    total_weight: Array | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Anchored listwise preference loss: match q with a softmax over anchored log-ratios.

      ℓ = KL(q ‖ softmax((ℓ − ℓ_ref)/τ_anc))   over the K candidates

    K = 2, q = (1, 0), τ_anc = 1/β is `dpo_sigmoid`. The curvature of the implied
    trust region scales as 1/τ_anc². A fixed anchor is π_ref; a dynamic anchor is
    whatever the caller passes as `ref_logps` (e.g. a lagged policy).

    Args:
      policy_logps: [B, K] policy sequence log-probs of the candidates.
      ref_logps: [B, K] anchor sequence log-probs (stop-gradient).
      target_probs: [B, K] target distribution q (rows sum to 1 over candidates).
      tau: τ_anc > 0 (the paper gives no default; 1/β recovers DPO).
      candidate_mask: [B, K] 1.0 on real candidates (ragged lists).
      weights: [B] per-list weights (`pair_weights`).
      total_weight: global Σ w for micro-batching.

    Returns:
      (loss, metrics {kl, top1_accuracy}).

    Source: "ADPO: Anchored Direct Preference Optimization".
    """
    chex.assert_rank([policy_logps, ref_logps, target_probs], 2)
    chex.assert_equal_shape([policy_logps, ref_logps, target_probs])
    if tau <= 0:
        raise ValueError(f"adpo_anchored: tau must be > 0, got {tau}")
    valid = (
        jnp.ones_like(f32(policy_logps)) if candidate_mask is None else f32(candidate_mask)
    ) > 0
    logits = (f32(policy_logps) - sg(f32(ref_logps))) / tau
    # A large finite negative, not −inf: a list with no candidate must keep finite gradients.
    logits = jnp.where(valid, logits, -1e9)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    q = jnp.where(valid, sg(f32(target_probs)), 0.0)
    log_q = jnp.log(jnp.where(q > 0, q, 1.0))
    per_list = jnp.sum(jnp.where(q > 0, q * (log_q - jnp.where(valid, log_p, 0.0)), 0.0), -1)
    loss = pair_weights(per_list, weights, total_weight=total_weight)
    top1 = jnp.argmax(jnp.where(valid, log_p, -jnp.inf), -1) == jnp.argmax(q, -1)
    w = jnp.ones_like(per_list) if weights is None else f32(weights)
    metrics = {
        "kl": sg(jnp.sum(w * per_list) / safe_denominator(jnp.sum(w))),
        "top1_accuracy": sg(jnp.sum(w * top1) / safe_denominator(jnp.sum(w))),
    }
    return loss, metrics
