"""Decoder: logical axes, padding invariances, KV cache, remat, dtypes, heads."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.models import (
    ModelConfig,
    build,
    gather_positions,
    init_cache,
    init_params,
    last_token_positions,
    lm_head_kernel,
    logical_axes,
)
from rewardjax.models.transformer import apply_rope, default_positions

LOGICAL_NAMES = {"embed", "mlp", "heads", "kv", "vocab", "layers"}
ALL_HEADS = ("lm", "value", "reward", "prm")

# Small versions of the three families.
CONFIGS = {
    "qwen2": ModelConfig(
        family="qwen2",
        vocab_size=61,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        qkv_bias=True,
    ),
    "llama": ModelConfig(
        family="llama",
        vocab_size=61,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=1,
        tie_word_embeddings=False,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    "qwen3": ModelConfig(
        family="qwen3",
        vocab_size=61,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        qk_norm=True,
    ),
}


def _is_spec(x):
    return isinstance(x, jax.sharding.PartitionSpec)


def _path_str(path):
    return "/".join(str(getattr(k, "key", k)) for k in path)


@functools.cache
def _params(config, heads=("lm",), seed=0):
    """Random parameters drawn in numpy on the shapes of `init_params` (no compile).

    Std 0.2 keeps logits far from uniform; biases are nonzero and norm gains
    differ from 1 so that every parameter matters.
    """
    shapes = jax.eval_shape(lambda: init_params(config, jax.random.key(0), heads))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        noise = rng.standard_normal(leaf.shape)
        value = 1.0 + 0.1 * noise if _path_str(path).endswith("scale") else 0.2 * noise
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.partial(jax.jit, static_argnames=("config", "heads"))
def _run(params, tokens, mask, *, config, heads):
    model = build(config, heads)
    variables = {"params": params}
    hidden = model.apply(variables, tokens, attention_mask=mask, method="hidden_states")
    return hidden, model.apply(variables, hidden, method="apply_heads")


def _outputs(config, params, tokens, mask=None, heads=("lm",)):
    """(hidden [B, T, D], head outputs) of one jitted call."""
    tokens = jnp.asarray(tokens, jnp.int32)
    mask = jnp.ones(tokens.shape, jnp.int32) if mask is None else jnp.asarray(mask, jnp.int32)
    return _run(params, tokens, mask, config=config, heads=tuple(heads))


def _forward(config, params, tokens, mask=None, heads=("lm",)):
    return _outputs(config, params, tokens, mask, heads)[1]


def _left_pad(rows, length, pad=0):
    tokens = np.full((len(rows), length), pad, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        tokens[i, length - len(row) :] = row
        mask[i, length - len(row) :] = 1
    return tokens, mask


def test_apply_signature_returns_logits():
    # The public form: apply({"params": p}, tokens, attention_mask=...) → [B, T, V].
    config = CONFIGS["qwen2"]
    params = _params(config)
    tokens, mask = _left_pad([[1, 2, 3], [4, 5]], 3)
    logits = jax.jit(build(config).apply)({"params": params}, tokens, attention_mask=mask)
    chex.assert_shape(logits, (2, 3, config.vocab_size))
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, _forward(config, params, tokens, mask), atol=1e-6)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_logical_axes_on_every_parameter(family):
    config = CONFIGS[family]
    axes = logical_axes(config, ALL_HEADS)
    params = jax.eval_shape(lambda: init_params(config, jax.random.key(0), ALL_HEADS))
    assert jax.tree.structure(axes, is_leaf=_is_spec) == jax.tree.structure(params)
    specs = jax.tree_util.tree_flatten_with_path(axes, is_leaf=_is_spec)[0]
    shapes = {
        _path_str(p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    for path, spec in specs:
        name = _path_str(path)
        assert _is_spec(spec), name
        # One logical name per dimension, all from the rules-table vocabulary.
        assert len(spec) == len(shapes[name]), (name, spec, shapes[name])
        assert set(spec) <= LOGICAL_NAMES, (name, spec)
        if name.startswith("layers/"):
            assert spec[0] == "layers" and shapes[name][0] == config.num_layers, name
        else:
            assert "layers" not in spec, name
    names = {_path_str(p) for p, _ in specs}
    assert ("lm_head/kernel" in names) == (not config.tie_word_embeddings)
    assert ("layers/attn/q_norm/scale" in names) == config.qk_norm
    assert ("layers/attn/q_proj/bias" in names) == config.qkv_bias
    assert {"value_head/kernel", "reward_head/kernel", "prm_head/kernel"} <= names


def test_rope_rotates_pairs_by_position_times_frequency():
    # Dh = 2: one pair (x1, x2) = (1, 0), inv_freq = [0.5]; at position 2 the angle
    # is 1 rad, and rotate-half gives (x1 cos − x2 sin, x2 cos + x1 sin) = (cos 1, sin 1).
    x = jnp.array([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # [B=1, T=2, H=1, Dh=2]
    positions = jnp.array([[0, 2]])
    out = apply_rope(x, positions, np.array([0.5], np.float32))
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(out[0, 1, 0], [np.cos(1.0), np.sin(1.0)], atol=1e-6)


def test_default_positions_skip_left_padding():
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(default_positions(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_ragged_left_padded_rows_equal_unpadded_rows(family):
    config = CONFIGS[family]
    params = _params(config)
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, config.vocab_size, n) for n in (6, 3)]
    tokens, mask = _left_pad(rows, 9)
    batch = np.asarray(_forward(config, params, tokens, mask))
    # The content of padding must not matter either.
    noisy = np.where(mask > 0, tokens, rng.integers(0, config.vocab_size, tokens.shape))
    batch_noisy = np.asarray(_forward(config, params, noisy, mask))
    for i, row in enumerate(rows):
        alone = np.asarray(_forward(config, params, row[None]))[0]
        np.testing.assert_allclose(batch[i, 9 - len(row) :], alone, atol=1e-5)
        np.testing.assert_allclose(batch_noisy[i, 9 - len(row) :], alone, atol=1e-5)


def test_causal_future_tokens_do_not_change_past_logits():
    config = CONFIGS["qwen2"]
    params = _params(config)
    a = np.array([[1, 2, 3, 4, 5, 6]], np.int32)
    b = a.copy()
    b[0, 4:] = [40, 50]
    la, lb = _forward(config, params, a), _forward(config, params, b)
    np.testing.assert_allclose(la[0, :4], lb[0, :4], atol=1e-6)
    assert np.abs(la[0, 4:] - lb[0, 4:]).max() > 1e-3


@pytest.mark.parametrize("family,cache_block", [(f, 0) for f in sorted(CONFIGS)] + [("qwen2", 4)])
def test_cached_decode_equals_full_forward(family, cache_block):
    # cache_block=4 over 12 slots: the decode steps at slots 6, 7, 8 read the first
    # 8 slots (lax.switch branch 1 of 3), not all 12.
    config = CONFIGS[family]
    params = _params(config)
    model = build(config, cache_block=cache_block)
    decode = jax.jit(lambda *args: model.apply(*args, method="decode"))
    rng = np.random.default_rng(1)
    # Left-padded ragged prompts of 6 and 3 tokens, then 3 decoded tokens each.
    prompt_len, steps = 6, 3
    rows = [rng.integers(0, config.vocab_size, n + steps) for n in (6, 3)]
    tokens, mask = _left_pad(rows, prompt_len + steps)
    full = _forward(config, params, tokens, mask)
    positions = default_positions(jnp.asarray(mask))
    slots = prompt_len + steps + 3  # spare slots stay masked
    slot_mask = np.zeros((2, slots), np.int32)
    slot_mask[:, :prompt_len] = mask[:, :prompt_len]
    cache = init_cache(config, 2, slots)
    logits, cache = decode(
        {"params": params},
        jnp.asarray(tokens[:, :prompt_len]),
        positions[:, :prompt_len],
        jnp.asarray(slot_mask),
        cache,
        0,
    )
    step_logits = [logits]
    for t in range(prompt_len, prompt_len + steps):
        slot_mask[:, t] = 1
        logits, cache = decode(
            {"params": params},
            jnp.asarray(tokens[:, t : t + 1]),
            positions[:, t : t + 1],
            jnp.asarray(slot_mask),
            cache,
            t,
        )
        step_logits.append(logits)
    cached = np.concatenate(step_logits, axis=1)
    real = mask > 0
    np.testing.assert_allclose(cached[real], np.asarray(full)[real], atol=1e-5)
    # Slots never written stay zero (keys are stored [L, B, K, Dh, S]).
    assert not np.any(np.asarray(cache.k)[..., prompt_len + steps :])
    assert not np.any(np.asarray(cache.v)[:, :, :, prompt_len + steps :])
    assert np.all(np.any(np.asarray(cache.k)[..., : prompt_len + steps] != 0, axis=3)[:, 0])


def _token_nll(params, tokens, mask, config):
    logits = build(config).apply({"params": params}, tokens, attention_mask=mask)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    weights = mask[:, 1:] * mask[:, :-1]
    return -(picked * weights).sum() / weights.sum()


_loss_and_grad = jax.jit(jax.value_and_grad(_token_nll), static_argnums=3)


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_matches_no_remat_values_and_gradients(remat):
    config = CONFIGS["qwen2"]
    params = _params(config)
    tokens, mask = _left_pad([[3, 1, 4, 1, 5, 9], [2, 7, 1]], 6)
    remat_config = config.replace(remat=remat)
    remat_shapes = jax.eval_shape(lambda: init_params(remat_config, jax.random.key(0)))
    assert jax.tree.structure(remat_shapes) == jax.tree.structure(params)
    loss, grads = _loss_and_grad(params, tokens, mask, config)
    remat_loss, remat_grads = _loss_and_grad(params, tokens, mask, remat_config)
    np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
    chex.assert_trees_all_close(remat_grads, grads, atol=1e-6, rtol=1e-5)
    assert float(jnp.abs(grads["layers"]["mlp"]["up_proj"]["kernel"]).max()) > 0


def test_bfloat16_runs_and_stays_close_to_float32():
    config = CONFIGS["qwen2"]
    params = _params(config)
    tokens, mask = _left_pad([[3, 1, 4, 1, 5, 9], [2, 7, 1]], 6)
    reference = np.asarray(_forward(config, params, tokens, mask))
    scale = np.abs(reference).max()
    real = mask > 0

    compute_bf16 = config.replace(dtype="bfloat16")
    logits = _forward(compute_bf16, params, tokens, mask)
    assert logits.dtype == jnp.float32  # logits leave the model in float32
    np.testing.assert_allclose(np.asarray(logits)[real], reference[real], atol=0.05 * scale)

    all_bf16 = config.replace(dtype="bfloat16", param_dtype="bfloat16")
    shapes = jax.eval_shape(lambda: init_params(all_bf16, jax.random.key(0)))
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(shapes))
    cast = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    hidden, logits = _outputs(all_bf16, cast, tokens, mask)
    assert hidden.dtype == jnp.bfloat16
    logits = np.asarray(logits)
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits[real], reference[real], atol=0.05 * scale)
    # Still the same model: the greedy choice agrees on nearly every real position.
    agree = (logits.argmax(-1) == reference.argmax(-1))[real].mean()
    assert agree >= 0.8


def test_heads_share_the_backbone():
    config = CONFIGS["qwen2"]
    params = _params(config, ALL_HEADS)
    tokens, mask = _left_pad([[3, 1, 4, 1, 5, 9], [2, 7, 1]], 6)
    hidden, out = _outputs(config, params, tokens, mask, ALL_HEADS)
    assert set(out) == set(ALL_HEADS)
    chex.assert_shape(out["lm"], (2, 6, config.vocab_size))
    chex.assert_shape(hidden, (2, 6, config.hidden_size))
    for name in ("value", "reward", "prm"):
        chex.assert_shape(out[name], (2, 6))
        assert out[name].dtype == jnp.float32
        head = params[f"{name}_head"]
        np.testing.assert_allclose(out[name], hidden @ head["kernel"] + head["bias"], atol=1e-5)
    np.testing.assert_allclose(out["lm"], hidden @ params["embed"]["embedding"].T, atol=1e-5)
    # The heads are separate parameters, so their scores differ.
    assert np.abs(np.asarray(out["value"]) - np.asarray(out["reward"])).max() > 1e-3


def test_unknown_head_is_rejected():
    with pytest.raises(ValueError, match="critic"):
        jax.eval_shape(lambda: init_params(CONFIGS["qwen2"], jax.random.key(0), ("lm", "critic")))


def test_gather_positions_hand_cases():
    values = jnp.arange(8.0).reshape(2, 4)  # [[0 1 2 3], [4 5 6 7]]
    np.testing.assert_array_equal(gather_positions(values, jnp.array([3, 1])), [3.0, 5.0])
    values3 = jnp.arange(16.0).reshape(2, 4, 2)  # row 1, position 2 → [4·2+2·2, +1] = [12, 13]
    np.testing.assert_array_equal(
        gather_positions(values3, jnp.array([0, 2])), [[0.0, 1.0], [12.0, 13.0]]
    )


def test_last_token_positions_hand_cases():
    left = jnp.array([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(last_token_positions(left), [3, 3, 3])
    right = jnp.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(last_token_positions(right), [1, 0, 2])
    assert last_token_positions(right).dtype == jnp.int32


def test_single_reward_head_read_at_last_token_of_left_and_right_padding():
    config = CONFIGS["qwen2"]
    params = _params(config, ("reward",))
    assert "lm_head" not in params and "reward_head" in params
    row = [9, 8, 7]
    alone = _forward(config, params, np.array([row]), heads=("reward",))
    chex.assert_shape(alone, (1, 3))  # one head: an array, not a dict
    left, left_mask = _left_pad([row], 6)
    right = np.array([[9, 8, 7, 0, 0, 0]])
    right_mask = np.array([[1, 1, 1, 0, 0, 0]])
    tokens = np.concatenate([left, right])
    mask = np.concatenate([left_mask, right_mask])
    scores = _forward(config, params, tokens, mask, heads=("reward",))
    value = gather_positions(scores, last_token_positions(jnp.asarray(mask)))
    np.testing.assert_allclose(value, [alone[0, -1]] * 2, atol=1e-5)


def test_tied_and_untied_lm_heads():
    tied = CONFIGS["qwen2"]
    untied = tied.replace(tie_word_embeddings=False)
    tied_params = _params(tied)
    untied_params = _params(untied)
    assert "lm_head" not in tied_params
    chex.assert_shape(untied_params["lm_head"]["kernel"], (tied.hidden_size, tied.vocab_size))
    np.testing.assert_array_equal(
        lm_head_kernel(tied, tied_params), tied_params["embed"]["embedding"].T
    )
    np.testing.assert_array_equal(
        lm_head_kernel(untied, untied_params), untied_params["lm_head"]["kernel"]
    )
    tokens = np.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    for config, params in ((tied, tied_params), (untied, untied_params)):
        hidden, logits = _outputs(config, params, tokens)
        np.testing.assert_allclose(logits, hidden @ lm_head_kernel(config, params), atol=1e-5)
    # Untied: the output projection is its own parameter; the embedding is input only.
    bumped = dict(untied_params, lm_head={"kernel": untied_params["lm_head"]["kernel"] * 2})
    hidden, logits = _outputs(untied, untied_params, tokens)
    np.testing.assert_allclose(_forward(untied, bumped, tokens), 2 * logits, atol=1e-5)


def test_jitted_apply_traces_once_for_repeated_shapes():
    config = CONFIGS["qwen2"]
    params = _params(config)
    model = build(config)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def logits_fn(params, tokens, mask):
        return model.apply({"params": params}, tokens, attention_mask=mask)

    rng = np.random.default_rng(0)
    for _ in range(3):
        tokens = jnp.asarray(rng.integers(0, config.vocab_size, (2, 6)), jnp.int32)
        mask = jnp.asarray(np.ones((2, 6)), jnp.int32)
        logits_fn(params, tokens, mask).block_until_ready()
    # The counter is live: a new shape would trace again and is refused.
    with pytest.raises(AssertionError, match="traced"):
        logits_fn(params, tokens[:, :5], mask[:, :5])
