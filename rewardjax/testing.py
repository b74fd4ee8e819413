"""Helpers for tests of pure array functions: one compile per call signature, fast XLA options.

adv = Jitted(rewardjax.objectives.advantages)
adv.grpo_group_norm(rewards, group_size=4)     # runs under jit; keywords that are
                                               # not arrays are static
"""

from __future__ import annotations

import functools

import jax
import numpy as np

# Per-executable XLA options (not global flags): tiny test programs compile faster
# with the backend optimisations off, and compilation dominates such tests.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.cache
def _compiled(fn, static):
    return jax.jit(functools.partial(fn, **dict(static)), compiler_options=FAST_COMPILE)


def fast_jit(fn):
    """fn under jit, array keywords traced and the others static: one compile per call
    beats op-by-op dispatch, which compiles every primitive for every new shape."""

    def call(*args, **kwargs):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs))):
            return fn(*args, **kwargs)  # already inside a jitted function
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array | np.ndarray)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
        return _compiled(fn, static)(*args, **arrays)

    return call


class Jitted:
    """A module whose functions run under `fast_jit`."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return fast_jit(getattr(self._module, name))


def value_and_grad_jit(f, **kw):
    return jax.jit(jax.value_and_grad(f, **kw), compiler_options=FAST_COMPILE)


def grad_jit(f, **kw):
    return jax.jit(jax.grad(f, **kw), compiler_options=FAST_COMPILE)


def assert_close(x, expected, **kw):
    np.testing.assert_allclose(np.asarray(x), np.asarray(expected, np.float32), **kw)


# Tolerances between two implementations of one float32 computation (a kernel and its
# reference, or two summation orders). They differ by rounding only, so each bound is the
# unit roundoff eps × the magnitude of what is rounded × a factor for the number of rounded
# operations, not one machine's result. The measured errors quoted (CPU, XLA's default and
# single-threaded Eigen alike) show the margin; a 1e-3 relative change of one input element
# of a kernel still fails every comparison that uses them.

EPS32 = float(np.finfo(np.float32).eps)


def _max_abs(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.max(np.abs(x[np.isfinite(x)]), initial=0.0))


def logsumexp_atol(logits) -> float:
    """Absolute tolerance of a logsumexp, log-prob or entropy over V logits, computed two ways.

    Σ_v exp(z_v − m) rounds each term relative to |z| (the subtraction, the exp, an online
    rescale by exp(m_tile − m)), and the V additions add errors of independent sign that grow
    as √V; the log turns the sum's relative error into an absolute one. The kernels compute
    in float32 whatever the logits' dtype: 8·eps₃₂·(max|z| + √V), masked (−inf) logits left
    out (measured: ≤ 0.4·eps₃₂·(max|z| + √V) for every output and implementation).
    """
    return 8 * EPS32 * (_max_abs(logits) + np.sqrt(np.shape(logits)[-1]))


def linear_logprob_atol(hidden, projection, *, temperature: float = 1.0) -> float:
    """`logsumexp_atol` of z = hidden @ projection / τ plus the rounding of z itself.

    Each z sums D products, an error relative to Σ_d |h_d·w_dv| / τ rather than to |z|:
    8·eps₃₂·(max_nv Σ_d |h_nd·w_dv| / τ + max|z| + √V) (measured: ≤ 0.35·eps₃₂·(...)).
    """
    h = np.asarray(hidden, np.float64).reshape(-1, np.shape(hidden)[-1])
    w = np.asarray(projection, np.float64)
    dot_scale = _max_abs(np.abs(h) @ np.abs(w)) / temperature
    logits = h @ w / temperature
    return 8 * EPS32 * (dot_scale + _max_abs(logits) + np.sqrt(w.shape[-1]))


def logprob_grad_tolerance(value_atol: float, reference_grad, *, casts: int = 0) -> dict:
    """`assert_allclose` tolerances of a log-prob kernel's gradient against the reference.

    An error Δ (in nats) of z − logsumexp is a relative error Δ of every p_v, so of every
    gradient term: atol = Δ·max|∂| (measured: ≤ 0.05 of it). A gradient in a narrower dtype
    adds its final rounding, ≤ 1 ulp ≤ eps·|∂| of each element (rtol), and `casts` more
    roundings to that dtype of what enters a reduction (atol += casts·eps·max|∂|; measured:
    bfloat16 gradients ≤ 1 ulp apart).
    """
    eps = float(np.finfo(np.asarray(reference_grad).dtype).eps)
    scale = _max_abs(reference_grad)
    return dict(rtol=eps, atol=(value_atol + casts * eps) * scale)


def token_sum_rtol(num_tokens) -> float:
    """Relative tolerance of a float32 loss or metric summed over n tokens in another order.

    Each per-token term carries a few roundings (exp, clip, the products with A and the row
    weight) relative to its size, and the n additions add errors of independent sign that grow
    as √n: 8·eps₃₂·√n. Use it as rtol, and as atol for values near 0, whose terms are O(1)
    (measured: ≤ 1·eps₃₂·|value|, every aggregation and metric).
    """
    return 8 * EPS32 * float(np.sqrt(max(float(num_tokens), 1.0)))


def elementwise_tolerance(reference, *, roundings: int = 8) -> dict:
    """`assert_allclose` tolerances of a per-element float32 expression computed two ways.

    A handful of rounded operations per element (exp, clip, products): rtol = roundings·eps₃₂;
    the same relative to max|reference| as atol, for an element that is a difference of two
    such terms (a policy gradient and a KL gradient of opposite sign). Measured: ≤ 0.5·eps₃₂.
    """
    rtol = roundings * EPS32
    return dict(rtol=rtol, atol=rtol * _max_abs(reference))
