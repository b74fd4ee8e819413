"""Advantage estimators: hand-computed fixtures and cross-checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import advantages as adv_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import fast_jit as _jit

adv = _Jitted(adv_lib)


from rewardjax.testing import assert_close as _close  # noqa: E402


def test_grpo_group_norm_fixture():
    # [1,0,0,0]: mean 0.25, std (ddof 1) = sqrt((0.5625 + 3·0.0625)/3) = 0.5
    # -> A = (0.75, −0.25, −0.25, −0.25)/0.5 = (1.5, −0.5, −0.5, −0.5).
    a = adv.grpo_group_norm(jnp.array([1.0, 0.0, 0.0, 0.0]), group_size=4)
    _close(a, [1.5, -0.5, -0.5, -0.5], rtol=1e-5)
    assert float(jnp.sum(a)) == pytest.approx(0.0, abs=1e-6)
    # Without std scaling: the centred rewards.
    a = adv.grpo_group_norm(jnp.array([1.0, 0.0, 0.0, 0.0]), group_size=4, scale_by_std=False)
    _close(a, [0.75, -0.25, -0.25, -0.25])


@pytest.mark.parametrize(
    "name", ["grpo_group_norm", "drgrpo_group_center", "batch_std_norm", "rloo", "grpo_passk"]
)
def test_equal_rewards_give_exactly_zero(name):
    from rewardjax import registry

    fn = _jit(registry.ADVANTAGES.get(name))
    # 0.1 is not representable: a naive (r − mean)/(std + ε) gives ±1e-2 noise here.
    rewards = jnp.array([0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 0.0, 1.0, 0.5])
    a = np.asarray(fn(rewards, group_size=3))
    assert np.all(a[:6] == 0.0)
    assert np.all(np.isfinite(a))
    assert np.any(a[6:] != 0.0)


def test_group_sums_are_zero_and_groups_independent():
    rng = np.random.default_rng(0)
    rewards = jnp.asarray(rng.normal(size=12), jnp.float32)
    a = adv.grpo_group_norm(rewards, group_size=4)
    _close(jnp.sum(a.reshape(3, 4), axis=1), np.zeros(3), atol=1e-5)
    # Changing group 2 leaves groups 0 and 1 alone.
    b = adv.grpo_group_norm(rewards.at[8:].set(rewards[8:] * 3 + 1), group_size=4)
    _close(a[:8], b[:8])


def test_drgrpo_is_shift_invariant_per_group():
    rewards = jnp.array([1.0, 0.0, 0.5, 2.0, 3.0, 7.0])
    a = adv.drgrpo_group_center(rewards, group_size=3)
    # Group 0 centred: mean 0.5 -> (0.5, −0.5, 0); group 1: mean 4 -> (−2, −1, 3).
    _close(a, [0.5, -0.5, 0.0, -2.0, -1.0, 3.0])
    shifted = adv.drgrpo_group_center(rewards + jnp.array([10, 10, 10, -3, -3, -3.0]), group_size=3)
    _close(a, shifted, atol=1e-5)


def test_batch_std_norm_fixture():
    # Groups (1, 0), (1, 1): centred (0.5, −0.5, 0, 0); batch std (ddof 1) of
    # [1, 0, 1, 1]: mean 0.75, var (0.0625 + 0.5625 + 0.0625 + 0.0625)/3 = 0.25 -> 0.5.
    a = adv.batch_std_norm(jnp.array([1.0, 0.0, 1.0, 1.0]), group_size=2)
    _close(a, [1.0, -1.0, 0.0, 0.0], rtol=1e-3)


def test_rloo_fixture_and_python_loop():
    # [1,0,0,0]: 1 − 0 = 1; 0 − 1/3 = −1/3.
    _close(
        adv.rloo(jnp.array([1.0, 0.0, 0.0, 0.0]), group_size=4),
        [1, -1 / 3, -1 / 3, -1 / 3],
        rtol=1e-6,
    )
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=9).astype(np.float32)
    group_id = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    expected = []
    for i in range(9):
        others = [rewards[j] for j in range(9) if j != i and group_id[j] == group_id[i]]
        expected.append(rewards[i] - np.mean(others))
    _close(adv.rloo(jnp.asarray(rewards), jnp.asarray(group_id)), expected, rtol=1e-5, atol=1e-6)


def test_invalid_rows_get_zero_and_are_excluded():
    # Row 2 unscored (a None reward, here a garbage 99): group (1, 0, −, 0) behaves as (1, 0, 0).
    rewards = jnp.array([1.0, 0.0, 99.0, 0.0])
    valid = jnp.array([1.0, 1.0, 0.0, 1.0])
    a = adv.rloo(rewards, group_size=4, valid=valid)
    b = adv.rloo(jnp.array([1.0, 0.0, 0.0]), group_size=3)
    _close(a, [b[0], b[1], 0.0, b[2]], rtol=1e-6)
    a = adv.grpo_group_norm(rewards, group_size=4, valid=valid)
    b = adv.grpo_group_norm(jnp.array([1.0, 0.0, 0.0]), group_size=3)
    _close(a, [b[0], b[1], 0.0, b[2]], rtol=1e-6)


def test_singleton_groups():
    with pytest.raises(ValueError, match="allow_singleton"):
        adv.grpo_group_norm(jnp.array([1.0, 0.0]), group_size=1)
    with pytest.raises(ValueError, match="single row"):  # a concrete group_id is checked
        adv_lib.rloo(jnp.array([1.0, 0.0, 0.5]), jnp.array([0, 0, 1]))
    # verl semantics: mean 0, std 1 -> A = r.
    _close(
        adv.grpo_group_norm(jnp.array([0.3, 0.7]), group_size=1, allow_singleton=True), [0.3, 0.7]
    )
    _close(adv.rloo(jnp.array([0.3, 0.7]), group_size=1, allow_singleton=True), [0.3, 0.7])
    with pytest.raises(ValueError, match="does not divide"):
        adv.grpo_group_norm(jnp.ones(5), group_size=2)


def test_traced_group_id_works_under_jit():
    f = jax.jit(lambda r, g: adv.grpo_group_norm(r, g))
    a = f(jnp.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0]), jnp.array([0, 0, 0, 0, 1, 1]))
    _close(a, [1.5, -0.5, -0.5, -0.5, 0.0, 0.0], rtol=1e-5)


def test_opo_length_baseline():
    # Lengths (1, 3), rewards (1, 0): b = (1·1 + 3·0)/4 = 0.25 -> A = (0.75, −0.25).
    mask = jnp.array([[1.0, 0, 0], [1, 1, 1]])
    _close(adv.opo_length_baseline(jnp.array([1.0, 0.0]), mask=mask, group_size=2), [0.75, -0.25])
    # Equal lengths: plain centring.
    rewards = jnp.array([1.0, 0.0, 0.0, 0.5])
    a = adv.opo_length_baseline(rewards, mask=jnp.ones((4, 3)), group_size=4)
    _close(a, adv.drgrpo_group_center(rewards, group_size=4), atol=1e-6)


def test_grpo_passk():
    # [1,1,0,0]: r_max − r_2nd = 0 -> all 0.
    _close(adv.grpo_passk(jnp.array([1.0, 1.0, 0.0, 0.0]), group_size=4), np.zeros(4))
    # [1,0,0,0]: lead 1, std 0.5 -> A_0 = 1/(0.5 + 1e-6) ≈ 2.
    _close(adv.grpo_passk(jnp.array([1.0, 0.0, 0.0, 0.0]), group_size=4), [2, 0, 0, 0], rtol=1e-5)
    # [0.2, 0.9, 0.5, 0.1]: best row 1 leads by 0.4; std (ddof 1) = sqrt(0.3875/3) = 0.35940.
    a = adv.grpo_passk(jnp.array([0.2, 0.9, 0.5, 0.1]), group_size=4)
    _close(a, [0, 0.4 / np.sqrt(0.3875 / 3), 0, 0], rtol=1e-5)
    a = adv.grpo_passk(jnp.array([0.2, 0.9, 0.5, 0.1]), group_size=4, scale_by_std=False)
    _close(a, [0, 0.4, 0, 0], rtol=1e-6)


def test_broadcast_and_outcome_to_tokens():
    mask = jnp.array([[1.0, 1, 0], [1, 0, 0], [0, 0, 0]])
    _close(
        adv.broadcast_to_tokens(jnp.array([2.0, -1.0, 5.0]), mask),
        [[2, 2, 0], [-1, 0, 0], [0, 0, 0]],
    )
    _close(
        adv.outcome_to_token_rewards(jnp.array([2.0, -1.0, 5.0]), mask),
        [[0, 2, 0], [-1, 0, 0], [0, 0, 0]],
    )


def test_gae_fixtures():
    r = jnp.array([[0.0, 0.0, 1.0]])
    v = jnp.array([[0.5, 0.6, 0.7]])
    m = jnp.ones((1, 3))
    # λ = γ = 1: R_t = Σ_{k≥t} r_k = 1 and A = R − V = (0.5, 0.4, 0.3).
    a, ret = adv.gae(r, v, m, whiten=False)
    _close(ret, [[1.0, 1.0, 1.0]], rtol=1e-6)
    _close(a, [[0.5, 0.4, 0.3]], rtol=1e-6)
    # λ = 0: A = δ = (0 + 0.6 − 0.5, 0 + 0.7 − 0.6, 1 − 0.7) = (0.1, 0.1, 0.3).
    a, _ = adv.gae(r, v, m, lam=0.0, whiten=False)
    _close(a, [[0.1, 0.1, 0.3]], rtol=1e-5)
    # γ = λ = 0.5: δ = (0.3 − 0.5, 0.35 − 0.6, 0.3) = (−0.2, −0.25, 0.3);
    # A_2 = 0.3, A_1 = −0.25 + 0.25·0.3 = −0.175, A_0 = −0.2 + 0.25·(−0.175) = −0.24375.
    a, ret = adv.gae(r, v, m, gamma=0.5, lam=0.5, whiten=False)
    _close(a, [[-0.24375, -0.175, 0.3]], rtol=1e-5)
    _close(ret, [[0.25625, 0.425, 1.0]], rtol=1e-5)


def test_gae_carries_state_across_masked_tokens():
    # An observation token (mask 0) in the middle is skipped: same as the two valid tokens alone.
    r = jnp.array([[0.2, 77.0, 1.0]])
    v = jnp.array([[0.5, -40.0, 0.7]])
    m = jnp.array([[1.0, 0.0, 1.0]])
    a, ret = adv.gae(r, v, m, gamma=0.9, lam=0.8, whiten=False)
    a2, ret2 = adv.gae(r[:, ::2], v[:, ::2], jnp.ones((1, 2)), gamma=0.9, lam=0.8, whiten=False)
    _close(a[:, ::2], a2, rtol=1e-6)
    _close(ret[:, ::2], ret2, rtol=1e-6)
    assert float(a[0, 1]) == 0.0 and float(ret[0, 1]) == 0.0


def test_gae_whitened_and_lambda_one_equals_reward_to_go_minus_value():
    rng = np.random.default_rng(2)
    r = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    m = jnp.asarray(np.arange(5)[None] < np.array([[5], [3], [1]]), jnp.float32)
    _, ret = adv.gae(r, v, m, whiten=False)
    to_go = np.flip(np.cumsum(np.flip(np.asarray(r * m), -1), -1), -1) * np.asarray(m)
    _close(ret, to_go, rtol=1e-5, atol=1e-6)
    a, _ = adv.gae(r, v, m)
    valid = np.asarray(m) > 0
    assert abs(float(np.asarray(a)[valid].mean())) < 1e-6
    assert float(np.asarray(a)[valid].std(ddof=1)) == pytest.approx(1.0, rel=1e-4)


def test_token_reward_returns_eos_only_is_outcome():
    mask = jnp.array([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    tr = adv.outcome_to_token_rewards(jnp.array([1.0, -0.5]), mask)
    _close(adv.token_reward_returns(tr, mask), [[1, 1, 1, 0], [-0.5, -0.5, 0, 0]])
    # γ = 0.5 with rewards (1, 2, 4): G = (1 + 0.5·(2 + 0.5·4), 2 + 0.5·4, 4) = (3, 4, 4).
    g = adv.token_reward_returns(jnp.array([[1.0, 2, 4]]), jnp.ones((1, 3)), gamma=0.5)
    _close(g, [[3.0, 4.0, 4.0]])


def test_reinforce_pp_constant_per_row_and_whitened():
    mask = jnp.array([[1.0, 1, 1], [1, 1, 0], [1, 0, 0]])
    tr = adv.outcome_to_token_rewards(jnp.array([1.0, 0.0, 0.5]), mask)
    a = np.asarray(adv.reinforce_pp(tr, mask))
    for row, n in enumerate((3, 2, 1)):
        assert np.all(a[row, :n] == a[row, 0])  # no KL -> constant per row
    valid = np.asarray(mask) > 0
    assert abs(a[valid].mean()) < 1e-6
    assert a[valid].std(ddof=1) == pytest.approx(1.0, rel=1e-4)


def test_reinforce_pp_baseline_masked_mean_zero_std_one():
    mask = jnp.array([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    rng = np.random.default_rng(3)
    penalty = jnp.asarray(-0.01 * rng.uniform(size=(4, 3)), jnp.float32)
    rewards = jnp.array([1.0, 0.0, 0.0, 0.0])
    token_rewards = adv.outcome_to_token_rewards(rewards, mask) + penalty * mask
    a = np.asarray(
        adv.reinforce_pp_baseline(rewards, mask=mask, token_rewards=token_rewards, group_size=2)
    )
    valid = np.asarray(mask) > 0
    assert abs(a[valid].mean()) < 1e-6
    assert a[valid].std(ddof=1) == pytest.approx(1.0, rel=1e-4)
    assert np.all(a[~valid] == 0.0)
    # Centre-only variant keeps the scale: group (1, 0) centred is (0.5, −0.5), group (0, 0)
    # is 0; token means subtract the batch mean 0.5·3/9 − 0.5·2/9 = 1/18.
    a = np.asarray(
        adv.reinforce_pp_baseline(
            jnp.array([1.0, 0.0, 0.0, 0.0]), mask=mask, group_size=2, scale_by_std=False
        )
    )
    _close(a[0], np.full(3, 0.5 - 1 / 18), rtol=1e-5)
    # A zero-variance group: its outcome cancels exactly on the last token (0.1 is inexact).
    g = adv.reinforce_pp_baseline(
        jnp.array([0.1, 0.1]),
        mask=jnp.ones((2, 1)),
        token_rewards=jnp.array([[0.1], [0.1]]),
        group_size=2,
        scale_by_std=False,
    )
    assert np.all(np.asarray(g) == 0.0)


def test_remax():
    mask = jnp.array([[1.0, 1, 0]])
    tr = adv.outcome_to_token_rewards(jnp.array([1.0]), mask)
    # Sample = greedy -> 0; greedy reward 0.25 -> 0.75 on every valid token.
    _close(adv.remax(tr, jnp.array([1.0]), mask), [[0, 0, 0]])
    _close(adv.remax(tr, jnp.array([0.25]), mask), [[0.75, 0.75, 0]])


def test_zero_variance_policy():
    rewards = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    w, m = adv.zero_variance_policy(rewards, group_size=4)
    _close(w, np.ones(8))
    assert float(m["zero_std_frac"]) == 0.5
    w, _ = adv.zero_variance_policy(rewards, group_size=4, mode="mask")
    _close(w, [0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="dynamic_sampling"):
        adv.zero_variance_policy(rewards, group_size=4, mode="resample")
