"""KL estimators, KL placement and the adaptive controller."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import kl as kl_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import fast_jit as _jit
from rewardjax.testing import grad_jit as _grad

kl = _Jitted(kl_lib)


def test_estimator_fixtures():
    logp = jnp.array([[0.0, -math.log(2.0), -0.1]])
    ref = jnp.array([[math.log(2.0), 0.0, 0.0]])
    # δ = ref − logp = (ln 2, ln 2, 0.1).
    # k1 = logp − ref = (−ln 2, −ln 2, −0.1): negative per token.
    np.testing.assert_allclose(kl.kl_k1(logp, ref), [[-math.log(2)] * 2 + [-0.1]], rtol=1e-6)
    # k2 = ½δ²: δ = 0.1 -> 0.005.
    assert float(kl.kl_k2(logp, ref)[0, 2]) == pytest.approx(0.005, rel=1e-5)
    # k3 = e^δ − δ − 1: δ = ln 2 -> 2 − 0.693147 − 1 = 0.306853.
    assert float(kl.kl_k3(logp, ref)[0, 0]) == pytest.approx(0.3068528, rel=1e-5)


def test_k3_is_non_negative_and_clamped():
    rng = np.random.default_rng(0)
    logp = jnp.asarray(rng.normal(0, 5, (8, 16)), jnp.float32)
    ref = jnp.asarray(rng.normal(0, 5, (8, 16)), jnp.float32)
    k3 = np.asarray(kl.kl_k3(logp, ref))
    assert np.all(k3 >= 0.0)
    assert np.all(k3 <= 10.0)
    # δ = 100 (clamped to 20) would overflow without the clamps: the result is capped at 10.
    assert float(kl.kl_k3(jnp.array([[-100.0]]), jnp.array([[0.0]]))[0, 0]) == 10.0


def test_straight_through_value_and_gradient():
    logp = jnp.array([[-1.0, -2.0]])
    ref = jnp.array([[-0.5, -2.5]])
    # Forward = k3; gradient = ∇k2 = −δ = logp − ref.
    st = kl.kl_straight_through(logp, ref)
    np.testing.assert_allclose(st, kl.kl_k3(logp, ref), rtol=1e-6)
    grad = _grad(lambda lp: jnp.sum(kl.kl_straight_through(lp, ref)))(logp)
    np.testing.assert_allclose(grad, logp - ref, rtol=1e-6)
    # Resolved by name: "kl_k3+" / "k1+".
    np.testing.assert_allclose(_jit(kl_lib.get_kl_estimator("kl_k3+"))(logp, ref), st)
    np.testing.assert_allclose(_jit(kl_lib.get_kl_estimator("k1+"))(logp, ref), kl.kl_k1(logp, ref))
    with pytest.raises(KeyError, match="kl_k3"):
        kl_lib.get_kl_estimator("k4")


def test_kl_in_reward():
    rewards = jnp.array([[0.0, 0.0, 1.0, 5.0]])
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    old = jnp.array([[-1.0, -1.0, -1.0, -1.0]])
    ref = jnp.array([[-1.5, -1.0, -0.5, -9.0]])
    # k1 = old − ref = (0.5, 0, −0.5); β = 0.1: r − βk1 = (−0.05, 0, 1.05); masked token unchanged.
    out, m = kl.kl_in_reward(rewards, old, ref, mask, kl_coef=0.1)
    np.testing.assert_allclose(out, [[-0.05, 0.0, 1.05, 5.0]], rtol=1e-6)
    assert float(m["kl_reward"]) == pytest.approx(0.0, abs=1e-7)
    # β = 0 -> unchanged.
    out, _ = kl.kl_in_reward(rewards, old, ref, mask, kl_coef=0.0)
    np.testing.assert_allclose(out, rewards)


def test_kl_in_loss_zero_gradient_at_reference():
    logp = jnp.array([[-1.0, -2.0, -0.3]])
    mask = jnp.ones((1, 3))

    for est in ("kl_k1", "kl_k2", "kl_k3", "kl_k3+"):

        def f(lp, ref, est=est):
            return kl.kl_in_loss(lp, ref, mask, kl_coef=0.04, estimator=est)[0]

        g = _grad(f)(logp, logp)
        if est == "kl_k1":
            np.testing.assert_allclose(g, np.full((1, 3), 0.04 / 3), rtol=1e-6)  # ∂(logp − ref) = 1
        else:
            np.testing.assert_allclose(g, np.zeros((1, 3)), atol=1e-8)
    # Value: β·token_mean(k3) with δ = ln 2 on every token: 0.04·0.306853.
    loss, m = kl.kl_in_loss(logp, logp + math.log(2), mask, kl_coef=0.04)
    assert float(loss) == pytest.approx(0.04 * 0.3068528, rel=1e-5)
    assert float(m["kl_ref"]) == pytest.approx(0.3068528, rel=1e-5)


def test_adaptive_kl_controller():
    ctrl = kl_lib.adaptive_kl_controller(init_kl_coef=0.01, target=0.1, horizon=100.0)
    state = ctrl.init()
    assert float(state.kl_coef) == pytest.approx(0.01)
    # KL = target: error 0, β unchanged.
    assert float(ctrl.update(state, 0.1, 50).kl_coef) == pytest.approx(0.01)
    # 10× target over one horizon: error clipped to 0.2 -> β·1.2.
    assert float(ctrl.update(state, 1.0, 100).kl_coef) == pytest.approx(0.012)
    # Half the target over half a horizon: error −0.5 clipped to −0.2, × 0.5 -> β·0.9.
    assert float(ctrl.update(state, 0.05, 50).kl_coef) == pytest.approx(0.009)
    # Pure and jit-able.
    jitted = jax.jit(ctrl.update)
    assert float(jitted(state, 1.0, 100).kl_coef) == pytest.approx(0.012)


def test_full_vocab_kl():
    logits = jnp.log(jnp.array([[[0.5, 0.5]]]))
    ref_logits = jnp.log(jnp.array([[[0.25, 0.75]]]))
    # KL(p‖q) = 0.5·ln(0.5/0.25) + 0.5·ln(0.5/0.75) = 0.5·ln 2 + 0.5·ln(2/3) = 0.143841.
    assert float(kl.full_vocab_kl(logits, ref_logits)[0, 0]) == pytest.approx(0.1438410, rel=1e-5)
    # KL(q‖p) = 0.25·ln 0.5 + 0.75·ln 1.5 = 0.130812.
    fwd = kl.full_vocab_kl(logits, ref_logits, direction="forward")
    assert float(fwd[0, 0]) == pytest.approx(0.1308120, rel=1e-5)
