"""HF checkpoints: parity with transformers, export, shards, extra heads, bad checkpoints."""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from rewardjax.models import PRESETS, CheckpointError, build, load_hf, save_hf
from rewardjax.models.hf import HEADS_FILE, config_from_hf, config_to_hf

VOCAB = 97
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # head_dim 16, theta 1e4: wavelengths 6.3, 20, 63, 199, ... fall in all three
    # llama3 bands (kept < 16, smoothed in [16, 64], divided by 8 > 64).
    "original_max_position_embeddings": 64,
}


def _hf_model(family: str, tie: bool, seed: int = 0):
    """A tiny random transformers causal LM with every weight perturbed."""
    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        # Std 0.15 rather than HF's 0.02: with tiny weights attention is nearly uniform
        # and a wrong scale or rotation would hide under the 1e-4 tolerance.
        initializer_range=0.15,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if family == "llama":
        config = transformers.LlamaConfig(
            **common,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_theta": 10000.0, **LLAMA3_ROPE},
        )
        cls = transformers.LlamaForCausalLM
    elif family == "qwen2":
        config = transformers.Qwen2Config(**common, rms_norm_eps=1e-6)
        cls = transformers.Qwen2ForCausalLM
    else:
        # head_dim 24 != hidden / heads = 16: the Qwen3 layout allows it.
        config = transformers.Qwen3Config(**common, head_dim=24, rms_norm_eps=1e-6)
        cls = transformers.Qwen3ForCausalLM
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        # Fresh biases are zero and norm gains one; perturb them so they matter.
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _batch():
    """Left-padded rows of 10, 7 and 3 tokens; HF positions clip(cumsum(mask) - 1, 0)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, VOCAB, (3, 10))
    mask = np.ones((3, 10), np.int64)
    mask[1, :3] = 0
    mask[2, :7] = 0
    tokens = np.where(mask > 0, tokens, 0)
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    return tokens, mask, positions


def _hf_logits(model, tokens, mask, positions):
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(tokens),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(positions),
        )
    return out.logits.float().numpy()


@functools.partial(jax.jit, static_argnames="config")
def _logits(params, tokens, mask, *, config):
    return build(config).apply({"params": params}, tokens, attention_mask=mask)


def _our_logits(config, params, tokens, mask):
    return np.asarray(_logits(params, jnp.asarray(tokens), jnp.asarray(mask), config=config))


CASES = [(f, t) for f in ("llama", "qwen2", "qwen3") for t in (True, False)]


@pytest.fixture(
    scope="module", params=CASES, ids=lambda c: f"{c[0]}-{'tied' if c[1] else 'untied'}"
)
def checkpoint(request, tmp_path_factory):
    family, tie = request.param
    model = _hf_model(family, tie)
    path = str(tmp_path_factory.mktemp(f"{family}_{tie}"))
    model.save_pretrained(path)
    tokens, mask, positions = _batch()
    return family, tie, path, _hf_logits(model, tokens, mask, positions)


def test_load_hf_matches_transformers(checkpoint):
    family, tie, path, reference = checkpoint
    config, params = load_hf(path)
    assert config.family == family and config.tie_word_embeddings == tie
    assert config.qkv_bias == (family == "qwen2") and config.qk_norm == (family == "qwen3")
    assert (config.rope_scaling_dict is not None) == (family == "llama")
    assert ("lm_head" in params) == (not tie)
    tokens, mask, _ = _batch()
    ours = _our_logits(config, params, tokens, mask)
    real = mask > 0
    assert np.abs(ours[real] - reference[real]).max() <= 1e-4


def test_save_hf_loads_in_transformers(checkpoint, tmp_path):
    _, tie, path, reference = checkpoint
    config, params = load_hf(path)
    out = str(tmp_path / "export")
    save_hf(out, config, params)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.config.tie_word_embeddings == tie
    tokens, mask, positions = _batch()
    logits = _hf_logits(model, tokens, mask, positions)
    real = mask > 0
    assert np.abs(logits[real] - reference[real]).max() <= 1e-4
    # And back: the exported directory reads to the same parameters.
    again_config, again = load_hf(out)
    assert again_config == config
    jax.tree.map(np.testing.assert_array_equal, again, params)


def test_llama3_rope_scaling_changes_the_model(tmp_path):
    # Guards the parity test above: loading without the scaling must not match.
    model = _hf_model("llama", False)
    path = str(tmp_path / "llama")
    model.save_pretrained(path)
    tokens, mask, positions = _batch()
    reference = _hf_logits(model, tokens, mask, positions)
    config, params = load_hf(path)
    unscaled = _our_logits(config.replace(rope_scaling=None), params, tokens, mask)
    assert np.abs(unscaled[mask > 0] - reference[mask > 0]).max() > 1e-3


def test_legacy_rope_fields_read_like_rope_parameters(tmp_path):
    # transformers < 5 wrote rope_theta and rope_scaling at the top level.
    path = str(tmp_path / "llama")
    _hf_model("llama", True).save_pretrained(path)
    config, _ = load_hf(path)
    hf = json.loads(open(os.path.join(path, "config.json")).read())
    legacy = {k: v for k, v in hf.items() if k != "rope_parameters"}
    legacy.update(rope_theta=10000.0, rope_scaling=dict(LLAMA3_ROPE))
    assert config_from_hf(legacy) == config
    assert config.rope_scaling_dict == LLAMA3_ROPE


# Fields of the config.json files published on the Hugging Face hub (copied by
# hand, not computed): a round trip alone cannot see a key that both directions
# misspell, or a preset with a wrong width.
PUBLISHED_CONFIGS = {
    "qwen2.5-0.5b": dict(
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
    ),
    "qwen3-0.6b": dict(
        architectures=["Qwen3ForCausalLM"],
        model_type="qwen3",
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        max_position_embeddings=40960,
    ),
    "llama-3.2-1b": dict(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        tie_word_embeddings=True,
        max_position_embeddings=131072,
    ),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_hf_json(name):
    config = PRESETS[name]
    assert config_from_hf(json.loads(json.dumps(config_to_hf(config)))) == config


@pytest.mark.parametrize("name", sorted(PUBLISHED_CONFIGS))
def test_preset_writes_and_reads_the_published_hf_config(name):
    published = PUBLISHED_CONFIGS[name]
    written = config_to_hf(PRESETS[name])
    assert {k: written[k] for k in published} == published
    # And the published fields alone read back to the preset (token ids aside:
    # base and instruct checkpoints differ there).
    preset = PRESETS[name]
    read = config_from_hf(dict(published))
    ids = ("bos_token_id", "eos_token_id", "pad_token_id")
    assert read.replace(**{k: getattr(preset, k) for k in ids}) == preset


def test_sharded_checkpoints_round_trip(tmp_path):
    model = _hf_model("qwen2", False, seed=1)
    single, sharded = str(tmp_path / "single"), str(tmp_path / "sharded")
    model.save_pretrained(single)
    model.save_pretrained(sharded, max_shard_size="30KB")
    assert os.path.exists(os.path.join(sharded, "model.safetensors.index.json"))
    config, params = load_hf(single)
    sharded_config, sharded_params = load_hf(sharded)
    assert sharded_config == config
    jax.tree.map(np.testing.assert_array_equal, sharded_params, params)

    ours = str(tmp_path / "ours")
    save_hf(ours, config, params, max_shard_bytes=30_000)
    index = json.loads(open(os.path.join(ours, "model.safetensors.index.json")).read())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not os.path.exists(os.path.join(ours, "model.safetensors"))
    for shard in shards:
        tensors = load_file(os.path.join(ours, shard))
        # A shard is closed before it passes the limit unless one tensor alone does.
        assert sum(w.nbytes for w in tensors.values()) <= 30_000 or len(tensors) == 1
    _, reread = load_hf(ours)
    jax.tree.map(np.testing.assert_array_equal, reread, params)
    tokens, mask, positions = _batch()
    exported = transformers.AutoModelForCausalLM.from_pretrained(ours).eval()
    np.testing.assert_allclose(
        _hf_logits(exported, tokens, mask, positions),
        _hf_logits(model, tokens, mask, positions),
        atol=1e-6,
    )


def test_extra_heads_round_trip(tmp_path):
    source = str(tmp_path / "source")
    _hf_model("qwen2", True, seed=2).save_pretrained(source)
    config, params = load_hf(source)
    rng = np.random.default_rng(0)
    params["value_head"] = {
        "kernel": rng.standard_normal(64).astype(np.float32),
        "bias": np.float32(0.25),
    }
    params["prm_head"] = {
        "kernel": rng.standard_normal(64).astype(np.float32),
        "bias": np.float32(-1.5),
    }
    out = str(tmp_path / "rm")
    save_hf(out, config, params)
    assert os.path.exists(os.path.join(out, HEADS_FILE))
    _, loaded = load_hf(out, heads=("lm", "value", "prm"))
    for head in ("value_head", "prm_head"):
        np.testing.assert_array_equal(loaded[head]["kernel"], params[head]["kernel"])
        assert loaded[head]["bias"].shape == () and loaded[head]["bias"] == params[head]["bias"]
    # Heads are only loaded when asked for.
    assert "value_head" not in load_hf(out)[1]
    with pytest.raises(CheckpointError, match=r"no 'reward' head.*has heads: prm, value"):
        load_hf(out, heads=("lm", "reward"))
    with pytest.raises(CheckpointError, match=r"unknown heads \['critic'\]"):
        load_hf(out, heads=("lm", "critic"))
    with pytest.raises(CheckpointError, match=HEADS_FILE):
        load_hf(source, heads=("lm", "value"))
    # transformers ignores the heads file.
    transformers.AutoModelForCausalLM.from_pretrained(out)


def test_load_hf_bfloat16(checkpoint):
    _, _, path, _ = checkpoint
    _, params32 = load_hf(path)
    config, params = load_hf(path, dtype="bfloat16")
    assert config.dtype == config.param_dtype == "bfloat16"
    assert all(leaf.dtype == ml_dtypes.bfloat16 for leaf in jax.tree.leaves(params))
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(a, b.astype(ml_dtypes.bfloat16)),
        params,
        params32,
    )
    with pytest.raises(CheckpointError, match="'float64'"):
        load_hf(path, dtype="float64")


def test_bfloat16_checkpoint_round_trips_bit_exactly(tmp_path):
    # Released Qwen and Llama weights are stored in bfloat16.
    model = _hf_model("qwen2", True, seed=5).to(torch.bfloat16)
    source, out = str(tmp_path / "source"), str(tmp_path / "out")
    model.save_pretrained(source)
    _, params32 = load_hf(source)
    config, params = load_hf(source, dtype="bfloat16")
    np.testing.assert_array_equal(
        params32["embed"]["embedding"],
        model.model.embed_tokens.weight.float().detach().numpy(),
    )
    save_hf(out, config, params)
    assert json.loads(open(os.path.join(out, "config.json")).read())["torch_dtype"] == "bfloat16"
    exported = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert exported.dtype == torch.bfloat16
    for name, weight in model.state_dict().items():
        assert torch.equal(exported.state_dict()[name], weight), name


# --- bad checkpoints -------------------------------------------------------------


@pytest.fixture
def good_dir(tmp_path):
    path = str(tmp_path / "good")
    _hf_model("qwen2", False, seed=3).save_pretrained(path)
    return path


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def _edit_tensors(path, edit):
    fname = os.path.join(path, "model.safetensors")
    tensors = load_file(fname)
    edit(tensors)
    save_file(tensors, fname, metadata={"format": "pt"})


def _edit_config(path, edit):
    fname = os.path.join(path, "config.json")
    with open(fname) as f:
        hf = json.load(f)
    edit(hf)
    with open(fname, "w") as f:
        json.dump(hf, f)


def test_missing_tensor_is_named(good_dir):
    _edit_tensors(good_dir, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError) as excinfo:
        load_hf(good_dir)
    message = _one_line(excinfo)
    # up_proj is [intermediate, hidden] = [96, 64] in HF layout.
    assert "'model.layers.1.mlp.up_proj.weight'" in message and "(96, 64)" in message


def test_wrong_shape_names_tensor_and_both_shapes(good_dir):
    def edit(t):
        t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((40, 64), np.float32)

    _edit_tensors(good_dir, edit)
    with pytest.raises(CheckpointError) as excinfo:
        load_hf(good_dir)
    message = _one_line(excinfo)
    # k_proj is [kv_heads · head_dim, hidden] = [2 · 16, 64].
    assert "'model.layers.0.self_attn.k_proj.weight'" in message
    assert "(40, 64)" in message and "(32, 64)" in message


def test_missing_lm_head_of_untied_model_is_named(good_dir):
    _edit_tensors(good_dir, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(CheckpointError, match=r"'lm_head.weight' \(expected shape \(97, 64\)\)"):
        load_hf(good_dir)


def test_unknown_architecture_is_named(good_dir):
    _edit_config(good_dir, lambda hf: hf.update(architectures=["GPT2LMHeadModel"]))
    with pytest.raises(CheckpointError) as excinfo:
        load_hf(good_dir)
    message = _one_line(excinfo)
    assert "'GPT2LMHeadModel'" in message and "Qwen2ForCausalLM" in message


@pytest.mark.parametrize("field", ["hidden_size", "num_attention_heads", "vocab_size"])
def test_missing_config_field_is_named(good_dir, field):
    _edit_config(good_dir, lambda hf: hf.pop(field))
    with pytest.raises(CheckpointError) as excinfo:
        load_hf(good_dir)
    message = _one_line(excinfo)
    assert f"'{field}'" in message and "config.json" in message


def test_inconsistent_config_is_named(good_dir):
    _edit_config(good_dir, lambda hf: hf.update(num_key_value_heads=3))
    with pytest.raises(CheckpointError) as excinfo:
        load_hf(good_dir)
    assert "num_kv_heads=3" in _one_line(excinfo)


def test_unsupported_rope_scaling_is_named(good_dir):
    _edit_config(
        good_dir,
        lambda hf: hf.update(rope_parameters={"rope_type": "yarn", "factor": 4.0}),
    )
    with pytest.raises(CheckpointError, match="'yarn'"):
        load_hf(good_dir)


def test_invalid_json_names_the_line(good_dir):
    with open(os.path.join(good_dir, "config.json"), "w") as f:
        f.write('{\n  "vocab_size": 97,\n  oops\n}')
    with pytest.raises(CheckpointError, match=r"config.json: invalid JSON at line 3"):
        load_hf(good_dir)


def test_missing_shard_and_missing_directory(tmp_path):
    path = str(tmp_path / "sharded")
    _hf_model("qwen2", True, seed=4).save_pretrained(path, max_shard_size="30KB")
    index = json.loads(open(os.path.join(path, "model.safetensors.index.json")).read())
    victim = sorted(set(index["weight_map"].values()))[-1]
    os.remove(os.path.join(path, victim))
    with pytest.raises(CheckpointError, match=f"shard {victim} listed for"):
        load_hf(path)
    with pytest.raises(CheckpointError, match="not a directory"):
        load_hf(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps(config_to_hf(PRESETS["tiny"])))
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_hf(str(empty))


def test_truncated_safetensors_names_the_file(good_dir):
    weights = os.path.join(good_dir, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_hf(good_dir)
    with open(weights, "wb") as f:
        f.write(b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":')  # a header cut short
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_hf(good_dir)


@pytest.mark.parametrize(
    "dtype, name",
    [(jnp.bfloat16, "bfloat16"), (np.float32, "float32"), (np.dtype("float16"), "float16")],
)
def test_dtypes_as_objects_or_names(good_dir, dtype, name):
    config, params = load_hf(good_dir, dtype=dtype)
    by_name_config, by_name = load_hf(good_dir, dtype=name)
    assert config == by_name_config and config.dtype == name and config.param_dtype == name
    leaf = params["embed"]["embedding"]
    assert leaf.dtype == np.dtype(jnp.dtype(dtype)) == by_name["embed"]["embedding"].dtype
    assert PRESETS["tiny"].replace(dtype=dtype).jnp_dtype == jnp.dtype(dtype)
    with pytest.raises(CheckpointError, match=r"dtype='int32'; known"):
        load_hf(good_dir, dtype=np.int32)


# --- atomic export ---------------------------------------------------------------


def _leftovers(parent):
    return [name for name in os.listdir(parent) if name.startswith(".save_hf_")]


def test_save_hf_with_missing_param_leaves_nothing(good_dir, tmp_path):
    config, params = load_hf(good_dir)
    del params["layers"]["mlp"]["up_proj"]
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match=r"'layers/mlp/up_proj/kernel'"):
        save_hf(str(out), config, params)
    assert not out.exists() and not _leftovers(tmp_path)


def test_save_hf_with_wrong_shape_names_both_shapes(good_dir, tmp_path):
    config, params = load_hf(good_dir)
    params["final_norm"]["scale"] = np.ones(63, np.float32)
    with pytest.raises(
        CheckpointError, match=r"'model.norm.weight' has shape \(63,\), expected \(64,\)"
    ):
        save_hf(str(tmp_path / "out"), config, params)


def test_save_hf_failing_midway_leaves_nothing_and_keeps_the_old_checkpoint(good_dir, tmp_path):
    config, params = load_hf(good_dir)
    out = tmp_path / "out"
    # The tokenizer copy runs after every weight file is written.
    with pytest.raises(FileNotFoundError):
        save_hf(str(out), config, params, tokenizer_dir=str(tmp_path / "no_tokenizer"))
    assert not out.exists() and not _leftovers(tmp_path)

    save_hf(str(out), config, params)
    before = sorted(os.listdir(out))
    changed = jax.tree.map(lambda x: x + 1, params)
    with pytest.raises(FileNotFoundError):
        save_hf(str(out), config, changed, tokenizer_dir=str(tmp_path / "no_tokenizer"))
    assert sorted(os.listdir(out)) == before and not _leftovers(tmp_path)
    jax.tree.map(np.testing.assert_array_equal, load_hf(str(out))[1], params)


def test_save_hf_copies_tokenizer_files_and_replaces_old_directory(good_dir, tmp_path):
    config, params = load_hf(good_dir)
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    (tok / "unrelated.txt").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.safetensors").write_text("old")
    save_hf(str(out), config, params, tokenizer_dir=str(tok))
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.json"]
    shutil.rmtree(tok)
