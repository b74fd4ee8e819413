"""Reward-model and PRM losses."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import reward_modeling as rm_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import value_and_grad_jit as _vg

rm = _Jitted(rm_lib)


LOG2 = math.log(2.0)


def test_bt_pairwise():
    # Equal rewards, m = 0: −log σ(0) = ln 2.
    loss, m = rm.bt_pairwise_loss(jnp.array([0.3]), jnp.array([0.3]))
    assert float(loss) == pytest.approx(LOG2)
    assert float(m["accuracy"]) == 0.0  # ties are not correct
    # Margin: Δ = 1, m = 1 -> ln 2.
    loss, _ = rm.bt_pairwise_loss(jnp.array([2.0]), jnp.array([1.0]), margin=jnp.array([1.0]))
    assert float(loss) == pytest.approx(LOG2)
    # Centering: (1, 1) with λ_c = 0.01 -> ln 2 + 0.01·(1 + 1)² = ln 2 + 0.04.
    loss, _ = rm.bt_pairwise_loss(jnp.array([1.0]), jnp.array([1.0]), center_coef=0.01)
    assert float(loss) == pytest.approx(LOG2 + 0.04)


def test_bt_common_shift_changes_only_centering_term():
    r_w, r_l = jnp.array([1.0, -0.5]), jnp.array([0.2, 0.4])
    a, _ = rm.bt_pairwise_loss(r_w, r_l)
    b, _ = rm.bt_pairwise_loss(r_w + 5.0, r_l + 5.0)
    assert float(a) == pytest.approx(float(b))
    c, _ = rm.bt_pairwise_loss(r_w + 5.0, r_l + 5.0, center_coef=0.01)
    # Centering term: 0.01·mean((r_w + r_l + 10)²) = 0.01·(11.2² + 9.9²)/2.
    assert float(c) - float(b) == pytest.approx(0.01 * (11.2**2 + 9.9**2) / 2, rel=1e-5)


def test_regression_rm():
    pred = jnp.array([[1.0, 2.0], [0.5, 0.5]])
    assert float(rm.regression_rm_loss(pred, pred)[0]) == 0.0
    # Row 0: 1·1² + 0.5·2² = 3; row 1 has its attribute 1 unrated: 1·0.5² = 0.25 -> mean 1.625.
    loss, _ = rm.regression_rm_loss(
        pred,
        jnp.zeros((2, 2)),
        attribute_weights=jnp.array([1.0, 0.5]),
        target_mask=jnp.array([[1.0, 1.0], [1.0, 0.0]]),
    )
    assert float(loss) == pytest.approx(1.625)


def test_bt_plus_regression():
    r_w, r_l = jnp.array([0.4]), jnp.array([0.1])
    pred, tgt = jnp.array([[1.0]]), jnp.array([[3.0]])
    bt, _ = rm.bt_pairwise_loss(r_w, r_l)
    zero, _ = rm.bt_plus_regression_loss(r_w, r_l, pred, tgt, regression_coef=0.0)
    assert float(zero) == pytest.approx(float(bt))
    # λ = 0.5: + 0.5·(1 − 3)² = + 2.
    loss, m = rm.bt_plus_regression_loss(r_w, r_l, pred, tgt, regression_coef=0.5)
    assert float(loss) == pytest.approx(float(bt) + 2.0)
    assert float(m["mse_loss"]) == pytest.approx(4.0)


def test_tie_aware_is_symmetric_with_minimum_log2():
    tie = jnp.array([1.0])

    def f(r_w, r_l):
        return rm.bt_tie_aware_loss(r_w, r_l, tie)[0]

    # Minimum ln 2 at Δ = 0 with zero gradient.
    loss, g = _vg(f)(jnp.array([0.7]), jnp.array([0.7]))
    assert float(loss) == pytest.approx(LOG2)
    assert float(g[0]) == pytest.approx(0.0, abs=1e-7)
    # Symmetric: swapping the pair changes nothing; any gap costs more than ln 2.
    a = f(jnp.array([1.5]), jnp.array([0.0]))
    b = f(jnp.array([0.0]), jnp.array([1.5]))
    assert float(a) == pytest.approx(float(b))
    # −½ log σ(1.5) − ½ log σ(−1.5) = ½(0.201413 + 1.701413) = 0.951413.
    assert float(a) == pytest.approx(0.951413, rel=1e-5)
    # Ordered pairs are plain BT.
    loss, _ = rm.bt_tie_aware_loss(jnp.array([1.5]), jnp.array([0.0]), jnp.array([0.0]))
    assert float(loss) == pytest.approx(0.201413, rel=1e-5)


def test_prm_step_bce():
    z = jnp.zeros((1, 3))
    mask = jnp.array([[1.0, 1.0, 0.0]])
    # Label ½ at z = 0: BCE = ln 2, gradient (σ(z) − y) = 0.
    loss, g = _vg(lambda z: rm.prm_step_bce_loss(z, jnp.full((1, 3), 0.5), mask)[0])(z)
    assert float(loss) == pytest.approx(LOG2)
    np.testing.assert_allclose(g, np.zeros((1, 3)), atol=1e-8)
    # Hard labels (1, 0) at logits (ln 3, ln 3): σ = 0.75 -> (−ln 0.75 − ln 0.25)/2.
    z = jnp.full((1, 3), math.log(3.0))
    loss, m = rm.prm_step_bce_loss(z, jnp.array([[1.0, 0.0, 1.0]]), mask)
    assert float(loss) == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2, rel=1e-6)
    assert float(m["step_accuracy"]) == 0.5
    # Last step only: step 1 (label 0) -> −ln 0.25.
    loss, _ = rm.prm_step_bce_loss(z, jnp.array([[1.0, 0.0, 1.0]]), mask, last_step_only=True)
    assert float(loss) == pytest.approx(-math.log(0.25), rel=1e-6)


def test_step_helpers():
    x = jnp.array([[10.0, 11.0, 12.0, 13.0]])
    np.testing.assert_allclose(rm.gather_at_steps(x, jnp.array([[1, 3]])), [[11.0, 13.0]])
    # K = 4 completions per prefix: correct counts (3, 0) -> soft (0.75, 0), hard (1, 0).
    c = jnp.array([[[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    np.testing.assert_allclose(rm.mc_step_labels(c), [[0.75, 0.0]])
    np.testing.assert_allclose(rm.mc_step_labels(c, hard=True), [[1.0, 0.0]])


def test_implicit_prm():
    logp = jnp.array([[-1.0, -2.0, -0.5, -9.0]])
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    # ψ = ref: rewards 0, loss BCE(σ(0), y) = ln 2 for either label.
    loss, m = rm.implicit_prm_loss(logp, logp, mask, jnp.array([1.0]))
    assert float(loss) == pytest.approx(LOG2)
    assert float(m["reward_mean"]) == 0.0
    # q = (0.5, 1, −1), β = 0.5: token rewards (0.25, 0.5, −0.5); steps ending at 1 and 2 -> (0.75, −0.5).
    ref = logp - jnp.array([[0.5, 1.0, -1.0, 0.0]])
    q = rm.implicit_process_rewards(logp, ref, mask, beta=0.5)
    np.testing.assert_allclose(q, [[0.25, 0.5, -0.5, 0.0]], rtol=1e-6)
    steps = rm.implicit_process_rewards(logp, ref, mask, beta=0.5, step_end=jnp.array([[1, 2]]))
    np.testing.assert_allclose(steps, [[0.75, -0.5]], rtol=1e-6)
    # Outcome score β·Σq = 0.25 with label 1: −log σ(0.25).
    loss, _ = rm.implicit_prm_loss(logp, ref, mask, jnp.array([1.0]), beta=0.5)
    assert float(loss) == pytest.approx(-math.log(1 / (1 + math.exp(-0.25))), rel=1e-6)


def test_laser_last_token_mse():
    # log π(t*) = c -> score 0; loss α·mean((0 − r)²) = 0.5·(1 + 0)/2.
    lp = jnp.array([-5.0, -5.0])
    loss, m = rm.laser_last_token_mse_loss(
        lp, jnp.array([1.0, 0.0]), kl_coef=0.1, ref_constant=-5.0, coef=0.5
    )
    assert float(m["self_reward_mean"]) == 0.0
    assert float(loss) == pytest.approx(0.25)
    # score = 0.1·(5 − (−5)) = 1 matches r = 1 -> 0.
    loss, _ = rm.laser_last_token_mse_loss(
        jnp.array([5.0]), jnp.array([1.0]), kl_coef=0.1, ref_constant=-5.0, coef=0.5
    )
    assert float(loss) == pytest.approx(0.0, abs=1e-10)


def test_rm_ensemble():
    members = jnp.array([[1.0, 0.0], [2.0, 0.0], [6.0, 0.0]])
    np.testing.assert_allclose(rm.rm_ensemble(members), [3.0, 0.0])
    np.testing.assert_allclose(rm.rm_ensemble(members, mode="median"), [2.0, 0.0])
    np.testing.assert_allclose(rm.rm_ensemble(members, mode="min"), [1.0, 0.0])
    # std (ddof 0) of (1, 2, 6) = sqrt(14/3); mean − 0.5·std.
    np.testing.assert_allclose(
        rm.rm_ensemble(members, mode="mean_minus_std", std_coef=0.5),
        [3.0 - 0.5 * math.sqrt(14 / 3), 0.0],
        rtol=1e-6,
    )
    identical = jnp.ones((4, 3)) * jnp.array([0.1, 0.5, 0.9])
    for mode in ("mean", "median", "min", "mean_minus_std"):
        np.testing.assert_allclose(rm.rm_ensemble(identical, mode=mode), [0.1, 0.5, 0.9], rtol=1e-6)
    with pytest.raises(ValueError, match="median"):
        rm.rm_ensemble(members, mode="max")
