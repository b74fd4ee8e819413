"""ModelConfig: presets, real-model shapes, validation of bad configs."""

import jax
import jax.numpy as jnp
import pytest

from rewardjax.models import PRESETS, ModelConfig, build, preset

# Published parameter counts (safetensors totals on the model cards).
PUBLISHED_PARAMS = {
    "qwen2.5-0.5b": 494_032_768,  # "0.49B"
    "qwen2.5-1.5b": 1_543_714_304,  # "1.54B"
    "qwen3-0.6b": 596_049_920,  # "0.6B", tied embeddings
    "llama-3.2-1b": 1_235_814_400,  # "1.24B", tied embeddings
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_constructs_and_builds(name):
    config = preset(name)
    assert config is PRESETS[name]
    assert isinstance(config, ModelConfig)
    hash(config)  # a static jit argument must be hashable
    # Shapes only: tracing init builds every submodule without allocating weights.
    shapes = jax.eval_shape(
        lambda: build(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    )
    count = sum(leaf.size for leaf in jax.tree.leaves(shapes))
    assert count == config.num_params()


def test_tiny_preset_is_small():
    assert preset("tiny").num_params() < 200_000


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_real_preset_parameter_counts(name):
    published = PUBLISHED_PARAMS[name]
    assert abs(preset(name).num_params() - published) / published < 1e-3


def test_real_preset_shapes():
    q05 = preset("qwen2.5-0.5b")
    assert (q05.hidden_size, q05.num_layers, q05.num_heads, q05.num_kv_heads) == (896, 24, 14, 2)
    assert q05.resolved_head_dim == 64 and q05.qkv_bias and not q05.qk_norm
    q15 = preset("qwen2.5-1.5b")
    assert (q15.hidden_size, q15.intermediate_size, q15.num_layers) == (1536, 8960, 28)
    q3 = preset("qwen3-0.6b")
    # Qwen3-0.6B: 16 heads of 128 on a 1024-wide stream (head_dim != D / H).
    assert q3.resolved_head_dim == 128 and q3.qk_norm and not q3.qkv_bias
    assert q3.tie_word_embeddings
    llama = preset("llama-3.2-1b")
    assert llama.rope_scaling_dict["rope_type"] == "llama3"
    assert llama.rope_scaling_dict["factor"] == 32.0
    assert llama.vocab_size == 128256 and llama.tie_word_embeddings


def test_preset_overrides_and_replace():
    config = preset("tiny", dtype="bfloat16", remat="full")
    assert config.dtype == "bfloat16" and config.remat == "full"
    assert config.jnp_dtype == jnp.bfloat16
    assert PRESETS["tiny"].dtype == "float32"  # the table itself is untouched
    assert config.replace(num_layers=3).num_layers == 3


def test_rope_scaling_dict_is_stored_hashable():
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    a = ModelConfig(family="llama", rope_scaling=scaling)
    b = ModelConfig(family="llama", rope_scaling=dict(reversed(list(scaling.items()))))
    assert a == b and hash(a) == hash(b)
    assert a.rope_scaling_dict == scaling


def test_num_params_counts_untied_head_and_biases():
    base = ModelConfig(
        vocab_size=10,
        hidden_size=4,
        intermediate_size=6,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        tie_word_embeddings=True,
    )
    # head_dim 2. attention q 4·2·2=16, k 4·1·2=8, v 8, o 16 → 48; mlp 3·4·6=72;
    # two norms 8 → block 128. embedding 10·4=40, final norm 4 → 172.
    assert base.num_params() == 172
    # Untied adds a 4×10 head; q/k/v bias adds 4 + 2 + 2.
    assert base.replace(tie_word_embeddings=False).num_params() == 172 + 40
    assert base.replace(qkv_bias=True).num_params() == 172 + 8
    # q/k norm adds two scales of head_dim.
    assert base.replace(qk_norm=True).num_params() == 172 + 4


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(hidden_size=64, num_heads=5), r"num_heads=5 does not divide hidden_size=64"),
        (dict(num_heads=4, num_kv_heads=3), r"num_kv_heads=3 does not divide num_heads=4"),
        (dict(family="gpt2"), r"family='gpt2'"),
        (dict(dtype="float64"), r"dtype='float64'"),
        (dict(param_dtype="int8"), r"param_dtype='int8'"),
        (dict(remat="everything"), r"remat='everything'"),
        (dict(num_layers=0), r"num_layers=0"),
        (dict(num_kv_heads=0), r"num_kv_heads=0"),
        (dict(hidden_size=24, num_heads=8, num_kv_heads=2), r"head_dim=3 must be even"),
        (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), r"rope_type='yarn'"),
    ],
)
def test_bad_config_names_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**overrides)


def test_explicit_head_dim_allows_non_dividing_heads():
    config = ModelConfig(hidden_size=60, num_heads=4, num_kv_heads=2, head_dim=16)
    assert config.resolved_head_dim == 16


def test_unknown_preset_names_it():
    with pytest.raises(KeyError, match=r"'qwen9-7b'.*known: .*tiny"):
        preset("qwen9-7b")
