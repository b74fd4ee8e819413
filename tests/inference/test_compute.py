"""rewardjax.inference.compute: the FLOPs estimate against the parameters and XLA's own count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import models
from rewardjax.inference.compute import (
    causal_pairs,
    forward_flops,
    matmul_params,
    scorer_flops,
)


@pytest.mark.parametrize("tied", [True, False])
def test_matmul_params_counts_every_kernel_and_the_head(tied):
    config = models.preset("tiny", num_layers=3, tie_word_embeddings=tied)
    params = models.init_params(config, jax.random.key(0))
    kernels = sum(
        x.size
        for path, x in jax.tree_util.tree_leaves_with_path(params)
        if jax.tree_util.keystr(path).endswith("['kernel']")
    )
    # A tied head multiplies by the embedding table; an untied one has its own kernel.
    head = config.vocab_size * config.hidden_size if tied else 0
    assert matmul_params(config) == kernels + head


def test_causal_pairs_counts_attended_positions():
    for start in range(4):
        for length in range(5):
            positions = sum(start + i for i in range(1, length + 1))
            assert causal_pairs(start, length) == positions
    np.testing.assert_array_equal(causal_pairs(np.array([0, 2]), np.array([3, 1])), [6, 3])


def test_forward_flops_agree_with_xla_cost_analysis():
    # One layer: XLA counts a scanned layer stack's body once. The model computes the
    # full n×n attention under a mask, so it attends n² positions.
    config = models.preset(
        "tiny", num_layers=1, hidden_size=128, intermediate_size=384, vocab_size=512
    )
    params = models.init_params(config, jax.random.key(0))
    model = models.build(config)
    n = 64
    fn = jax.jit(lambda p, t: model.apply({"params": p}, t))
    cost = fn.lower(params, jnp.zeros((1, n), jnp.int32)).compile().cost_analysis()
    xla = (cost if isinstance(cost, dict) else cost[0])["flops"]
    ours = forward_flops(config, tokens=n, attended=n * n)
    # The rest (norms, softmax, RoPE, activations) is a few percent.
    assert ours == pytest.approx(xla, rel=0.1)
    assert ours < xla


def test_scorer_flops_sums_the_models_a_scorer_runs():
    a = models.preset("tiny", num_layers=1)
    b = models.preset("tiny", num_layers=2)
    kw = dict(tokens=np.array([10.0, 20.0]), attended=np.array([55.0, 210.0]))
    np.testing.assert_allclose(scorer_flops(None, **kw), [0.0, 0.0])
    np.testing.assert_allclose(scorer_flops(a, **kw), forward_flops(a, **kw))
    np.testing.assert_allclose(
        scorer_flops([a, b], **kw), forward_flops(a, **kw) + forward_flops(b, **kw)
    )
