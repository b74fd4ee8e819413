"""A group's prompt run once (forward.shared_prompt_hidden) equals running it per row."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.models import build, forward, init_params
from tests.models.test_transformer import CONFIGS

P, G, L, T = 3, 4, 6, 5


def _batch(seed=0):
    """Left-padded prompts repeated G times, right-padded completions of ragged lengths."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(3, 61, (P, L)).astype(np.int32)
    prompt_mask = np.ones((P, L), np.int32)
    prompts[0, :2], prompt_mask[0, :2] = 0, 0  # a shorter prompt
    prompts[1, :4], prompt_mask[1, :4] = 0, 0
    tokens = rng.integers(3, 61, (P * G, T)).astype(np.int32)
    lengths = rng.integers(1, T + 1, (P * G, 1))
    mask = (np.arange(T)[None] < lengths).astype(np.float32)
    tokens = np.where(mask > 0, tokens, 0)
    return np.repeat(prompts, G, 0), np.repeat(prompt_mask, G, 0), tokens, mask


@pytest.mark.parametrize(
    "family, remat", [(f, "none") for f in sorted(CONFIGS)] + [("qwen2", "full")]
)
def test_shared_prompt_equals_per_row_forward_values_and_gradients(family, remat):
    config = CONFIGS[family].replace(remat=remat)
    model = build(config)
    params = init_params(config, jax.random.key(1))
    prompts, prompt_mask, tokens, mask = _batch()

    def loss(params, group_size):
        logp, entropy = forward.completion_logprobs(
            model, params, prompts, prompt_mask, tokens, mask, group_size=group_size
        )
        return jnp.sum((logp + 0.3 * entropy) * mask), (logp, entropy)

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, (ref_logp, ref_ent)), ref_grads = grad(params, 1)
    (_, (logp, ent)), grads = grad(params, G)
    real = mask > 0
    np.testing.assert_allclose(logp[real], ref_logp[real], atol=2e-5)
    np.testing.assert_allclose(ent[real], ref_ent[real], atol=2e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, atol=2e-4 * float(jnp.max(jnp.abs(b))) + 1e-6)


def test_single_token_completions_read_the_prompt_only():
    config = CONFIGS["qwen2"]
    model = build(config)
    params = init_params(config, jax.random.key(2))
    prompts, prompt_mask, tokens, mask = _batch(seed=3)
    a = forward.completion_hidden(model, params, prompts, prompt_mask, tokens[:, :1], mask[:, :1])
    b = forward.completion_hidden(
        model, params, prompts, prompt_mask, tokens[:, :1], mask[:, :1], group_size=G
    )
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_the_group_prompt_is_read_from_its_first_row():
    """A different prompt in a later row of a group is not seen (the documented contract)."""
    config = CONFIGS["qwen2"]
    model = build(config)
    params = init_params(config, jax.random.key(2))
    prompts, prompt_mask, tokens, mask = _batch(seed=4)
    changed = prompts.copy()
    changed[1:G, -1] = (changed[1:G, -1] + 1) % 61
    a = forward.completion_hidden(model, params, prompts, prompt_mask, tokens, mask, group_size=G)
    b = forward.completion_hidden(model, params, changed, prompt_mask, tokens, mask, group_size=G)
    np.testing.assert_array_equal(a, b)
    c = forward.completion_hidden(model, params, changed, prompt_mask, tokens, mask)
    assert not np.allclose(c[1:G], a[1:G], atol=1e-3)


def test_rows_must_split_into_groups():
    config = CONFIGS["qwen2"]
    model = build(config)
    params = init_params(config, jax.random.key(0))
    prompts, prompt_mask, tokens, mask = _batch()
    with pytest.raises(ValueError, match="12 rows do not split into groups of 5"):
        forward.completion_hidden(model, params, prompts, prompt_mask, tokens, mask, group_size=5)
