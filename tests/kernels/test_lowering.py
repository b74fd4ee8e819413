"""The Pallas kernels lower for GPU (Triton) and TPU (Mosaic) on a CPU-only host.

Lowering runs the Pallas → Triton / Mosaic translation, which rejects what the
interpreter accepts but the hardware compilers do not (non-power-of-two Triton
tiles, unsupported primitives, a Mosaic GPU instead of a Triton routing). It does
not run the device compilers themselves.
"""

import jax
import jax.numpy as jnp
import pytest
from rewardjax.kernels import linear_logprob as L
from rewardjax.kernels import logprob as K
from rewardjax.kernels import policy_loss as P

S = jax.ShapeDtypeStruct
# Qwen2.5-0.5B's head widths, with N and T not multiples of any tile.
N, D, V, B, T = 1000, 896, 151936, 12, 1000


def kernels(target):
    def logits_grad(x, y):
        def f(z):
            return jnp.sum(K.pallas_token_logprobs(z, y, target=target).entropy)

        return jax.grad(f)(x)

    def linear_grad(h, w, y):
        def f(a, b):
            return jnp.sum(L.pallas_linear_logprobs(a, b, y, target=target).logprobs)

        return jax.grad(f, (0, 1))(h, w)

    def policy_grad(lp, old, adv, mask, ref, ent, w, beta):
        def f(x, e):
            return P.fused_policy_loss(
                x,
                old,
                adv,
                mask,
                row_weights=w,
                ref_logprobs=ref,
                entropy=e,
                dual_clip=3.0,
                kl_coef=beta,
                entropy_coef=0.01,
                impl="pallas",
                target=target,
            )[0]

        return jax.grad(f, (0, 1))(lp, ent)

    labels = S((N,), jnp.int32)
    bt = S((B, T), jnp.float32)
    return {
        "logits": (logits_grad, (S((N, V), jnp.bfloat16), labels)),
        "linear": (linear_grad, (S((N, D), jnp.bfloat16), S((D, V), jnp.bfloat16), labels)),
        "policy": (policy_grad, (*(bt,) * 6, S((B,), jnp.float32), S((), jnp.float32))),
    }


@pytest.mark.parametrize("target, platform", [("gpu", "cuda"), ("tpu", "tpu")])
def test_kernels_lower_for_the_accelerator(target, platform):
    for name, (fn, args) in kernels(target).items():
        lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,))
        text = lowered.as_text()
        # The kernels appear as custom calls of the device's Pallas backend.
        marker = "__gpu$xla.gpu.triton" if target == "gpu" else "tpu_custom_call"
        assert marker in text, name
