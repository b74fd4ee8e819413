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
