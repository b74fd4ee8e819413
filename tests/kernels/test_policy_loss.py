"""Fused policy loss: hand-computed cases, and fused XLA / Pallas (interpret) vs the autodiff reference."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rewardjax.kernels import policy_loss as P

from rewardjax import registry
from rewardjax.objectives.aggregation import row_weights
from rewardjax.testing import elementwise_tolerance, token_sum_rtol

IMPLS = {
    "chunked": functools.partial(P.fused_policy_loss, impl="chunked"),
    # 16-token tiles: T = 37 leaves a remainder.
    "pallas_gpu": functools.partial(
        P.fused_policy_loss, impl="pallas", block_tokens=16, target="gpu", interpret=True
    ),
    "pallas_tpu": functools.partial(
        P.fused_policy_loss, impl="pallas", target="tpu", interpret=True
    ),
}
ALL = {"reference": functools.partial(P.fused_policy_loss, impl="reference"), **IMPLS}
AGGREGATIONS = registry.LOSS_AGGREGATIONS.names()


def loss_and_grad(fn, lp, *args, **kwargs):
    """(loss, metrics), d loss / d logprobs under jit."""
    f = jax.value_and_grad(lambda x: fn(x, *args, **kwargs), has_aux=True)
    return jax.jit(f)(lp)


@pytest.mark.parametrize("name", list(ALL))
def test_ppo_clip_hand_computed(name):
    # One row, three tokens (mechanisms.md §1):
    #   t0: A = 1, ρ = 1.5 → clipped at 1.2: ℓ = -1.2, gradient 0.
    #   t1: A = -1, ρ = 5, dual clip c = 3: -A·ρ = 5 > c·|A| = 3 → ℓ = 3, gradient 0.
    #   t2: A = 2, ρ = 1 → ℓ = -2, ∂ℓ/∂logp = -A = -2.
    # token_mean over 3 tokens (w = 1/3): L = (-1.2 + 3 - 2)/3 = -0.0666667; grad = (0, 0, -2/3).
    lp = jnp.array([[math.log(1.5), math.log(5.0), 0.0]])
    old = jnp.zeros((1, 3))
    adv = jnp.array([[1.0, -1.0, 2.0]])
    mask = jnp.ones((1, 3))
    w = jnp.array([1.0 / 3.0])
    (loss, metrics), grad = loss_and_grad(
        ALL[name], lp, old, adv, mask, row_weights=w, dual_clip=3.0
    )
    np.testing.assert_allclose(loss, -0.2 / 3, rtol=1e-5)
    np.testing.assert_allclose(grad, [[0.0, 0.0, -2.0 / 3.0]], atol=1e-6)
    # t0 is clipped high; t1 hits the dual clip (its ordinary clip is not binding: A < 0, ρ > 1).
    np.testing.assert_allclose(metrics["clip_frac_high"], 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["clip_frac_low"], 0.0)
    np.testing.assert_allclose(metrics["clip_frac_dual"], 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["clip_frac"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["ratio_mean"], (1.5 + 5 + 1) / 3, rtol=1e-5)
    # ppo_kl = mean(old − logp) = −(ln 1.5 + ln 5)/3 = −0.6716343;
    # approx_kl = mean(ρ − 1 − ln ρ) = (0.0945349 + 2.3905621 + 0)/3 = 0.8283657.
    np.testing.assert_allclose(metrics["ppo_kl"], -0.6716343, rtol=1e-5)
    np.testing.assert_allclose(metrics["approx_kl"], 0.8283657, rtol=1e-5)


@pytest.mark.parametrize("name", list(ALL))
def test_k3_and_entropy_bonus_hand_computed(name):
    # A = 0 (no policy-gradient term), δ = ref − logp = ln 2:
    #   k3 = 2 − ln 2 − 1 = 0.3068528; ∂k3/∂logp = −(e^δ − 1) = −1.
    # β = 0.5, c_H = 0.1, H = 3: L = 0.5·0.3068528 − 0.1·3 = -0.1465736.
    # ∂L/∂logp = 0.5·(−1) = −0.5; ∂L/∂H = −0.1; ∂L/∂β = k3 = 0.3068528.
    lp = jnp.array([[-1.0]])
    ref = lp + math.log(2.0)
    zero = jnp.zeros((1, 1))
    entropy = jnp.array([[3.0]])

    def fn(x, h, beta):
        return ALL[name](
            x,
            x,
            zero,
            jnp.ones((1, 1)),
            row_weights=jnp.ones((1,)),
            ref_logprobs=ref,
            entropy=h,
            kl_coef=beta,
            entropy_coef=0.1,
        )

    grad_fn = jax.jit(jax.value_and_grad(fn, (0, 1, 2), has_aux=True))
    (loss, metrics), (g_lp, g_ent, g_beta) = grad_fn(lp, entropy, jnp.float32(0.5))
    np.testing.assert_allclose(loss, -0.1465736, rtol=1e-5)
    np.testing.assert_allclose(g_lp, [[-0.5]], rtol=1e-5)
    np.testing.assert_allclose(g_ent, [[-0.1]], rtol=1e-5)
    np.testing.assert_allclose(g_beta, 0.3068528, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl_ref"], 0.3068528, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl_loss"], 0.5 * 0.3068528, rtol=1e-5)
    np.testing.assert_allclose(metrics["entropy"], 3.0)
    # β is a traced input: β = 0.1 gives 0.1·0.3068528 − 0.3 and ∂L/∂logp = −0.1, same program.
    (loss, _), (g_lp, _, _) = grad_fn(lp, entropy, jnp.float32(0.1))
    np.testing.assert_allclose(loss, 0.1 * 0.3068528 - 0.3, rtol=1e-5)
    np.testing.assert_allclose(g_lp, [[-0.1]], rtol=1e-5)
    assert grad_fn._cache_size() == 1


# Rows of lengths 1 and 3 with ℓ ≡ 1 (A = -1 at ρ = 1): mechanisms.md §1 aggregation tests.
EXPECTED_AGGREGATION = {
    "token_mean": 1.0,  # 4 tokens / 4
    "seq_mean_token_sum": 2.0,  # (1 + 3) / 2 rows
    "seq_mean_token_mean": 1.0,  # (1/1 + 3/3) / 2
    "seq_mean_token_sum_norm": 0.5,  # (1 + 3) / 4 / 2, C = 4
}


@pytest.mark.parametrize("name", list(ALL))
def test_aggregation_modes_hand_computed(name):
    # The modes reach the kernel as `row_weights`, their one definition.
    mask = jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    lp = jnp.zeros((2, 4))

    @jax.jit
    def losses():
        return {
            agg: ALL[name](
                lp,
                lp,
                -jnp.ones((2,)),
                mask,
                row_weights=row_weights(
                    mask,
                    aggregation=agg,
                    loss_scale_factor=(4.0 if agg == "seq_mean_token_sum_norm" else None),
                ),
            )[0]
            for agg in AGGREGATIONS
        }

    got = losses()
    for aggregation, expected in EXPECTED_AGGREGATION.items():
        np.testing.assert_allclose(got[aggregation], expected, rtol=1e-6, err_msg=aggregation)


def random_batch(seed=0, b=5, t=37):
    ks = jax.random.split(jax.random.key(seed), 6)
    lp = -3.0 * jax.random.uniform(ks[0], (b, t))
    old = lp + 0.4 * jax.random.normal(ks[1], (b, t))
    ref = lp + 0.3 * jax.random.normal(ks[2], (b, t))
    adv = jax.random.normal(ks[3], (b,))
    ent = 2.0 * jax.random.uniform(ks[4], (b, t))
    # Row 1 is fully masked; padding holds NaN, which must not leak anywhere.
    lengths = jnp.array([t, 0, 10, 1, 20])[:b]
    mask = (jnp.arange(t)[None] < lengths[:, None]).astype(jnp.float32)
    lp = jnp.where(mask > 0, lp, jnp.nan)
    return lp, old, ref, adv, ent, mask


HYPER = dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0, kl_coef=0.1, entropy_coef=0.01)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_matches_reference_with_masked_rows(aggregation):
    lp, old, ref, adv, ent, mask = random_batch()
    w = row_weights(mask, aggregation=aggregation)

    def run(fn):
        def f(x, h):
            return fn(x, old, adv, mask, row_weights=w, ref_logprobs=ref, entropy=h, **HYPER)

        return jax.value_and_grad(f, (0, 1), has_aux=True)(lp, ent)

    results = jax.jit(lambda: {name: run(fn) for name, fn in ALL.items()})()
    (ref_loss, ref_metrics), (ref_g_lp, ref_g_ent) = results.pop("reference")
    tol = token_sum_rtol(jnp.sum(mask))
    for name, ((loss, metrics), (g_lp, g_ent)) in results.items():
        np.testing.assert_allclose(loss, ref_loss, rtol=tol, atol=tol, err_msg=name)
        assert set(metrics) == set(ref_metrics)
        for key in metrics:
            np.testing.assert_allclose(
                metrics[key], ref_metrics[key], rtol=tol, atol=tol, err_msg=f"{name} {key}"
            )
        assert np.all(np.isfinite(g_lp)) and np.all(np.isfinite(g_ent))
        for g, ref_g in ((g_lp, ref_g_lp), (g_ent, ref_g_ent)):
            np.testing.assert_allclose(g, ref_g, err_msg=name, **elementwise_tolerance(ref_g))
        # The fully masked row and the padding get exactly zero gradient.
        assert np.all(np.asarray(g_lp)[np.asarray(mask) == 0] == 0)


@pytest.mark.parametrize("name", list(ALL))
def test_empty_batch_gives_zero_not_nan(name):
    lp, old, ref, adv, ent, mask = random_batch()
    empty = jnp.zeros_like(mask)
    (loss, metrics), grad = loss_and_grad(
        ALL[name],
        lp,
        old,
        adv,
        empty,
        row_weights=row_weights(empty, aggregation="seq_mean_token_mean"),
        ref_logprobs=ref,
        entropy=ent,
        **HYPER,
    )
    assert float(loss) == 0.0
    assert np.all(np.asarray(grad) == 0)
    assert all(np.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_micro_batches_with_global_counts_sum_to_the_full_batch(aggregation):
    lp, old, ref, adv, ent, mask = random_batch(seed=3)
    counts = dict(
        aggregation=aggregation,
        num_tokens=jnp.sum(mask),
        num_seqs=jnp.sum(jnp.sum(mask, 1) > 0),
        loss_scale_factor=37.0,
    )

    @jax.jit
    def full_and_parts():
        def loss(s):
            w = row_weights(mask[s], **counts)
            return IMPLS["chunked"](
                lp[s],
                old[s],
                adv[s],
                mask[s],
                row_weights=w,
                ref_logprobs=ref[s],
                entropy=ent[s],
                **HYPER,
            )[0]

        return loss(slice(0, 5)), [loss(s) for s in (slice(0, 2), slice(2, 5))]

    full, parts = full_and_parts()
    tol = token_sum_rtol(jnp.sum(mask))
    np.testing.assert_allclose(parts[0] + parts[1], full, rtol=tol, atol=tol)


def test_huge_clip_is_reinforce_and_zero_kl_coef_ignores_reference():
    lp, old, ref, adv, _, mask = random_batch(seed=4)
    lp = jnp.where(mask > 0, lp, 0.0)
    # ε = 1e9: no clipping, so ∂L/∂logp = -A·ρ·mask / N_tok (REINFORCE with importance weight).
    w = jnp.full((mask.shape[0],), 1.0 / jnp.sum(mask))
    fused = IMPLS["chunked"]
    (_, metrics), grad = loss_and_grad(
        fused, lp, old, adv, mask, row_weights=w, clip_low=1.0, clip_high=1e9
    )
    ratio = jnp.exp(lp - old)
    expected = -adv[:, None] * ratio * mask / jnp.sum(mask)
    np.testing.assert_allclose(grad, expected, **elementwise_tolerance(expected))
    assert float(metrics["clip_frac"]) == 0.0
    with_ref, _ = jax.jit(fused)(lp, old, adv, mask, row_weights=w, ref_logprobs=ref)
    without, _ = jax.jit(fused)(lp, old, adv, mask, row_weights=w)
    np.testing.assert_allclose(with_ref, without)


def test_vmap_over_a_leading_axis():
    batches = [random_batch(seed=s) for s in (5, 6)]
    lp, old, ref, adv, _, mask = (jnp.stack(x) for x in zip(*batches))

    def grads(fn):
        def f(x, o, a, m, r):
            w = row_weights(m, aggregation="seq_mean_token_mean")
            return fn(x, o, a, m, row_weights=w, ref_logprobs=r, **HYPER)[0]

        return jax.vmap(jax.grad(f))(lp, old, adv, mask, ref)

    got = jax.jit(lambda: grads(IMPLS["pallas_gpu"]))()
    want = jax.jit(lambda: grads(ALL["reference"]))()
    np.testing.assert_allclose(got, want, **elementwise_tolerance(want))


def test_bad_arguments_are_named():
    x, w = jnp.zeros((2, 3)), jnp.ones((2,))
    with pytest.raises(ValueError, match="impl"):
        P.fused_policy_loss(x, x, x, x, row_weights=w, impl="fused")
    with pytest.raises(ValueError, match="dual_clip"):
        P.fused_policy_loss(x, x, x, x, row_weights=w, dual_clip=0.5)
    with pytest.raises(AssertionError):  # one weight per row
        P.fused_policy_loss(x, x, x, x, row_weights=jnp.ones((3,)))
