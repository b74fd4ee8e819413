"""Pallas kernels, each beside its pure-jnp reference and its chunked XLA version.

Installed as `rewardjax.kernels`; callers normally go through `rewardjax.ops`,
which picks an implementation for the backend.

  logprob         fused log-prob + entropy + logsumexp from logits [N, V]
  linear_logprob  the same from hidden [N, D] and projection [D, V], never holding [N, V]
  policy_loss     PPO clip / dual clip / k3 / entropy bonus, row-weighted, fwd + bwd in one pass
"""

import sys

if __name__ == "kernels":
    # This directory was found as top-level `kernels` because the repository
    # root is on sys.path (`python -m ...` run from the root). That name is
    # Hugging Face's `kernels` package, which transformers imports; a module
    # may replace itself in sys.modules while it loads, so hand that over.
    import importlib.machinery
    import importlib.util
    import os

    _root = os.path.realpath(os.path.join(os.path.dirname(__file__), os.pardir))
    _path = [p for p in sys.path if os.path.realpath(p or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec("kernels", _path)
    if _spec is None:
        raise ModuleNotFoundError(
            f"No module named 'kernels' ({os.path.dirname(__file__)} is rewardjax.kernels)",
            name="kernels",
        )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["kernels"] = _module
    _spec.loader.exec_module(_module)
else:
    from rewardjax.kernels.linear_logprob import (
        chunked_linear_logprobs,
        pallas_linear_logprobs,
        reference_linear_logprobs,
    )
    from rewardjax.kernels.logprob import (
        TokenLogprobs,
        chunked_token_logprobs,
        pallas_token_logprobs,
        reference_token_logprobs,
    )
    from rewardjax.kernels.policy_loss import fused_policy_loss

    __all__ = [
        "TokenLogprobs",
        "chunked_linear_logprobs",
        "chunked_token_logprobs",
        "fused_policy_loss",
        "pallas_linear_logprobs",
        "pallas_token_logprobs",
        "reference_linear_logprobs",
        "reference_token_logprobs",
    ]
