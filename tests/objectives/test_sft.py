"""SFT-family losses."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import sft as sft_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import grad_jit as _grad
from rewardjax.testing import value_and_grad_jit as _vg

sft = _Jitted(sft_lib)


HALF = math.log(0.5)


def test_sft_nll_half_probability_is_log2():
    logp = jnp.array([[HALF, HALF, -30.0]])  # third token is padding
    mask = jnp.array([[1.0, 1.0, 0.0]])
    loss, m = sft.sft_nll_loss(logp, mask)
    assert float(loss) == pytest.approx(math.log(2))
    assert float(m["token_prob"]) == pytest.approx(0.5)
    # Sequence-mean aggregation: rows of lengths (2, 1) with NLL (ln 2, ln 4) -> (ln 2 + ln 4)/2.
    logp = jnp.array([[HALF, HALF], [math.log(0.25), -9.0]])
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = sft.sft_nll_loss(logp, mask, aggregation="seq_mean_token_mean")
    assert float(loss) == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_dft_gradient_is_minus_grad_p():
    logp = jnp.array([[HALF, math.log(0.2)]])
    mask = jnp.ones((1, 2))
    loss, grad = _vg(lambda lp: sft.dft_prob_weighted_loss(lp, mask)[0])(logp)
    # L = −(0.5·ln 0.5 + 0.2·ln 0.2)/2; ∂L/∂logp_t = −sg[p_t]/2 = −∂p_t/∂logp_t / 2.
    assert float(loss) == pytest.approx(-(0.5 * HALF + 0.2 * math.log(0.2)) / 2)
    np.testing.assert_allclose(grad, [[-0.25, -0.1]], rtol=1e-6)
    p_grad = _grad(lambda lp: jnp.sum(jnp.exp(lp)) / 2)(logp)
    np.testing.assert_allclose(grad, -p_grad, rtol=1e-6)


def test_asft_adds_kl_anchor():
    logp = jnp.array([[HALF, math.log(0.2)]])
    mask = jnp.ones((1, 2))
    kl = jnp.array([[0.3, 0.1]])
    dft, _ = sft.dft_prob_weighted_loss(logp, mask)
    a0, _ = sft.asft_anchored_loss(logp, mask, token_kl=kl, kl_coef=0.0)
    assert float(a0) == pytest.approx(float(dft))
    # λ = 0.5: + 0.5·mean(0.3, 0.1) = + 0.1.
    a, m = sft.asft_anchored_loss(logp, mask, token_kl=kl, kl_coef=0.5)
    assert float(a) == pytest.approx(float(dft) + 0.1)
    assert float(m["kl"]) == pytest.approx(0.2)


def test_reward_ranked_selection():
    rewards = jnp.array([0.2, 0.9, 0.9, 0.1, 0.5, 0.7])
    # Groups of 3: (0.2, 0.9, 0.9) -> top-1 is row 1 (tie -> lower index); (0.1, 0.5, 0.7) -> row 5.
    np.testing.assert_array_equal(
        sft.reward_ranked_selection(rewards, group_size=3), [0, 1, 0, 0, 0, 1]
    )
    np.testing.assert_array_equal(
        sft.reward_ranked_selection(rewards, group_size=3, top_k=2), [0, 1, 1, 0, 1, 1]
    )
    np.testing.assert_array_equal(
        sft.reward_ranked_selection(rewards, group_size=3, top_k=None, threshold=0.6),
        [0, 1, 1, 0, 0, 1],
    )
    # Ragged groups by id.
    np.testing.assert_array_equal(
        sft.reward_ranked_selection(rewards, jnp.array([0, 0, 1, 1, 1, 1])), [0, 1, 1, 0, 0, 0]
    )


def test_raft_keeps_best_and_k_equals_n_is_sft():
    rng = np.random.default_rng(0)
    logp = jnp.asarray(-rng.uniform(0.1, 2, (4, 3)), jnp.float32)
    mask = jnp.ones((4, 3))
    rewards = jnp.array([0.0, 1.0, 0.5, 0.2])
    full, _ = sft.sft_nll_loss(logp, mask)
    all_kept, m = sft.raft_reward_ranked_loss(logp, mask, rewards, group_size=2, top_k=2)
    assert float(all_kept) == pytest.approx(float(full))
    assert float(m["kept_frac"]) == 1.0
    best, m = sft.raft_reward_ranked_loss(logp, mask, rewards, group_size=2)
    # Rows 1 and 2 are the group winners: SFT on them only.
    assert float(best) == pytest.approx(float(-jnp.mean(logp[1:3])), rel=1e-6)
    assert float(m["kept_reward_mean"]) == pytest.approx(0.75)
