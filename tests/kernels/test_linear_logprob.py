"""Logits-free linear log-prob: chunked XLA and Pallas (interpret) vs the materialised reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rewardjax.kernels import linear_logprob as L
from rewardjax.kernels.logprob import reference_token_logprobs

from rewardjax.testing import linear_logprob_atol, logprob_grad_tolerance

TEMPERATURE = 0.7
# N = 21 rows, D = 24 width, V = 300 vocabulary: none is a multiple of its tile (8, 16, 128).
IMPLS = {
    "chunked": lambda h, w, y: L.chunked_linear_logprobs(
        h, w, y, temperature=TEMPERATURE, block_rows=8, block_vocab=128
    ),
    "pallas_gpu": lambda h, w, y: L.pallas_linear_logprobs(
        h,
        w,
        y,
        temperature=TEMPERATURE,
        block_rows=8,
        block_vocab=128,
        block_hidden=16,
        target="gpu",
        interpret=True,
    ),
    "pallas_tpu": lambda h, w, y: L.pallas_linear_logprobs(
        h,
        w,
        y,
        temperature=TEMPERATURE,
        block_rows=8,
        block_vocab=128,
        target="tpu",
        interpret=True,
    ),
}


def reference(h, w, y):
    return L.reference_linear_logprobs(h, w, y, temperature=TEMPERATURE)


def value_and_grads(fn, hidden, projection, labels, weights):
    def loss(h, w):
        out = fn(h, w, labels)
        return sum(jnp.sum(c * o) for c, o in zip(weights, out)), out

    grad_fn = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    (_, out), grads = jax.jit(grad_fn)(hidden, projection)
    return out, grads


@pytest.mark.parametrize("name", ["reference", *IMPLS])
def test_hand_computed_temperature(name):
    fn = reference if name == "reference" else IMPLS[name]
    # hidden [[2]], projection [[0, τ·ln 3 / 2]]: z = [0, τ·ln 3], z/τ = [0, ln 3], p = (1/4, 3/4).
    # label 1: log p = ln .75 = -0.2876821; H = -(.25 ln .25 + .75 ln .75) = 0.5623351;
    # lse = ln 4 = 1.3862944.
    hidden = jnp.array([[2.0]])
    projection = jnp.array([[0.0, TEMPERATURE * math.log(3.0) / 2.0]])
    out = jax.jit(fn)(hidden, projection, jnp.array([1]))
    np.testing.assert_allclose(out.logprobs, [-0.2876821], rtol=1e-5)
    np.testing.assert_allclose(out.entropy, [0.5623351], rtol=1e-5)
    np.testing.assert_allclose(out.logsumexp, [1.3862944], rtol=1e-5)


def test_reference_is_logprobs_of_scaled_logits():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    h = jax.random.normal(k1, (5, 8))
    w = jax.random.normal(k2, (8, 11))
    y = jax.random.randint(k3, (5,), 0, 11)
    a = jax.jit(reference)(h, w, y)
    b = jax.jit(reference_token_logprobs)((h @ w) / TEMPERATURE, y)
    atol = linear_logprob_atol(h, w, temperature=TEMPERATURE)
    for field, x, z in zip(a._fields, a, b):
        np.testing.assert_allclose(x, z, rtol=0, atol=atol, err_msg=field)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", list(IMPLS))
def test_matches_reference_forward_and_gradient(name, dtype):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
    n, d, v = 21, 24, 300
    hidden = jax.random.normal(k1, (n, d)).astype(dtype)
    projection = jax.random.normal(k2, (d, v)).astype(dtype)
    labels = jax.random.randint(k3, (n,), 0, v)
    weights = jax.random.normal(k4, (3, n))
    out, (d_h, d_w) = value_and_grads(IMPLS[name], hidden, projection, labels, weights)
    ref, (ref_h, ref_w) = value_and_grads(reference, hidden, projection, labels, weights)
    assert d_h.dtype == dtype and d_w.dtype == dtype
    assert d_h.shape == (n, d) and d_w.shape == (d, v)
    # Both compute the logits and what follows in float32 from the same (exactly upcast)
    # inputs. A bfloat16 kernel rounds dz to bfloat16 before its two gradient matmuls.
    atol = linear_logprob_atol(hidden, projection, temperature=TEMPERATURE)
    casts = int(dtype == jnp.bfloat16)
    for field, a, b in zip(ref._fields, out, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=field)
    for a, b in ((d_h, ref_h), (d_w, ref_w)):
        np.testing.assert_allclose(a, b, **logprob_grad_tolerance(atol, b, casts=casts))


@pytest.mark.parametrize("name", ["chunked", "pallas_gpu"])
def test_vmap_over_a_leading_axis(name):
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    hidden = jax.random.normal(k1, (2, 10, 24))
    projection = jax.random.normal(k2, (24, 130))
    labels = jax.random.randint(k3, (2, 10), 0, 130)

    def outputs_and_grads(fn):
        f = jax.vmap(fn, in_axes=(0, None, 0))
        out = f(hidden, projection, labels)
        grads = jax.grad(lambda h, w: jnp.sum(f(h, w, labels).logprobs), (0, 1))(hidden, projection)
        return out, grads

    out, (d_h, d_w) = jax.jit(lambda: outputs_and_grads(IMPLS[name]))()
    ref, (ref_h, ref_w) = jax.jit(lambda: outputs_and_grads(reference))()
    atol = linear_logprob_atol(hidden, projection, temperature=TEMPERATURE)
    np.testing.assert_allclose(out.entropy, ref.entropy, rtol=0, atol=atol)
    for a, b in ((d_h, ref_h), (d_w, ref_w)):
        np.testing.assert_allclose(a, b, **logprob_grad_tolerance(atol, b))


def test_bad_temperature_and_shapes_are_named():
    h, w, y = jnp.zeros((4, 8)), jnp.zeros((8, 16)), jnp.zeros((4,), jnp.int32)
    with pytest.raises(ValueError, match="temperature"):
        L.chunked_linear_logprobs(h, w, y, temperature=0.0)
    with pytest.raises(ValueError, match="projection"):
        L.chunked_linear_logprobs(h, jnp.zeros((7, 16)), y)
