"""Backend-dependent choice of kernel implementation."""

import pytest

from rewardjax.ops import IMPLS, resolve_impl


@pytest.mark.parametrize(
    "impl, backend, expected",
    [
        ("auto", "cpu", ("chunked", "gpu", False)),
        ("auto", "gpu", ("pallas", "gpu", False)),
        ("auto", "cuda", ("pallas", "gpu", False)),
        ("auto", "tpu", ("pallas", "tpu", False)),
        # Forcing Pallas on CPU runs the GPU-layout kernels in the interpreter.
        ("pallas", "cpu", ("pallas", "gpu", True)),
        ("chunked", "tpu", ("chunked", "tpu", False)),
        ("reference", "gpu", ("reference", "gpu", False)),
    ],
)
def test_resolve_impl(impl, backend, expected):
    assert tuple(resolve_impl(impl, backend)) == expected


def test_auto_on_this_machine_is_a_known_impl():
    assert resolve_impl().impl in IMPLS


def test_unknown_impl_is_named():
    with pytest.raises(ValueError, match="'triton'"):
        resolve_impl("triton", "gpu")
