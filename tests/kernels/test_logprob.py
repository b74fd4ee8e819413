"""Fused log-prob/entropy/logsumexp from logits: chunked XLA and Pallas (interpret) vs reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rewardjax.kernels import logprob as K

from rewardjax.testing import logprob_grad_tolerance, logsumexp_atol

# Tiles of 8 rows x 128 columns: N = 21 and V = 300 leave remainders on both axes.
IMPLS = {
    "chunked": lambda x, y: K.chunked_token_logprobs(x, y, block_rows=8, block_vocab=128),
    "pallas_gpu": lambda x, y: K.pallas_token_logprobs(
        x, y, block_rows=8, block_vocab=128, target="gpu", interpret=True
    ),
    "pallas_tpu": lambda x, y: K.pallas_token_logprobs(
        x, y, block_rows=8, block_vocab=128, target="tpu", interpret=True
    ),
}


def value_and_grads(fn, logits, labels, weights):
    """Outputs and d(Σ w0·lp + w1·H + w2·lse)/d logits, under jit."""

    def loss(x):
        out = fn(x, labels)
        total = sum(jnp.sum(w * o) for w, o in zip(weights, out))
        return total, out

    (_, out), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(logits)
    return out, grad


@pytest.mark.parametrize("name", ["reference", *IMPLS])
def test_hand_computed_row(name):
    fn = K.reference_token_logprobs if name == "reference" else IMPLS[name]
    # Row 0: z = log(1, 2, 3, 4), label 3: p = (.1, .2, .3, .4), lse = log 10,
    #   log p(3) = log .4 = -0.9162907, H = -Σ p log p = 1.2798542.
    # Row 1: uniform logits 5.0: lse = 5 + log 4 = 6.3862944, H = log 4 = 1.3862944,
    #   log p = -log 4 = -1.3862944.
    logits = jnp.array([np.log([1.0, 2.0, 3.0, 4.0]), [5.0] * 4], jnp.float32)
    labels = jnp.array([3, 0])
    out = jax.jit(fn)(logits, labels)
    np.testing.assert_allclose(out.logprobs, [-0.9162907, -1.3862944], rtol=1e-6)
    np.testing.assert_allclose(out.entropy, [1.2798542, 1.3862944], rtol=1e-6)
    np.testing.assert_allclose(out.logsumexp, [math.log(10.0), 6.3862944], rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", list(IMPLS))
def test_matches_reference_forward_and_gradient(name, dtype):
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    n, v = 21, 300
    logits = (4.0 * jax.random.normal(k1, (n, v))).astype(dtype)
    labels = jax.random.randint(k2, (n,), 0, v)
    weights = jax.random.normal(k3, (3, n))
    out, grad = value_and_grads(IMPLS[name], logits, labels, weights)
    ref, ref_grad = value_and_grads(K.reference_token_logprobs, logits, labels, weights)
    assert grad.dtype == dtype
    # Both compute in float32 from the same (exactly upcast) logits: float32 bounds even for
    # bfloat16 inputs, whose gradient adds only its final rounding.
    atol = logsumexp_atol(logits)
    for field, a, b in zip(K.TokenLogprobs._fields, out, ref):
        assert a.dtype == jnp.float32 and a.shape == (n,)
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=field)
    np.testing.assert_allclose(grad, ref_grad, **logprob_grad_tolerance(atol, ref_grad))


@pytest.mark.parametrize("name", list(IMPLS))
def test_masked_vocabulary_rows_stay_finite(name):
    # Row 0 keeps only its label (every other logit -inf): log p = 0, H = 0, lse = z_label.
    # Row 1 masks half the vocabulary, including a whole 128-column tile.
    n, v = 3, 300
    logits = jax.random.normal(jax.random.key(2), (n, v))
    labels = jnp.array([7, 250, 0])
    logits = logits.at[0].set(jnp.where(jnp.arange(v) == 7, 2.5, -jnp.inf))
    logits = logits.at[1, :150].set(-jnp.inf)
    weights = jnp.ones((3, n))
    out, grad = value_and_grads(IMPLS[name], logits, labels, weights)
    ref, ref_grad = value_and_grads(K.reference_token_logprobs, logits, labels, weights)
    np.testing.assert_allclose([out.logprobs[0], out.entropy[0], out.logsumexp[0]], [0, 0, 2.5])
    assert np.all(np.isfinite(grad))
    atol = logsumexp_atol(logits)
    for field, a, b in zip(K.TokenLogprobs._fields, out, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=field)
    # Masked logits get exactly zero gradient.
    assert np.all(np.asarray(grad)[1, :150] == 0)
    np.testing.assert_allclose(grad, ref_grad, **logprob_grad_tolerance(atol, ref_grad))


@pytest.mark.parametrize("name", ["chunked", "pallas_gpu"])
def test_vmap_over_a_leading_axis(name):
    k1, k2 = jax.random.split(jax.random.key(3))
    logits = jax.random.normal(k1, (2, 10, 130))
    labels = jax.random.randint(k2, (2, 10), 0, 130)
    fn = jax.vmap(IMPLS[name])
    ref_fn = jax.vmap(K.reference_token_logprobs)

    def outputs_and_grad(f):
        out = f(logits, labels)
        grad = jax.grad(lambda x: jnp.sum(f(x, labels).entropy))(logits)
        return out, grad

    out, grad = jax.jit(lambda: outputs_and_grad(fn))()
    ref, ref_grad = jax.jit(lambda: outputs_and_grad(ref_fn))()
    assert out.logprobs.shape == (2, 10)
    atol = logsumexp_atol(logits)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, rtol=0, atol=atol)
    np.testing.assert_allclose(grad, ref_grad, **logprob_grad_tolerance(atol, ref_grad))


def test_shape_errors_name_the_tensors():
    with pytest.raises(ValueError, match="logits"):
        K.chunked_token_logprobs(jnp.zeros((4, 10)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(TypeError, match="labels"):
        K.chunked_token_logprobs(jnp.zeros((4, 10)), jnp.zeros((4,)))
