"""Process-credit rules."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import advantages as adv_lib
from rewardjax.objectives import credit as credit_lib
from rewardjax.objectives.aggregation import masked_whiten
from rewardjax.testing import Jitted as _Jitted

adv = _Jitted(adv_lib)
credit = _Jitted(credit_lib)


P = jnp.array([[0.9, 0.2, 0.8]])
ONE3 = jnp.ones((1, 3))


def test_sum_and_min_form_fixtures():
    # Sum: (0.9 + 0.2 + 0.8, 0.2 + 0.8, 0.8); min: (min all, min(0.2, 0.8), 0.8).
    np.testing.assert_allclose(credit.sum_form_returns(P, ONE3), [[1.9, 1.0, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(credit.min_form_returns(P, ONE3), [[0.2, 0.2, 0.8]])
    # γ = 0.5: (0.9 + 0.5·0.2 + 0.25·0.8, 0.2 + 0.5·0.8, 0.8) = (1.2, 0.6, 0.8).
    np.testing.assert_allclose(
        credit.sum_form_returns(P, ONE3, gamma=0.5), [[1.2, 0.6, 0.8]], rtol=1e-6
    )


def test_min_form_is_reverse_cumulative_min_and_resists_step_farming():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4, 6)).astype(np.float32)
    lengths = np.array([6, 4, 1, 0])
    mask = (np.arange(6)[None] < lengths[:, None]).astype(np.float32)
    p_padded = np.where(mask > 0, p, -5.0)  # padding must not enter the minimum
    g = np.asarray(credit.min_form_returns(jnp.asarray(p_padded), jnp.asarray(mask)))
    for b, n in enumerate(lengths):
        expected = np.minimum.accumulate(p[b, :n][::-1])[::-1]
        np.testing.assert_allclose(g[b, :n], expected)
        assert np.all(g[b, n:] == 0.0)
    # Duplicating the highest step of row 0 never raises any return (sum-form would).
    row = p[0]
    k = int(np.argmax(row))
    dup = np.insert(row, k, row[k])[None]
    g_dup = np.asarray(credit.min_form_returns(jnp.asarray(dup), jnp.ones_like(dup)))
    g_orig = np.insert(g[0], k, g[0][k])
    assert np.all(g_dup[0] <= g_orig + 1e-7)
    s_dup = np.asarray(credit.sum_form_returns(jnp.asarray(dup), jnp.ones_like(dup)))
    assert s_dup[0, 0] > float(
        credit.sum_form_returns(jnp.asarray(row[None]), jnp.ones((1, 6)))[0, 0]
    )


def test_min_form_with_verifiable_reward():
    # Row 0 receives r_out = 1 on every step; row 1 is not selected.
    p = jnp.array([[0.9, 0.2, 0.8], [0.5, 0.6, 0.7]])
    g = credit.min_form_returns(
        p,
        jnp.ones((2, 3)),
        outcome_rewards=jnp.array([1.0, 1.0]),
        outcome_mask=jnp.array([1.0, 0.0]),
    )
    np.testing.assert_allclose(g, [[1.2, 1.2, 1.8], [0.5, 0.6, 0.7]], rtol=1e-6)


def test_returns_to_step_rewards_round_trip():
    g = credit.min_form_returns(P, ONE3)
    r = credit.returns_to_step_rewards(g, ONE3)
    # (0.2 − 0.2, 0.2 − 0.8, 0.8) = (0, −0.6, 0.8) and its sum-form returns are G again.
    np.testing.assert_allclose(r, [[0.0, -0.6, 0.8]], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(credit.sum_form_returns(r, ONE3), g, rtol=1e-6, atol=1e-7)


def test_clip_mechanism():
    # η = 0.5: min(p − 0.5, 0) = (0, −0.3, 0); every reward ≤ 0.
    np.testing.assert_allclose(
        credit.clip_delta_bounded(P, ONE3, threshold=0.5), [[0.0, -0.3, 0.0]], atol=1e-7
    )
    # Default η = batch mean of valid steps = 1.9/3.
    out = credit.clip_delta_bounded(P, ONE3)
    np.testing.assert_allclose(out, [[0.0, 0.2 - 1.9 / 3, 0.0]], rtol=1e-6, atol=1e-7)
    # Repeating a step never raises the total.
    rep = jnp.array([[0.9, 0.2, 0.8, 0.8, 0.8]])
    total = float(jnp.sum(credit.clip_delta_bounded(rep, jnp.ones((1, 5)), threshold=0.5)))
    assert total <= float(jnp.sum(credit.clip_delta_bounded(P, ONE3, threshold=0.5)))


def test_delta_mechanism_telescopes():
    # (0.9 − 0.2, 0.2 − 0.8, 0.8) = (0.7, −0.6, 0.8), sum = p_1 = 0.9.
    d = credit.clip_delta_bounded(P, ONE3, mode="delta")
    np.testing.assert_allclose(d, [[0.7, -0.6, 0.8]], rtol=1e-6)
    rng = np.random.default_rng(1)
    for s in (1, 4, 9):
        p = jnp.asarray(rng.uniform(size=(1, s)), jnp.float32)
        total = float(jnp.sum(credit.clip_delta_bounded(p, jnp.ones((1, s)), mode="delta")))
        assert total == pytest.approx(float(p[0, 0]), rel=1e-5)
    # Padded steps are ignored: row of 2 real steps (0.3, 0.6) -> (−0.3, 0.6).
    d = credit.clip_delta_bounded(
        jnp.array([[0.3, 0.6, 9.0]]), jnp.array([[1.0, 1.0, 0.0]]), mode="delta"
    )
    np.testing.assert_allclose(d, [[-0.3, 0.6, 0.0]], rtol=1e-6)


def test_pav_progress_telescopes():
    v = jnp.array([[0.5, 0.25, 0.75, 9.0]])
    sm = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    # V(prompt) = 0.5: progress = (0, −0.25, 0.5); α = 2 -> (0, −0.5, 1); Σ = 2·(0.75 − 0.5).
    r = credit.pav_progress(v, jnp.array([0.5]), sm, coef=2.0)
    np.testing.assert_allclose(r, [[0.0, -0.5, 1.0, 0.0]])
    assert float(jnp.sum(r)) == pytest.approx(2.0 * (0.75 - 0.5))
    # Outcome added at the last real step.
    r = credit.pav_progress(v, jnp.array([0.5]), sm, coef=2.0, outcome_rewards=jnp.array([1.0]))
    np.testing.assert_allclose(r, [[0.0, -0.5, 2.0, 0.0]])


def test_step_to_token():
    mask = jnp.array([[1.0, 1, 1, 1, 1, 0]])
    ends = jnp.array([[1, 4, 5]])
    sm = jnp.array([[1.0, 1.0, 0.0]])
    p = jnp.array([[0.6, 0.9, 7.0]])
    # Sparse: 0.6 at token 1, 0.9 at token 4.
    np.testing.assert_allclose(credit.step_to_token(p, ends, sm, mask), [[0, 0.6, 0, 0, 0.9, 0]])
    # Spread: step 0 = tokens 0–1 (0.3 each), step 1 = tokens 2–4 (0.3 each).
    spread = credit.step_to_token(p, ends, sm, mask, mode="spread")
    np.testing.assert_allclose(spread, [[0.3, 0.3, 0.3, 0.3, 0.3, 0]], rtol=1e-6)
    assert float(jnp.sum(spread)) == pytest.approx(1.5)
    # An observation token (mask 0) inside step 1 takes no share: 0.45 on tokens 2 and 4.
    obs = mask.at[0, 3].set(0.0)
    np.testing.assert_allclose(
        credit.step_to_token(p, ends, sm, obs, mode="spread"),
        [[0.3, 0.3, 0.45, 0, 0.45, 0]],
        rtol=1e-6,
    )


def test_prime_combined_rloo():
    mask = jnp.array([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    outcome = jnp.array([1.0, 0.0, 1.0, 1.0])
    q = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)
    # c_rm = 0: whitened outcome RLOO. Outcome RLOO with G = 2: (1, −1, 0, 0) at the last token;
    # γ = 1 returns broadcast it over the row; then masked whitening.
    a = credit.prime_combined_rloo(q, outcome, mask, group_size=2, rm_coef=0.0, gt_coef=1.0)
    rloo = adv.rloo(outcome, group_size=2)
    expected = masked_whiten(adv.broadcast_to_tokens(rloo, mask), mask)
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)
    # Token rule on the process rewards, rows 0–1 (G = 2), γ = 1 and no whitening check by hand:
    # r′_{0,t} = 2·q_{0,t} − (mean q_0 + mean q_1).
    qn = np.asarray(q)
    r0 = 2 * qn[0] - (qn[0].mean() + qn[1, :2].mean())
    returns = np.flip(np.cumsum(np.flip(r0)))
    b = credit.prime_combined_rloo(q, outcome, mask, group_size=2, rm_coef=1.0, gt_coef=0.0)
    # Whitening is affine: compare after removing it with the batch statistics of b's input.
    full = np.zeros((4, 3))
    for i in range(4):
        j = i ^ 1
        n_i, n_j = int(mask[i].sum()), int(mask[j].sum())
        ri = 2 * qn[i, :n_i] - (qn[i, :n_i].mean() + qn[j, :n_j].mean())
        full[i, :n_i] = np.flip(np.cumsum(np.flip(ri)))
    np.testing.assert_allclose(full[0], returns, rtol=1e-5)
    np.testing.assert_allclose(
        b, masked_whiten(jnp.asarray(full, jnp.float32), mask), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="group_size"):
        credit.prime_combined_rloo(q, outcome, mask, group_size=3)


def test_success_gated_process():
    out = credit.success_gated_process(
        jnp.array([1.0, 0.0, -1.0, 1.0]), jnp.array([0.5, 0.9, 0.9, -0.2]), coef=0.5
    )
    # Failures (0 and −1) ignore r_proc; successes add 0.5·r_proc.
    np.testing.assert_allclose(out, [1.25, 0.0, -1.0, 0.9], rtol=1e-6)
    out = credit.success_gated_process(
        jnp.array([0.0]), jnp.array([0.8]), coef=1.0, success=jnp.array([True])
    )
    np.testing.assert_allclose(out, [0.8])
