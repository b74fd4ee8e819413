"""rewardjax.ops.policy_loss: every impl agrees with the reference; [B] advantages broadcast."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import ops
from rewardjax.objectives.aggregation import row_weights
from rewardjax.testing import elementwise_tolerance, token_sum_rtol


def batch():
    ks = jax.random.split(jax.random.key(0), 4)
    lp = -jax.random.uniform(ks[0], (3, 9))
    old = lp + 0.3 * jax.random.normal(ks[1], (3, 9))
    adv = jax.random.normal(ks[2], (3,))
    mask = (jnp.arange(9)[None] < jnp.array([[9], [4], [0]])).astype(jnp.float32)
    return lp, old, adv, mask


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
def test_matches_reference(impl):
    lp, old, adv, mask = batch()
    w = row_weights(mask, aggregation="seq_mean_token_mean")

    def run(impl):
        def f(x):
            return ops.policy_loss(
                x, old, adv, mask, row_weights=w, clip_high=0.28, dual_clip=3.0, impl=impl
            )

        return jax.value_and_grad(f, has_aux=True)(lp)

    (loss, metrics), grad = jax.jit(lambda: run(impl))()
    (ref_loss, ref_metrics), ref_grad = jax.jit(lambda: run("reference"))()
    tol = token_sum_rtol(jnp.sum(mask))
    np.testing.assert_allclose(loss, ref_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, ref_grad, **elementwise_tolerance(ref_grad))
    assert set(metrics) == set(ref_metrics)
    for key in ref_metrics:
        np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=tol, atol=tol, err_msg=key)


def test_auto_runs_the_backend_choice_and_bad_impl_is_named():
    assert ops.resolve_impl("auto", backend="cpu").impl == "chunked"
    lp, old, adv, mask = batch()
    w = row_weights(mask, aggregation="token_mean")
    auto, _ = ops.policy_loss(lp, old, adv, mask, row_weights=w)
    chosen, _ = ops.policy_loss(
        lp, old, adv, mask, row_weights=w, impl=ops.resolve_impl("auto").impl
    )
    assert float(auto) == float(chosen)
    with pytest.raises(ValueError, match="impl"):
        ops.policy_loss(lp, old, adv, mask, row_weights=w, impl="fused")


def test_row_advantages_broadcast_over_tokens():
    lp, old, adv, mask = batch()
    w = row_weights(mask, aggregation="token_mean")
    per_row, _ = ops.policy_loss(lp, old, adv, mask, row_weights=w, impl="chunked")
    per_token, _ = ops.policy_loss(
        lp, old, jnp.broadcast_to(adv[:, None], lp.shape), mask, row_weights=w, impl="chunked"
    )
    np.testing.assert_allclose(per_row, per_token)


def test_on_policy_gradient_is_minus_advantage_over_tokens():
    # ρ = 1 (first on-policy minibatch), token_mean weights w_b = 1/13 (N_tok = 13 here):
    # ∂L/∂logp = -A·mask / 13.
    lp, _, adv, mask = batch()
    w = jnp.full((3,), 1.0 / 13.0)

    def loss(x):
        return ops.policy_loss(x, lp, adv, mask, row_weights=w, impl="chunked")[0]

    grad = jax.jit(jax.grad(loss))(lp)
    np.testing.assert_allclose(grad, -adv[:, None] * mask / 13.0, rtol=1e-6)
