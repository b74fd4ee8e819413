"""Token math for training: log-probs, entropy and the policy loss, each picking a kernel.

`impl="auto"` runs the Pallas kernels on GPU and TPU and the chunked XLA path on
CPU; "reference", "chunked" and "pallas" force one (see `resolve_impl`).
"""

from rewardjax.ops.dispatch import IMPLS, Choice, resolve_impl
from rewardjax.ops.logprobs import TokenLogprobs, token_logprobs, token_logprobs_from_hidden
from rewardjax.ops.policy import policy_loss

__all__ = [
    "IMPLS",
    "Choice",
    "TokenLogprobs",
    "policy_loss",
    "resolve_impl",
    "token_logprobs",
    "token_logprobs_from_hidden",
]
