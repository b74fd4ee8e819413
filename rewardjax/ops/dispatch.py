"""Choice of implementation for the token-math ops: reference, chunked XLA or Pallas."""

from __future__ import annotations

from typing import NamedTuple

import jax

IMPLS = ("auto", "reference", "chunked", "pallas")

_GPU_BACKENDS = ("gpu", "cuda", "rocm")


class Choice(NamedTuple):
    """A resolved implementation.

    Attributes:
      impl: "reference" | "chunked" | "pallas".
      target: Pallas lowering, "gpu" (Triton) or "tpu" (Mosaic).
      interpret: run Pallas in the interpreter (on a backend without a Pallas lowering).
    """

    impl: str
    target: str
    interpret: bool


def resolve_impl(impl: str = "auto", backend: str | None = None) -> Choice:
    """Resolves `impl` for `backend` (default: `jax.default_backend()`).

    "auto" is Pallas on GPU and TPU and the chunked XLA path on CPU. An explicit
    "pallas" on CPU runs the GPU-layout kernels in the Pallas interpreter (slow:
    meant for tests).

    Args:
      impl: one of `IMPLS`.
      backend: "cpu", "gpu"/"cuda"/"rocm" or "tpu".

    Returns:
      The resolved `Choice`.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    backend = jax.default_backend() if backend is None else backend
    accelerated = backend == "tpu" or backend in _GPU_BACKENDS
    target = "tpu" if backend == "tpu" else "gpu"
    if impl == "auto":
        impl = "pallas" if accelerated else "chunked"
    return Choice(impl, target, interpret=impl == "pallas" and not accelerated)
