"""rewardjax.ops.token_logprobs / token_logprobs_from_hidden: [B, T, ...] inputs, every impl."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import ops
from rewardjax.testing import linear_logprob_atol, logprob_grad_tolerance, logsumexp_atol

B, T, D, V = 2, 5, 16, 70


def inputs():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    hidden = jax.random.normal(k1, (B, T, D))
    projection = jax.random.normal(k2, (D, V)) / 2
    labels = jax.random.randint(k3, (B, T), 0, V)
    return hidden, projection, labels


def test_uniform_logits_give_log_v_entropy():
    # mechanisms.md entropy_bonus test: uniform logits → H = log V, log p = -log V.
    logits = jnp.zeros((B, T, V))
    labels = jnp.zeros((B, T), jnp.int32)
    for impl in ("reference", "chunked"):
        out = jax.jit(lambda x, y, impl=impl: ops.token_logprobs(x, y, impl=impl))(logits, labels)
        assert out.entropy.shape == (B, T)
        np.testing.assert_allclose(out.entropy, np.full((B, T), np.log(V)), rtol=1e-6)
        np.testing.assert_allclose(out.logprobs, np.full((B, T), -np.log(V)), rtol=1e-6)


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
def test_batched_logits_match_reference_under_jit(impl):
    hidden, projection, labels = inputs()
    logits = hidden @ projection

    def run(impl):
        def loss(x):
            out = ops.token_logprobs(x, labels, impl=impl, block_rows=4, block_vocab=32)
            return jnp.sum(out.logprobs) + jnp.sum(out.entropy), out

        return jax.value_and_grad(loss, has_aux=True)(logits)

    (_, out), grad = jax.jit(lambda: run(impl))()
    (_, ref), ref_grad = jax.jit(lambda: run("reference"))()
    assert out.logprobs.shape == (B, T) and grad.shape == (B, T, V)
    atol = logsumexp_atol(logits)
    for field, a, b in zip(out._fields, out, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=field)
    np.testing.assert_allclose(grad, ref_grad, **logprob_grad_tolerance(atol, ref_grad))


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
def test_batched_hidden_match_reference_under_jit_and_vmap(impl):
    hidden, projection, labels = inputs()

    def run(impl):
        def f(h, y):
            return ops.token_logprobs_from_hidden(
                h, projection, y, temperature=0.9, impl=impl, block_rows=4, block_vocab=32
            )

        out = f(hidden, labels)
        # vmap over the batch axis gives the same rows as the flattened [B·T] call.
        per_row = jax.vmap(f)(hidden, labels)
        grad = jax.grad(lambda h: jnp.sum(f(h, labels).logprobs))(hidden)
        return out, per_row, grad

    out, per_row, grad = jax.jit(lambda: run(impl))()
    ref, _, ref_grad = jax.jit(lambda: run("reference"))()
    assert out.logprobs.shape == (B, T) and grad.shape == (B, T, D)
    atol = linear_logprob_atol(hidden, projection, temperature=0.9)
    for field, a, b, c in zip(out._fields, out, per_row, ref):
        np.testing.assert_allclose(a, c, rtol=0, atol=atol, err_msg=field)
        np.testing.assert_allclose(b, c, rtol=0, atol=atol, err_msg=field)
    np.testing.assert_allclose(grad, ref_grad, **logprob_grad_tolerance(atol, ref_grad))


def test_shape_mismatch_is_named():
    hidden, projection, labels = inputs()
    with pytest.raises(ValueError, match="labels"):
        ops.token_logprobs(jnp.zeros((B, T + 1, V)), labels)
    with pytest.raises(ValueError, match="hidden"):
        ops.token_logprobs_from_hidden(hidden[:, :-1], projection, labels)
