"""Policy losses: hand-computed fixtures and cross-checks."""

from __future__ import annotations

import functools
import inspect
import math

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.objectives import policy as policy_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import fast_jit as _jit
from rewardjax.testing import value_and_grad_jit as _vg

policy = _Jitted(policy_lib)


ONE = jnp.ones((1, 1))


def _loss_and_grad(fn, logp, old, adv, mask, **kw):
    """(loss, d loss / d logp, metrics) of a policy loss."""

    def f(lp):
        return fn(lp, old, adv, mask, **kw)

    (loss, metrics), grad = _vg(f, has_aux=True)(logp)
    return float(loss), np.asarray(grad), metrics


def _one_token(ratio: float, adv: float):
    # logp = log ρ + old with old = −1, so ρ = exp(logp − old) exactly as requested.
    old = jnp.array([[-1.0]])
    return old + math.log(ratio), old, jnp.array([[adv]]), ONE


# ppo_clip has two implementations of one contract: the fused kernel pass
# ("chunked", what impl="auto" runs on CPU) and the composed objectives.
PPO_IMPLS = ["reference", "chunked"]


@pytest.mark.parametrize("impl", PPO_IMPLS)
def test_ppo_clip_on_policy_gradient_is_minus_advantage(impl):
    # ρ = 1, A = 0.7: ℓ = −Aρ = −0.7 and ∂ℓ/∂logp = −A·ρ = −0.7.
    loss, grad, m = _loss_and_grad(policy.ppo_clip_loss, *_one_token(1.0, 0.7), impl=impl)
    assert loss == pytest.approx(-0.7)
    assert grad[0, 0] == pytest.approx(-0.7)
    assert float(m["clip_frac"]) == 0.0


@pytest.mark.parametrize("impl", PPO_IMPLS)
def test_ppo_clip_upper_clip(impl):
    # A = 1, ρ = 1.5 > 1 + 0.2: ℓ = max(−1.5, −1.2) = −1.2, a constant, so no gradient.
    loss, grad, m = _loss_and_grad(policy.ppo_clip_loss, *_one_token(1.5, 1.0), impl=impl)
    assert loss == pytest.approx(-1.2)
    assert grad[0, 0] == 0.0
    assert float(m["clip_frac_high"]) == 1.0 and float(m["clip_frac"]) == 1.0


@pytest.mark.parametrize("impl", PPO_IMPLS)
def test_ppo_clip_dual_clip(impl):
    # A = −1, ρ = 5: max(5, 1.2) = 5, dual clip min(5, −c·A = 3) = 3, constant in logp.
    loss, grad, m = _loss_and_grad(
        policy.ppo_clip_loss, *_one_token(5.0, -1.0), dual_clip=3.0, impl=impl
    )
    assert loss == pytest.approx(3.0)
    assert grad[0, 0] == 0.0
    assert float(m["clip_frac_dual"]) == 1.0
    # Without dual clip the loss is the unbounded 5.
    loss, _, _ = _loss_and_grad(policy.ppo_clip_loss, *_one_token(5.0, -1.0), impl=impl)
    assert loss == pytest.approx(5.0)
    with pytest.raises(ValueError, match="dual_clip"):
        policy.ppo_clip_loss(*_one_token(5.0, -1.0), dual_clip=1.0, impl=impl)


@pytest.mark.parametrize("impl", PPO_IMPLS)
def test_ppo_clip_asymmetric_clip_and_clip_fractions(impl):
    # Four tokens: (ρ, A) = (1.25, +1) high-clipped only with ε_high = 0.2, not with 0.28;
    # (0.5, −1) low-clipped; (0.5, +1) and (1.5, −1) unclipped (the min picks ρ·A).
    ratios = jnp.array([[1.25, 0.5, 0.5, 1.5]])
    adv = jnp.array([[1.0, -1.0, 1.0, -1.0]])
    old = jnp.full((1, 4), -2.0)
    logp = old + jnp.log(ratios)
    mask = jnp.ones((1, 4))
    _, _, m = _loss_and_grad(policy.ppo_clip_loss, logp, old, adv, mask, impl=impl)
    assert float(m["clip_frac_high"]) == pytest.approx(0.25)
    assert float(m["clip_frac_low"]) == pytest.approx(0.25)
    assert float(m["clip_frac"]) == pytest.approx(0.5)
    # ratio_max = 1.5 (the unclipped A < 0 token).
    assert float(m["ratio_max"]) == pytest.approx(1.5)
    loss, _, m = _loss_and_grad(
        policy.ppo_clip_loss, logp, old, adv, mask, clip_high=0.28, impl=impl
    )
    assert float(m["clip_frac_high"]) == 0.0
    # Token losses: −1.25, 0.8 (= −A·0.8 at the low clip), −0.5, 1.5 -> mean 0.1375.
    assert loss == pytest.approx((-1.25 + 0.8 - 0.5 + 1.5) / 4)


def _random_batch(seed=0, b=3, t=4, off_policy=0.3):
    rng = np.random.default_rng(seed)
    logp = jnp.asarray(-rng.uniform(0.1, 2.0, (b, t)), jnp.float32)
    old = logp + jnp.asarray(rng.normal(0, off_policy, (b, t)), jnp.float32)
    adv = jnp.asarray(rng.normal(0, 1, (b, t)), jnp.float32)
    mask = jnp.asarray(np.arange(t)[None, :] < np.array([[4], [2], [3]])[:b], jnp.float32)
    return logp, old, adv, mask


def test_on_policy_ratio_is_exactly_one():
    logp, _, adv, mask = _random_batch()
    _, _, m = _loss_and_grad(policy.ppo_clip_loss, logp, logp, adv, mask)
    assert float(m["ratio_mean"]) == 1.0
    assert float(m["clip_frac"]) == 0.0
    assert float(m["ppo_kl"]) == 0.0


def test_huge_clip_range_is_importance_weighted_reinforce():
    logp, old, adv, mask = _random_batch(1)
    kw = dict(clip_low=1e6, clip_high=1e6)
    loss, grad, _ = _loss_and_grad(policy.ppo_clip_loss, logp, old, adv, mask, **kw)
    ratio = np.exp(np.asarray(logp - old))
    n = float(mask.sum())
    # Never clipped: ℓ = −Aρ and ∂ℓ/∂logp = −Aρ/N.
    assert loss == pytest.approx(float(np.sum(-adv * ratio * mask)) / n, rel=1e-5)
    np.testing.assert_allclose(grad, -np.asarray(adv) * ratio * np.asarray(mask) / n, rtol=1e-5)
    # On policy it is REINFORCE exactly.
    _, g_ppo, _ = _loss_and_grad(policy.ppo_clip_loss, logp, logp, adv, mask, **kw)
    _, g_pg, _ = _loss_and_grad(policy.reinforce_pg_loss, logp, logp, adv, mask)
    np.testing.assert_allclose(g_ppo, g_pg, rtol=1e-6)


def test_reinforce_pg_value_and_gradient():
    # ℓ = −A·logp; two tokens A = (2, −1), logp = (−0.5, −1): (1 + (−1))/2 = 0; grad −A/2.
    logp = jnp.array([[-0.5, -1.0]])
    adv = jnp.array([[2.0, -1.0]])
    loss, grad, _ = _loss_and_grad(policy.reinforce_pg_loss, logp, logp, adv, jnp.ones((1, 2)))
    assert loss == pytest.approx(0.0)
    np.testing.assert_allclose(grad, [[-1.0, 0.5]])


def test_gspo_constant_log_ratio_gives_sequence_ratio():
    # Every token has logp − old = c = 0.1, so s_i = e^0.1 on each of its tokens.
    old = jnp.full((2, 3), -1.0)
    logp = old + 0.1
    adv = jnp.ones((2, 3))
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    _, _, m = _loss_and_grad(policy.gspo_loss, logp, old, adv, mask, clip_high=1.0)
    assert float(m["ratio_mean"]) == pytest.approx(math.exp(0.1), rel=1e-6)
    # Geometric mean: token ratios e^0.3 and e^−0.3 give s = 1.
    logp = old + jnp.array([[0.3, -0.3, 0.0], [0.0, 5.0, 5.0]])  # row 1: padded garbage
    loss, _, m = _loss_and_grad(policy.gspo_loss, logp, old, adv, mask)
    assert float(m["ratio_mean"]) == pytest.approx(1.0, abs=1e-6)
    assert loss == pytest.approx(-1.0, abs=1e-6)  # −A·s = −1 on every token


def test_gspo_on_policy_gradient_equals_ppo_clip_seq_mean_token_mean():
    logp, _, adv, mask = _random_batch(2)
    _, g_gspo, _ = _loss_and_grad(policy.gspo_loss, logp, logp, adv, mask)
    _, g_ppo, _ = _loss_and_grad(
        policy.ppo_clip_loss, logp, logp, adv, mask, aggregation="seq_mean_token_mean"
    )
    np.testing.assert_allclose(g_gspo, g_ppo, rtol=1e-6, atol=1e-7)


def test_sequence_losses_reject_other_aggregations():
    with pytest.raises(ValueError, match="seq_mean_token_mean"):
        policy.gspo_loss(*_one_token(1.0, 1.0), aggregation="token_mean")
    with pytest.raises(ValueError, match="seq_mean_token_mean"):
        policy.gmpo_geo_mean_loss(*_one_token(1.0, 1.0), aggregation="token_mean")


def test_cispo_clipped_tokens_keep_their_gradient():
    # ρ = 2, A = 1, two-sided ε = 0.2: w = 1.2; ℓ = −1.2·logp, ∂ℓ/∂logp = −1.2 (PPO: 0).
    logp, old, adv, mask = _one_token(2.0, 1.0)
    loss, grad, m = _loss_and_grad(policy.cispo_loss, logp, old, adv, mask)
    assert loss == pytest.approx(-1.2 * float(logp[0, 0]))
    assert grad[0, 0] == pytest.approx(-1.2)
    assert float(m["clip_frac"]) == 1.0
    # TRL form: w = min(ρ, ε_high) = min(10, 5) = 5 with A = −0.5: grad = −5·(−0.5) = 2.5.
    logp, old, adv, mask = _one_token(10.0, -0.5)
    _, grad, _ = _loss_and_grad(
        policy.cispo_loss, logp, old, adv, mask, weight_clip="upper", clip_high=5.0
    )
    assert grad[0, 0] == pytest.approx(2.5)


def test_gmpo_geometric_mean_ratio():
    # Token ratios (2, ½), A = 1: with a wide log range Δ̃ = Δ, mean 0, ρ_i = 1, L = −1.
    old = jnp.array([[-1.0, -1.0]])
    logp = old + jnp.log(jnp.array([[2.0, 0.5]]))
    adv = jnp.ones((1, 2))
    mask = jnp.ones((1, 2))
    loss, _, _ = _loss_and_grad(
        policy.gmpo_geo_mean_loss, logp, old, adv, mask, clip_low=10.0, clip_high=10.0
    )
    assert loss == pytest.approx(-1.0, abs=1e-6)
    # ε = 0.2, A > 0 clips only upward: Δ̃ = (min(ln 2, 0.2), −ln 2) = (0.2, −0.6931);
    # ρ_i = exp((0.2 − 0.6931)/2) = exp(−0.24657) = 0.78149; L = −0.78149.
    loss, _, m = _loss_and_grad(policy.gmpo_geo_mean_loss, logp, old, adv, mask)
    assert loss == pytest.approx(-math.exp((0.2 - math.log(2)) / 2), rel=1e-5)
    assert float(m["clip_frac"]) == pytest.approx(0.5)
    # A < 0 clips only downward: Δ̃ = (ln 2, max(−ln 2, −0.2)) = (0.6931, −0.2).
    loss, _, _ = _loss_and_grad(policy.gmpo_geo_mean_loss, logp, old, -adv, mask)
    assert loss == pytest.approx(math.exp((math.log(2) - 0.2) / 2), rel=1e-5)


def test_tis_weights():
    mask = jnp.ones((1, 2))
    old = jnp.array([[-1.0, -1.0]])
    # Equal log-probs: w ≡ 1, nothing clipped, no gap.
    w, m = policy.tis_rollout_correction(old, old, mask)
    np.testing.assert_allclose(w, [[1.0, 1.0]])
    assert float(m["tis_clip_frac"]) == 0.0 and float(m["rollout_logp_gap"]) == 0.0
    # Token ratios (3, 1.5): token mode caps at C = 2 -> (2, 1.5); gap = (ln 3 + ln 1.5)/2.
    rollout = old - jnp.log(jnp.array([[3.0, 1.5]]))
    w, m = policy.tis_rollout_correction(old, rollout, mask, mode="token")
    np.testing.assert_allclose(w, [[2.0, 1.5]], rtol=1e-6)
    assert float(m["rollout_logp_gap"]) == pytest.approx((math.log(3) + math.log(1.5)) / 2)
    # Sequence ratio 3·1.5 = 4.5 -> min(4.5, 5) = 4.5 on both tokens.
    w, _ = policy.tis_rollout_correction(old, rollout, mask, mode="sequence", cap=5.0)
    np.testing.assert_allclose(w, [[4.5, 4.5]], rtol=1e-5)
    # Token mask [0.5, 2]: ratio 3 is dropped, 1.5 kept.
    w, m = policy.tis_rollout_correction(old, rollout, mask, mode="token_mask", cap_low=0.5)
    np.testing.assert_allclose(w, [[0.0, 1.0]])
    assert float(m["tis_clip_frac"]) == 0.5
    # Sequence mask [0.5, 5]: 4.5 is inside.
    w, _ = policy.tis_rollout_correction(old, rollout, mask, mode="sequence_mask", cap=5.0)
    np.testing.assert_allclose(w, [[1.0, 1.0]])


def test_tis_multiplies_the_policy_loss():
    # reinforce: ℓ = −A·logp·w with w = min(3, 2) = 2: A = 1, logp = −0.5 -> 1.0.
    logp = jnp.array([[-0.5]])
    rollout = logp - math.log(3.0)
    loss, m = policy.reinforce_pg_loss(
        logp, logp, ONE, ONE, rollout_logprobs=rollout, tis_mode="token"
    )
    assert float(loss) == pytest.approx(1.0)
    assert float(m["tis_weight_mean"]) == pytest.approx(2.0)
    # tis_mode "off" only logs the gap.
    loss, m = policy.reinforce_pg_loss(logp, logp, ONE, ONE, rollout_logprobs=rollout)
    assert float(loss) == pytest.approx(0.5)
    assert float(m["rollout_logp_gap"]) == pytest.approx(math.log(3.0), rel=1e-6)
    with pytest.raises(ValueError, match="rollout_logprobs"):
        policy.reinforce_pg_loss(logp, logp, ONE, ONE, tis_mode="token")


@pytest.mark.parametrize("impl", PPO_IMPLS)
def test_kl_in_policy_loss(impl):
    logp, old, adv, mask = _random_batch(3)
    ref = logp + 0.2
    # δ = ref − logp = 0.2 on every token: k3 = e^0.2 − 0.2 − 1 = 0.0214028, so with
    # token_mean the KL term is β·0.0214028 whatever the mask.
    k3 = math.exp(0.2) - 1.2
    loss, m = policy.ppo_clip_loss(logp, old, adv, mask, ref_logprobs=ref, kl_coef=0.5, impl=impl)
    assert float(loss) - float(m["pg_loss"]) == pytest.approx(0.5 * k3, rel=1e-4)
    assert float(m["kl_ref"]) == pytest.approx(k3, rel=1e-4)
    assert float(m["kl_loss"]) == pytest.approx(0.5 * k3, rel=1e-4)
    # β = 0 with a reference: KL is logged, not added.
    loss0, m0 = policy.ppo_clip_loss(logp, old, adv, mask, ref_logprobs=ref, impl=impl)
    assert float(loss0) == pytest.approx(float(m0["pg_loss"]))
    assert float(m0["kl_ref"]) == pytest.approx(k3, rel=1e-4)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy.ppo_clip_loss(logp, old, adv, mask, kl_coef=0.1, impl=impl)


@pytest.mark.parametrize("impl", PPO_IMPLS)
def test_entropy_bonus_in_policy_loss(impl):
    # On policy, A = 0: the loss is −c_H·agg(H). Rows of lengths 4, 2, 3 with H = 1, 2, 3 per
    # row; seq_mean_token_mean: (1 + 2 + 3)/3 = 2, so L = −0.1·2 = −0.2 and ∂L/∂H_t = −0.1/(3·|y_b|).
    logp, _, _, mask = _random_batch(5)
    ent = jnp.array([[1.0], [2.0], [3.0]]) * jnp.ones((3, 4))

    def f(h):
        return policy.ppo_clip_loss(
            logp,
            logp,
            jnp.zeros_like(logp),
            mask,
            entropy=h,
            entropy_coef=0.1,
            aggregation="seq_mean_token_mean",
            impl=impl,
        )

    (loss, m), grad = _vg(f, has_aux=True)(ent)
    assert float(loss) == pytest.approx(-0.2, rel=1e-6)
    # Token mean of H over 9 tokens: (4·1 + 2·2 + 3·3)/9.
    assert float(m["entropy"]) == pytest.approx(17 / 9, rel=1e-6)
    expected = -0.1 / (3 * np.array([[4.0], [2.0], [3.0]])) * np.asarray(mask)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="entropy"):
        policy.ppo_clip_loss(logp, logp, logp, mask, entropy_coef=0.1, impl=impl)


AGGREGATIONS = [
    "token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_ppo_clip_fused_equals_reference(aggregation):
    # Off-policy ratios (some clipped), a reference, an entropy, masked rows and padding
    # garbage: the kernel pass and the composed objectives agree in value, metrics and
    # gradient (logprobs and entropy), with and without the KL and entropy terms.
    logp, old, adv, mask = _random_batch(6, off_policy=0.5)
    mask = mask.at[1].set(0.0)  # one fully masked row
    logp = jnp.where(mask > 0, logp, -40.0)
    ref = logp + 0.3 * jnp.asarray(np.random.default_rng(7).normal(size=logp.shape), jnp.float32)
    ent = jnp.asarray(np.random.default_rng(8).uniform(0.5, 2.0, logp.shape), jnp.float32)
    rollout = old + 0.05
    counts = dict(num_tokens=jnp.float32(7.0), num_seqs=jnp.float32(2.0), loss_scale_factor=6.0)
    for kl, ent_coef in [(None, 0.0), (0.3, 0.0), (None, 0.02), (0.3, 0.02)]:
        extra = dict(ref_logprobs=ref, kl_coef=jnp.float32(kl)) if kl else {}

        def f(x, h, impl, extra=extra, ent_coef=ent_coef):
            return policy_lib.ppo_clip_loss(
                x,
                old,
                adv,
                mask,
                clip_high=0.28,
                dual_clip=3.0,
                aggregation=aggregation,
                rollout_logprobs=rollout,
                entropy=h,
                entropy_coef=ent_coef,
                impl=impl,
                **extra,
                **counts,
            )

        outs = {
            impl: _vg(functools.partial(f, impl=impl), argnums=(0, 1), has_aux=True)(logp, ent)
            for impl in PPO_IMPLS
        }
        (loss_r, m_r), (g_r, gh_r) = outs["reference"]
        (loss_f, m_f), (g_f, gh_f) = outs["chunked"]
        label = f"kl={kl} entropy_coef={ent_coef}"
        np.testing.assert_allclose(loss_f, loss_r, rtol=1e-5, atol=1e-7, err_msg=label)
        np.testing.assert_allclose(g_f, g_r, rtol=1e-5, atol=1e-7, err_msg=label)
        np.testing.assert_allclose(gh_f, gh_r, rtol=1e-5, atol=1e-8, err_msg=label)
        assert set(m_f) == set(m_r), label
        for key in m_r:
            np.testing.assert_allclose(m_f[key], m_r[key], rtol=1e-5, atol=1e-6, err_msg=key)
        # The terms are really there (or really absent).
        assert ("kl_loss" in m_r) == bool(kl), label
        assert not kl or float(m_r["kl_loss"]) > 1e-4, label
        assert (float(jnp.max(jnp.abs(gh_r))) > 0) == (ent_coef > 0), label


def test_policy_loss_impl_is_decided_from_hyperparameters():
    ppo, cispo = policy_lib.ppo_clip_loss, policy_lib.cispo_loss
    chunked = policy_lib.policy_loss_impl
    assert chunked(ppo, "auto") == "chunked"  # CPU: the fused XLA pass
    assert chunked(ppo, "auto", with_kl=True, kl_estimator="k3") == "chunked"
    # Where the kernel does not apply, auto falls back and a forced kernel is an error.
    assert chunked(ppo, "auto", tis_mode="token") == "reference"
    assert chunked(ppo, "auto", with_kl=True, kl_estimator="kl_k3+") == "reference"
    assert chunked(ppo, "auto", with_kl=False, kl_estimator="kl_k1") == "chunked"
    assert chunked(ppo, "reference") == "reference"
    assert chunked(cispo, "auto") == "reference"
    with pytest.raises(ValueError, match="tis_mode='token'"):
        chunked(ppo, "chunked", tis_mode="token")
    with pytest.raises(ValueError, match="fused kernel"):
        chunked(cispo, "pallas")
    with pytest.raises(ValueError, match="impl must be one of"):
        chunked(ppo, "fused")


def test_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="clip_hgh"):
        policy_lib.ppo_clip_loss(*_one_token(1.0, 1.0), clip_hgh=0.3)


def test_every_policy_loss_shares_one_keyword_tail():
    from rewardjax import registry

    shared = [p.name for p in policy_lib.SHARED_KEYWORDS]
    for name in ("ppo_clip", "gspo", "cispo", "gmpo_geo_mean", "reinforce_pg"):
        params = inspect.signature(registry.POLICY_LOSSES.get(name)).parameters
        assert list(params)[:4] == ["logprobs", "old_logprobs", "advantages", "mask"], name
        assert list(params)[-len(shared) :] == shared, name


def test_token_entropy_and_entropy_bonus():
    # Uniform logits over V = 8: H = log 8.
    h = policy.token_entropy(jnp.zeros((1, 2, 8)))
    np.testing.assert_allclose(h, [[math.log(8)] * 2], rtol=1e-6)
    # A one-hot-ish distribution has entropy near 0.
    assert float(policy.token_entropy(jnp.array([[[50.0, 0.0, 0.0]]]))[0, 0]) < 1e-6
    loss, m = policy.entropy_bonus(h, jnp.ones((1, 2)), coef=0.1)
    assert float(loss) == pytest.approx(-0.1 * math.log(8), rel=1e-6)
    assert float(m["entropy"]) == pytest.approx(math.log(8), rel=1e-6)
    loss, _ = policy.entropy_bonus(h, jnp.ones((1, 2)))
    assert float(loss) == 0.0  # c_H = 0 by default


def test_value_loss_clipped():
    # V = V_old: both branches equal, ½(V − R)² = ½(1 − 3)² = 2.
    loss, _ = policy.value_loss_clipped(ONE, ONE, 3.0 * ONE, ONE)
    assert float(loss) == pytest.approx(2.0)

    # V = 1, V_old = 0, R = 2, ε = 0.5: unclipped (1 − 2)² = 1, clipped (0.5 − 2)² = 2.25;
    # loss ½·2.25 = 1.125 and the clipped branch is flat in V (gradient 0).
    def f(v):
        return policy.value_loss_clipped(v, 0.0 * ONE, 2.0 * ONE, ONE)

    (loss, m), grad = _vg(f, has_aux=True)(ONE)
    assert float(loss) == pytest.approx(1.125)
    assert float(grad[0, 0]) == 0.0
    assert float(m["vf_clip_frac"]) == 1.0
    # Unclipped form: ½(1 − 2)² = 0.5, gradient V − R = −1.
    (loss, _), grad = _vg(
        lambda v: policy.value_loss_clipped(v, 0.0 * ONE, 2.0 * ONE, ONE, clip=None),
        has_aux=True,
    )(ONE)
    assert float(loss) == pytest.approx(0.5) and float(grad[0, 0]) == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo", "gmpo_geo_mean", "reinforce_pg"])
def test_micro_batches_sum_to_full_batch(name):
    from rewardjax import registry
    from rewardjax.objectives.aggregation import global_counts

    fn = _jit(registry.POLICY_LOSSES.get(name))
    logp, old, adv, mask = _random_batch(4)
    agg = "seq_mean_token_mean" if name in ("gspo", "gmpo_geo_mean") else "seq_mean_token_sum_norm"
    kw = dict(aggregation=agg, loss_scale_factor=4.0)
    full, _ = fn(logp, old, adv, mask, **kw)
    counts = global_counts(mask)._asdict()
    parts = [
        fn(logp[s], old[s], adv[s], mask[s], **kw, **counts)[0] for s in (slice(0, 1), slice(1, 3))
    ]
    np.testing.assert_allclose(float(sum(parts)), float(full), rtol=1e-5, atol=1e-7)
