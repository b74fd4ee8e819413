"""rewardjax.rewards.likelihood: on-device reference-answer likelihood rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.rewards import ref_answer_logprob, rlpr_prob_reward

LOGP = jnp.log(jnp.array([[0.5, 0.25, 0.9, 0.1], [0.8, 0.5, 0.5, 0.5]]))  # [B=2, T=4]
MASK = jnp.array([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # answer tokens


def test_ref_answer_logprob_hand_computed():
    # Row 0: log 0.25 + log 0.9 = log 0.225; row 1: log(0.8·0.125) = log 0.1.
    r = jax.jit(ref_answer_logprob)(LOGP, MASK)
    np.testing.assert_allclose(r, np.log([0.225, 0.1]), rtol=1e-6)
    r = ref_answer_logprob(LOGP, MASK, length_normalize=True)
    np.testing.assert_allclose(r, [np.log(0.225) / 2, np.log(0.1) / 4], rtol=1e-6)
    r = ref_answer_logprob(LOGP, MASK, variant="prob")
    np.testing.assert_allclose(r, [0.225, 0.1], rtol=1e-6)


def test_prob_variant_vanishes_on_long_answers():
    # Every token at probability 0.9: e^r = 0.9^T → 0, the log-prob stays linear in T.
    for t in (10, 100):
        logp = jnp.full((1, t), jnp.log(0.9))
        prob = ref_answer_logprob(logp, jnp.ones((1, t)), variant="prob")
        np.testing.assert_allclose(prob, [0.9**t], rtol=1e-4)
        logprob = ref_answer_logprob(logp, jnp.ones((1, t)))
        np.testing.assert_allclose(logprob, [t * np.log(0.9)], rtol=1e-5)
    logp = jnp.full((1, 1000), jnp.log(0.9))
    assert (
        float(ref_answer_logprob(logp, jnp.ones((1, 1000)), variant="prob")[0]) == 0.0
    )  # underflow


def test_ref_answer_logprob_has_no_gradient_and_checks_shapes():
    g = jax.grad(lambda lp: ref_answer_logprob(lp, MASK).sum())(LOGP)
    np.testing.assert_array_equal(g, np.zeros_like(LOGP))
    with pytest.raises(AssertionError):
        ref_answer_logprob(LOGP, MASK[:, :3])
    with pytest.raises(ValueError):
        ref_answer_logprob(LOGP, MASK, variant="nope")


def test_rlpr_prob_reward():
    # Row 0: mean(0.25, 0.9) = 0.575; row 1: mean(0.8, 0.5, 0.5, 0.5) = 0.575.
    r = rlpr_prob_reward(LOGP, MASK, debias=False)
    np.testing.assert_allclose(r, [0.575, 0.575], rtol=1e-6)
    # Baselines: row 0 mean prob 0.2 → 0.375; row 1 0.9 → clip(−0.325) = 0.
    base = jnp.log(jnp.array([[0.2, 0.2], [0.9, 0.9]]))
    r = jax.jit(rlpr_prob_reward)(LOGP, MASK, base, jnp.ones((2, 2)))
    np.testing.assert_allclose(r, [0.375, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        rlpr_prob_reward(LOGP, MASK)
