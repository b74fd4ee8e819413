"""Preference losses: hand-computed fixtures and cross-checks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import preference as pref_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import grad_jit as _grad
from rewardjax.testing import value_and_grad_jit as _vg

pref = _Jitted(pref_lib)


LOG2 = math.log(2.0)


def _pair(d: float, n: int = 1):
    """Policy/ref sums with DPO margin d: s_w = d, s_l = 0."""
    return (
        jnp.full((n,), -10.0 + d),
        jnp.full((n,), -12.0),
        jnp.full((n,), -10.0),
        jnp.full((n,), -12.0),
    )


def test_dpo_sigmoid_at_zero_margin_is_log2_with_gradient_minus_half_beta():
    def f(pc):
        args = _pair(0.0)
        return pref.dpo_sigmoid_loss(pc, *args[1:], beta=0.1)[0]

    loss, grad = _vg(f)(_pair(0.0)[0])
    assert float(loss) == pytest.approx(LOG2)
    # ∂/∂s_w −log σ(βd) = −β·σ(−βd) = −β/2 at d = 0.
    assert float(grad[0]) == pytest.approx(-0.05)


def test_dpo_metrics():
    _, m = pref.dpo_sigmoid_loss(*_pair(2.0), beta=0.5)
    # rewards: chosen β·s_w = 1, rejected 0; margin 1; accuracy 1.
    assert float(m["rewards_chosen"]) == pytest.approx(1.0)
    assert float(m["reward_margin"]) == pytest.approx(1.0)
    assert float(m["reward_accuracy"]) == 1.0


def test_cdpo_has_finite_optimum():
    eps, beta = 0.1, 0.5
    d_star = math.log((1 - eps) / eps) / beta  # = ln 9 / 0.5 = 4.394449

    def f(d):
        return pref.dpo_cdpo_loss(*_pair(d), beta=beta, label_smoothing=eps)[0]

    assert float(_grad(f)(d_star)) == pytest.approx(0.0, abs=1e-6)
    assert float(_grad(f)(d_star - 1.0)) < 0 < float(_grad(f)(d_star + 1.0))
    # ε = 0 is DPO.
    a = pref.dpo_cdpo_loss(*_pair(1.3), beta=beta)[0]
    b = pref.dpo_sigmoid_loss(*_pair(1.3), beta=beta)[0]
    assert float(a) == pytest.approx(float(b))


def test_robust_dpo():
    # ε = 0 -> dpo_sigmoid.
    a = pref.dpo_robust_loss(*_pair(0.7), label_smoothing=0.0)[0]
    b = pref.dpo_sigmoid_loss(*_pair(0.7))[0]
    assert float(a) == pytest.approx(float(b))
    # d = 0, ε = 0.1: [−0.9·log ½ + 0.1·log ½]/0.8 = 0.8·ln 2/0.8 = ln 2.
    assert float(pref.dpo_robust_loss(*_pair(0.0))[0]) == pytest.approx(LOG2)
    with pytest.raises(ValueError, match="label_smoothing"):
        pref.dpo_robust_loss(*_pair(0.0), label_smoothing=0.5)


def test_ipo_zero_at_target_gap():
    # β = 0.1: target 1/(2β) = 5. s_w = 12 over 2 tokens -> 6; s_l = 3 over 3 tokens -> 1.
    pc, pr = jnp.array([2.0]), jnp.array([-7.0])
    rc, rr = jnp.array([-10.0]), jnp.array([-10.0])
    lc, lr = jnp.array([2.0]), jnp.array([3.0])
    loss, _ = pref.ipo_identity_loss(pc, pr, rc, rr, chosen_lengths=lc, rejected_lengths=lr)
    assert float(loss) == pytest.approx(0.0, abs=1e-10)
    # Raw sums (OpenRLHF): gap 12 − 3 = 9 -> (9 − 5)² = 16.
    loss, _ = pref.ipo_identity_loss(pc, pr, rc, rr, length_normalize=False)
    assert float(loss) == pytest.approx(16.0)
    with pytest.raises(ValueError, match="lengths"):
        pref.ipo_identity_loss(pc, pr, rc, rr)


def test_hinge():
    # βd = 0.1·15 = 1.5 ≥ 1: zero loss and zero gradient.
    loss, grad = _vg(lambda pc: pref.dpo_hinge_loss(pc, *_pair(15.0)[1:])[0])(_pair(15.0)[0])
    assert float(loss) == 0.0 and float(grad[0]) == 0.0
    # βd = 0.5: 1 − 0.5.
    assert float(pref.dpo_hinge_loss(*_pair(5.0))[0]) == pytest.approx(0.5)


def test_pair_weights():
    losses = jnp.array([1.0, 2.0, 100.0])
    # (1·1 + 3·2 + 0·100)/(1 + 3 + 0) = 7/4: the zero-weight pair is dropped.
    assert float(pref.pair_weights(losses, jnp.array([1.0, 3.0, 0.0]))) == pytest.approx(1.75)
    assert float(pref.pair_weights(losses)) == pytest.approx(103.0 / 3)
    assert float(pref.pair_weights(losses, jnp.zeros(3))) == 0.0
    # Micro-batch: global Σw = 4.
    assert float(pref.pair_weights(losses[:1], jnp.array([1.0]), total_weight=4.0)) == 0.25
    # Inside a loss: margins (0, big) with weights (1, 0) -> only the d = 0 pair counts.
    pc = jnp.array([-10.0, 50.0])
    rest = (jnp.full((2,), -12.0), jnp.full((2,), -10.0), jnp.full((2,), -12.0))
    loss, _ = pref.dpo_sigmoid_loss(pc, *rest, weights=jnp.array([1.0, 0.0]))
    assert float(loss) == pytest.approx(LOG2)


def test_vector_preferences():
    beta, d = 0.1, 3.0
    base = float(pref.dpo_sigmoid_loss(*_pair(d), beta=beta)[0])
    flipped = -math.log(1 / (1 + math.exp(beta * d)))  # −log σ(−βd)
    # One objective with label +1 is plain DPO; label −1 flips the pair.
    assert float(pref.dpo_sigmoid_loss(*_pair(d), labels=jnp.array([1.0]))[0]) == pytest.approx(
        base
    )
    assert float(pref.dpo_sigmoid_loss(*_pair(d), labels=jnp.array([-1.0]))[0]) == pytest.approx(
        flipped, rel=1e-6
    )
    # Two objectives, ω = (0.5, 2), labels (+1, −1), plus a tied third objective that drops out.
    chosen = jnp.array([[0.9, 0.1, 0.5]])
    rejected = jnp.array([[0.2, 0.8, 0.5]])
    labels = pref.vector_preference_labels(chosen, rejected)
    np.testing.assert_array_equal(labels, [[1.0, -1.0, 0.0]])
    loss, _ = pref.dpo_sigmoid_loss(
        *_pair(d), labels=labels, objective_weights=jnp.array([0.5, 2.0, 7.0])
    )
    assert float(loss) == pytest.approx(0.5 * base + 2.0 * flipped, rel=1e-6)


def test_adpo_two_candidates_one_hot_is_dpo():
    beta = 0.1
    pc, pr, rc, rr = jnp.array([-9.0]), jnp.array([-11.5]), jnp.array([-10.0]), jnp.array([-12.0])

    def dpo(pc):
        return pref.dpo_sigmoid_loss(pc, pr, rc, rr, beta=beta)[0]

    def adpo(pc):
        pol = jnp.stack([pc, pr], axis=-1)
        ref = jnp.stack([rc, rr], axis=-1)
        return pref.adpo_anchored_loss(pol, ref, jnp.array([[1.0, 0.0]]), tau=1 / beta)[0]

    np.testing.assert_allclose(_vg(adpo)(pc)[0], _vg(dpo)(pc)[0], rtol=1e-6)
    np.testing.assert_allclose(_grad(adpo)(pc), _grad(dpo)(pc), rtol=1e-5)


def test_adpo_curvature_scales_as_inverse_tau_squared():
    q = jnp.array([[0.5, 0.5]])
    ref = jnp.zeros((1, 2))

    def curvature(tau):
        f = lambda x: pref.adpo_anchored_loss(jnp.array([[x, 0.0]]), ref, q, tau=tau)[0]  # noqa: E731
        return float(_grad(jax.grad(f))(0.0))

    # K = 2: ∂²/∂x² of the softmax cross-entropy at x = 0 is σ'(0)/τ² = 0.25/τ².
    assert curvature(1.0) == pytest.approx(0.25, rel=1e-5)
    assert curvature(2.0) == pytest.approx(0.0625, rel=1e-5)


def test_adpo_soft_target_and_ragged_lists():
    # q equal to the model's softmax -> KL 0; q = (1, 0, 0) vs uniform over 3 -> ln 3.
    pol = jnp.zeros((2, 3))
    q = jnp.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    loss, m = pref.adpo_anchored_loss(pol, pol, q, tau=1.0, weights=jnp.array([0.0, 1.0]))
    assert float(loss) == pytest.approx(math.log(3.0), rel=1e-6)
    # A missing third candidate: uniform over 2 -> ln 2.
    loss, _ = pref.adpo_anchored_loss(
        pol[1:], pol[1:], q[1:], tau=1.0, candidate_mask=jnp.array([[1.0, 1.0, 0.0]])
    )
    assert float(loss) == pytest.approx(LOG2, rel=1e-6)
    # Only the weighted list counts: its argmax (a 3-way tie -> index 0) matches q.
    assert float(m["top1_accuracy"]) == 1.0
