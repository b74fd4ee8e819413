"""LoRA adapters: zero init, merge, adapter-only updates, bad configs, PEFT round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewardjax import models, sampling
from rewardjax.models import lora
from rewardjax.training.step import TrainState, make_update_step

ALL = lora.TARGETS
BASE = models.preset("tiny", num_layers=2)
ADAPTED = BASE.replace(lora_rank=4, lora_alpha=8.0, lora_targets=ALL)
TOKENS = jnp.array([[5, 9, 13, 2, 7, 7], [0, 0, 4, 8, 15, 16]])
MASK = jnp.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


def _logits(config, params):
    return models.build(config).apply({"params": params}, TOKENS, attention_mask=MASK)


def _random_adapters(params, seed=1):
    """Every adapter leaf drawn at random (B too, so the update is not zero)."""
    keys = iter(jax.random.split(jax.random.key(seed), 64))

    def draw(path, x):
        if lora.is_adapter_path(path):
            return 0.2 * jax.random.normal(next(keys), x.shape, x.dtype)
        return x

    return jax.tree_util.tree_map_with_path(draw, params)


def test_fresh_adapters_leave_the_logits_unchanged():
    params = models.init_params(ADAPTED, jax.random.key(0))
    assert lora.adapter_count(params) == 2 * sum(
        4 * (np.prod(i) + np.prod(o)) for i, o in (lora.projection_shapes(BASE, t) for t in ALL)
    )
    np.testing.assert_array_equal(_logits(ADAPTED, params), _logits(BASE, lora.strip(params)))
    # B starts at zero, A does not (its gradient needs B, B's needs A).
    b = params["layers"]["attn"]["q_proj_lora"]["b"]
    assert not np.any(b) and np.any(params["layers"]["attn"]["q_proj_lora"]["a"])


def test_merged_equals_unmerged_and_adapters_change_the_model():
    params = _random_adapters(models.init_params(ADAPTED, jax.random.key(0)))
    adapted = _logits(ADAPTED, params)
    merged_config, merged = lora.merge(ADAPTED, params)
    assert merged_config == BASE and lora.adapter_count(merged) == 0
    np.testing.assert_allclose(_logits(merged_config, merged), adapted, atol=2e-5)
    assert np.abs(adapted - _logits(BASE, lora.strip(params))).max() > 1e-2
    # The update of one projection is (α/r)·x·A·B: checked on q_proj by hand.
    x = jax.random.normal(jax.random.key(3), (2, BASE.hidden_size))
    a = params["layers"]["attn"]["q_proj_lora"]["a"][0]
    b = params["layers"]["attn"]["q_proj_lora"]["b"][0]
    delta = lora.LoRA(ADAPTED, (BASE.hidden_size,), ("embed",), b.shape[1:], ("heads", "kv")).apply(
        {"params": {"a": a, "b": b}}, x
    )
    expected = (8.0 / 4) * np.einsum("nd,dr,rhk->nhk", x, a, b)
    np.testing.assert_allclose(delta, expected, rtol=1e-5, atol=1e-6)


def test_only_adapters_get_gradients_and_optimizer_state():
    params = {"policy": models.init_params(ADAPTED, jax.random.key(0), ("lm", "value"))}
    mask = lora.trainable_mask(params)
    model = models.build(ADAPTED, ("lm", "value"))

    def loss_fn(p, batch, rng, totals):
        out = model.apply({"params": p["policy"]}, batch["tokens"], attention_mask=batch["mask"])
        return jnp.mean(jax.nn.logsumexp(out["lm"], -1)) + jnp.mean(out["value"] ** 2), {}

    optimizer = optax.adam(1e-2)
    state = TrainState.create(params, optimizer, mask)
    state_size = sum(np.size(x) for x in jax.tree.leaves(state.opt_state))
    trainable = sum(np.size(x) for x, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m)
    assert state_size == 2 * trainable + 1  # Adam's mu and nu of the trainable leaves, a count
    assert trainable == lora.adapter_count(params) + np.size(
        jax.tree.leaves(params["policy"]["value_head"])[0]
    ) + np.size(jax.tree.leaves(params["policy"]["value_head"])[1])
    step = jax.jit(make_update_step(loss_fn, optimizer, trainable=mask))
    batch = {"tokens": TOKENS, "mask": MASK}
    for _ in range(2):  # the second step moves A too (its gradient needs B ≠ 0)
        state, _ = step(state, batch, jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    before = jax.tree.leaves(params)
    for (path, new), old in zip(flat, before):
        trained = lora.is_adapter_path(path) or "value_head" in jax.tree_util.keystr(path)
        if lora.is_adapter_path(path):
            assert not np.array_equal(new, old), jax.tree_util.keystr(path)
        elif not trained:
            np.testing.assert_array_equal(new, old)


def test_a_bfloat16_base_trains_float32_adapters():
    config = ADAPTED.replace(param_dtype="bfloat16", dtype="bfloat16", lora_dtype="float32")
    params = {"policy": models.init_params(config, jax.random.key(0))}
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    adapters = [x for path, x in flat if lora.is_adapter_path(path)]
    base = [x for path, x in flat if not lora.is_adapter_path(path)]
    assert adapters and {x.dtype for x in adapters} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in base} == {jnp.dtype(jnp.bfloat16)}
    mask = lora.trainable_mask(params)
    model = models.build(config)

    def loss_fn(p, batch, rng, totals):
        logits = model.apply({"params": p["policy"]}, batch["tokens"], attention_mask=batch["mask"])
        return jnp.mean(jax.nn.logsumexp(logits.astype(jnp.float32), -1)), {}

    optimizer = optax.adam(1e-2)
    state = TrainState.create(params, optimizer, mask)
    # The optimizer's moments are the adapters' own, in float32.
    moments = [x for x in jax.tree.leaves(state.opt_state) if np.ndim(x)]
    assert moments and {x.dtype for x in moments} == {jnp.dtype(jnp.float32)}
    step = jax.jit(make_update_step(loss_fn, optimizer, trainable=mask))
    for _ in range(2):
        state, _ = step(state, {"tokens": TOKENS, "mask": MASK}, jax.random.key(0))
    for (path, new), (_, old) in zip(jax.tree_util.tree_flatten_with_path(state.params)[0], flat):
        if lora.is_adapter_path(path):  # trained, still float32
            assert new.dtype == jnp.float32 and not np.array_equal(new, old)
        else:  # frozen, still bfloat16
            assert new.dtype == jnp.bfloat16 and np.array_equal(new, old)


def test_sampler_serves_the_adapted_model():
    params = _random_adapters(models.init_params(ADAPTED, jax.random.key(0)))
    merged_config, merged = lora.merge(ADAPTED, params)
    prompts = [[5, 9, 13], [4, 8]]
    outs = [
        sampling.generate(
            config, p, prompts, rng=jax.random.key(0), n=1, max_new_tokens=6, temperature=0.0
        )
        for config, p in ((ADAPTED, params), (merged_config, merged))
    ]
    np.testing.assert_array_equal(outs[0].tokens, outs[1].tokens)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(lora_rank=4, lora_targets=("qkv",)),
            r"\['qkv'\] match no projection; the projections are q_proj",
        ),
        (dict(lora_rank=65, lora_targets=("q_proj",)), "lora_rank=65 exceeds q_proj's width 64"),
        (dict(lora_rank=0, lora_targets=("q_proj",)), "lora_targets is set but lora_rank is 0"),
        (dict(lora_rank=4), "lora_rank=4 needs lora_targets"),
    ],
)
def test_bad_lora_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BASE.replace(**kwargs)


@pytest.mark.slow
def test_peft_adapter_round_trip(tmp_path):
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    from tests.models.test_hf import _batch, _hf_logits, _hf_model

    hf = _hf_model("qwen2", True)
    base_dir = str(tmp_path / "base")
    hf.save_pretrained(base_dir)
    config, params = models.load_hf(base_dir)
    config = config.replace(
        lora_rank=4, lora_alpha=8.0, lora_targets=("q_proj", "v_proj", "down_proj", "o_proj")
    )
    key = jax.random.key(0)
    params = _random_adapters(lora.with_adapters(params, _fresh_adapters(config, key)), seed=2)
    adapter_dir = str(tmp_path / "adapter")
    lora.save_peft(adapter_dir, config, params, base_model=base_dir)
    tokens, mask, positions = _batch()
    with torch.no_grad():
        theirs = _hf_logits(
            peft.PeftModel.from_pretrained(hf, adapter_dir).eval(), tokens, mask, positions
        )
    ours = np.asarray(
        models.build(config).apply(
            {"params": params}, jnp.asarray(tokens), attention_mask=jnp.asarray(mask)
        )
    )
    real = mask > 0
    assert np.abs(ours - theirs)[real].max() <= 1e-4
    # Import: the same config and adapters come back.
    loaded_config, adapters = lora.load_peft(adapter_dir, models.load_hf(base_dir)[0])
    assert loaded_config == config
    for module, tree in adapters["layers"].items():
        for name, ab in tree.items():
            for k in ("a", "b"):
                np.testing.assert_allclose(ab[k], params["layers"][module][name][k], rtol=1e-6)
    # An adapter of another architecture is refused, naming the shapes.
    other = models.load_hf(base_dir)[0].replace(hidden_size=32, intermediate_size=48)
    with pytest.raises(ValueError, match="an adapter of another base"):
        lora.load_peft(adapter_dir, other)


def _fresh_adapters(config, key):
    full = models.init_params(config, key)
    return {
        "layers": {
            m: {k: v for k, v in t.items() if k.endswith("_lora")}
            for m, t in full["layers"].items()
            if isinstance(t, dict)
        }
    }
