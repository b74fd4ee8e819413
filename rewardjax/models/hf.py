"""Hugging Face checkpoint import and export (local safetensors directories only).

  config, params = load_hf("/models/qwen2.5-0.5b", dtype="bfloat16")
  save_hf("/tmp/out", config, params)   # loads with transformers.AutoModelForCausalLM

Supported architectures: LlamaForCausalLM (Llama 3.x), Qwen2ForCausalLM
(Qwen2/2.5) and Qwen3ForCausalLM. Extra rewardjax heads (value, reward, prm)
travel in `rewardjax_heads.safetensors` beside the HF files, so a reward model
round-trips too; transformers ignores that file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rewardjax.models.config import ModelConfig, dtype_name

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
_FAMILY_TO_ARCH = {family: arch for arch, family in ARCHITECTURES.items()}
_NP_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
HEADS_FILE = "rewardjax_heads.safetensors"
_EXTRA_HEADS = ("value", "reward", "prm")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read as the expected model."""


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def config_from_hf(hf: dict, *, source: str = "config.json", dtype: str = "float32") -> ModelConfig:
    """ModelConfig from a parsed HF config.json dict."""
    archs = hf.get("architectures") or []
    arch = archs[0] if archs else None
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{source}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    family = ARCHITECTURES[arch]
    for field in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    ):
        if field not in hf:
            raise CheckpointError(f"{source}: missing field {field!r}")
    if hf.get("mlp_bias"):
        raise CheckpointError(f"{source}: mlp_bias=true is not supported")
    if family == "llama" and hf.get("attention_bias"):
        raise CheckpointError(f"{source}: attention_bias=true (bias on o_proj) is not supported")
    # transformers >= 5 keeps RoPE settings in `rope_parameters`; older files use
    # `rope_theta` and `rope_scaling`.
    rope = hf.get("rope_parameters") or {}
    rope_theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = hf.get("rope_scaling") or None
    rope_type = rope.get("rope_type", "default")
    if rope_type not in ("default", None):
        scaling = dict(rope)
    if scaling is not None:
        scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind == "default":
            scaling = None
        elif kind != "llama3":
            raise CheckpointError(
                f"{source}: rope scaling type {kind!r} is not supported (llama3 only)"
            )
    eos = hf.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    tie = hf.get("tie_word_embeddings", family != "llama")
    try:
        return ModelConfig(
            family=family,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim"),
            qkv_bias=family == "qwen2" or (family == "qwen3" and bool(hf.get("attention_bias"))),
            qk_norm=family == "qwen3",
            tie_word_embeddings=bool(tie),
            rope_theta=float(rope_theta),
            rope_scaling=scaling,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            param_dtype=dtype,
            dtype=dtype,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=eos,
            pad_token_id=hf.get("pad_token_id"),
        )
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None


def config_to_hf(config: ModelConfig) -> dict:
    """HF config.json dict for `config` (loads with transformers' AutoConfig)."""
    arch = _FAMILY_TO_ARCH[config.family]
    hf = {
        "architectures": [arch],
        "model_type": config.family,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.resolved_head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": config.rope_scaling_dict,
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": config.qkv_bias if config.family == "qwen3" else False,
        "attention_dropout": 0.0,
        "initializer_range": config.initializer_range,
        "use_cache": True,
        "torch_dtype": config.param_dtype,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
    }
    if config.family == "llama":
        hf["mlp_bias"] = False
    if config.family in ("qwen2", "qwen3"):
        hf["use_sliding_window"] = False
        hf["max_window_layers"] = config.num_layers
        hf["sliding_window"] = None
    return hf


def _layer_specs(config: ModelConfig) -> list[tuple[str, tuple[str, ...], tuple[int, ...], str]]:
    """(HF suffix, rewardjax path under `layers`, HF shape, conversion) per layer tensor."""
    d, h, k, hd, i = (
        config.hidden_size,
        config.num_heads,
        config.num_kv_heads,
        config.resolved_head_dim,
        config.intermediate_size,
    )
    specs = [
        ("self_attn.q_proj.weight", ("attn", "q_proj", "kernel"), (h * hd, d), "in_heads"),
        ("self_attn.k_proj.weight", ("attn", "k_proj", "kernel"), (k * hd, d), "in_heads"),
        ("self_attn.v_proj.weight", ("attn", "v_proj", "kernel"), (k * hd, d), "in_heads"),
        ("self_attn.o_proj.weight", ("attn", "o_proj", "kernel"), (d, h * hd), "out_heads"),
        ("mlp.gate_proj.weight", ("mlp", "gate_proj", "kernel"), (i, d), "transpose"),
        ("mlp.up_proj.weight", ("mlp", "up_proj", "kernel"), (i, d), "transpose"),
        ("mlp.down_proj.weight", ("mlp", "down_proj", "kernel"), (d, i), "transpose"),
        ("input_layernorm.weight", ("input_norm", "scale"), (d,), "copy"),
        ("post_attention_layernorm.weight", ("post_attn_norm", "scale"), (d,), "copy"),
    ]
    if config.qkv_bias:
        specs += [
            ("self_attn.q_proj.bias", ("attn", "q_proj", "bias"), (h * hd,), "heads_bias"),
            ("self_attn.k_proj.bias", ("attn", "k_proj", "bias"), (k * hd,), "heads_bias"),
            ("self_attn.v_proj.bias", ("attn", "v_proj", "bias"), (k * hd,), "heads_bias"),
        ]
    if config.qk_norm:
        specs += [
            ("self_attn.q_norm.weight", ("attn", "q_norm", "scale"), (hd,), "copy"),
            ("self_attn.k_norm.weight", ("attn", "k_norm", "scale"), (hd,), "copy"),
        ]
    return specs


def _to_ours(w: np.ndarray, kind: str, config: ModelConfig) -> np.ndarray:
    hd = config.resolved_head_dim
    if kind == "in_heads":  # [n·Dh, D] → [D, n, Dh]
        return w.T.reshape(w.shape[1], w.shape[0] // hd, hd)
    if kind == "out_heads":  # [D, H·Dh] → [H, Dh, D]
        return w.T.reshape(w.shape[1] // hd, hd, w.shape[0])
    if kind == "heads_bias":  # [n·Dh] → [n, Dh]
        return w.reshape(-1, hd)
    if kind == "transpose":
        return w.T
    return w


def _to_hf(w: np.ndarray, kind: str) -> np.ndarray:
    if kind == "in_heads":  # [D, n, Dh] → [n·Dh, D]
        return w.reshape(w.shape[0], -1).T
    if kind == "out_heads":  # [H, Dh, D] → [D, H·Dh]
        return w.reshape(-1, w.shape[-1]).T
    if kind == "heads_bias":
        return w.reshape(-1)
    if kind == "transpose":
        return w.T
    return w


def _safe_open(fname: str):
    """`safe_open` whose failure (a truncated or foreign file) names the file."""
    try:
        return safe_open(fname, "np")
    except Exception as e:
        raise CheckpointError(f"{fname}: not a readable safetensors file ({e})") from None


class _TensorReader:
    """Reads named tensors from one or several safetensors files of a directory."""

    def __init__(self, path: str):
        index = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(index):
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index}: missing 'weight_map'")
            self.files = {name: os.path.join(path, f) for name, f in weight_map.items()}
        elif os.path.exists(single):
            with _safe_open(single) as f:
                self.files = {name: single for name in f.keys()}
        else:
            found = [f for f in os.listdir(path) if f.endswith(".safetensors")]
            if not found:
                raise CheckpointError(
                    f"{path}: no model.safetensors or model.safetensors.index.json"
                )
            self.files = {}
            for fname in sorted(found):
                with _safe_open(os.path.join(path, fname)) as f:
                    self.files.update({name: os.path.join(path, fname) for name in f.keys()})
        self.path = path
        self._handles: dict[str, object] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.files:
            raise CheckpointError(f"{self.path}: missing tensor {name!r} (expected shape {shape})")
        fname = self.files[name]
        if fname not in self._handles:
            if not os.path.exists(fname):
                raise CheckpointError(
                    f"{self.path}: shard {os.path.basename(fname)} listed for {name!r} is missing"
                )
            self._handles[fname] = _safe_open(fname)
        try:
            w = self._handles[fname].get_tensor(name)
        except Exception as e:  # safetensors' own errors do not say which file
            raise CheckpointError(f"{fname}: cannot read tensor {name!r} ({e})") from None
        if tuple(w.shape) != tuple(shape):
            raise CheckpointError(
                f"{self.path}: tensor {name!r} has shape {tuple(w.shape)}, expected {tuple(shape)}"
            )
        return w


def load_hf(
    path: str, dtype: str = "float32", *, heads: Sequence[str] = ("lm",)
) -> tuple[ModelConfig, dict]:
    """Reads a local HF checkpoint directory into (ModelConfig, params).

    Args:
      path: directory with config.json and model.safetensors (or a sharded
        model.safetensors.index.json).
      dtype: parameter and compute dtype of the returned model.
      heads: heads the params should carry. "lm" comes from the HF files; value,
        reward and prm heads from `rewardjax_heads.safetensors` and must exist.

    Returns:
      (config, params) with params as numpy arrays in `dtype`, laid out for
      `rewardjax.models.build(config, heads)`.
    """
    if not os.path.isdir(path):
        raise CheckpointError(
            f"{path}: not a directory (models are local paths; nothing is downloaded)"
        )
    dtype = dtype_name(dtype)
    if dtype not in _NP_DTYPES:
        raise CheckpointError(f"dtype={dtype!r}; known: {', '.join(_NP_DTYPES)}")
    config_path = os.path.join(path, "config.json")
    config = config_from_hf(_read_json(config_path), source=config_path, dtype=dtype)
    np_dtype = _NP_DTYPES[dtype]
    reader = _TensorReader(path)

    def read(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return reader.get(name, shape).astype(np.float32)

    d, v = config.hidden_size, config.vocab_size
    params: dict = {
        "embed": {"embedding": read("model.embed_tokens.weight", (v, d))},
        "final_norm": {"scale": read("model.norm.weight", (d,))},
        "layers": {},
    }
    for hf_suffix, ours, shape, kind in _layer_specs(config):
        stacked = np.stack(
            [
                _to_ours(read(f"model.layers.{i}.{hf_suffix}", shape), kind, config)
                for i in range(config.num_layers)
            ]
        )
        node = params["layers"]
        for key in ours[:-1]:
            node = node.setdefault(key, {})
        node[ours[-1]] = stacked
    if "lm" in heads and not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": read("lm_head.weight", (v, d)).T}
    extra = [h for h in heads if h != "lm"]
    if extra:
        params.update(_load_heads(path, config, extra))
    # astype(order="C") and not ascontiguousarray, which turns 0-d head biases into [1].
    params = _map(lambda x: x.astype(np_dtype, order="C"), params)
    return config, params


def _load_heads(path: str, config: ModelConfig, heads: Sequence[str]) -> dict:
    unknown = [h for h in heads if h not in _EXTRA_HEADS]
    if unknown:
        raise CheckpointError(f"unknown heads {unknown}; known: lm, {', '.join(_EXTRA_HEADS)}")
    fname = os.path.join(path, HEADS_FILE)
    if not os.path.exists(fname):
        raise CheckpointError(f"{path}: heads {list(heads)} requested but {HEADS_FILE} is missing")
    out = {}
    with _safe_open(fname) as f:
        present = sorted({k.split(".")[0].removesuffix("_head") for k in f.keys()})
        for head in heads:
            if f"{head}_head.kernel" not in f.keys():
                raise CheckpointError(
                    f"{fname}: no {head!r} head (checkpoint has heads: {', '.join(present) or 'none'})"
                )
            kernel = f.get_tensor(f"{head}_head.kernel").astype(np.float32)
            if kernel.shape != (config.hidden_size,):
                raise CheckpointError(
                    f"{fname}: tensor '{head}_head.kernel' has shape {kernel.shape}, "
                    f"expected {(config.hidden_size,)}"
                )
            out[f"{head}_head"] = {
                "kernel": kernel,
                "bias": f.get_tensor(f"{head}_head.bias").astype(np.float32).reshape(()),
            }
    return out


def _map(fn, tree):
    if isinstance(tree, dict):
        return {k: _map(fn, v) for k, v in tree.items()}
    return fn(tree)


def save_hf(
    path: str,
    config: ModelConfig,
    params: dict,
    *,
    max_shard_bytes: int = 4 << 30,
    tokenizer_dir: str | None = None,
) -> None:
    """Writes `params` as an HF checkpoint directory that transformers loads.

    The directory is written to a temporary sibling and renamed into place, so
    a crash never leaves a half-written checkpoint at `path`.

    Args:
      path: output directory (replaced if it exists).
      config: the model's ModelConfig.
      params: parameters as laid out by `init_params` / `load_hf` (jax or numpy).
      max_shard_bytes: shard the weights (with an index file) above this size.
      tokenizer_dir: optional directory whose tokenizer files are copied along.
    """
    np_dtype = _NP_DTYPES[config.param_dtype]

    def host(*keys: str) -> np.ndarray:
        node = params
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise CheckpointError(
                    f"save_hf: params have no {'/'.join(keys)!r} "
                    f"(a {config.family} config with tie_word_embeddings="
                    f"{config.tie_word_embeddings} needs it)"
                )
            node = node[key]
        return np.asarray(node).astype(np_dtype)

    def add(name: str, w: np.ndarray, shape: tuple[int, ...]) -> None:
        if w.shape != shape:
            raise CheckpointError(
                f"save_hf: tensor {name!r} has shape {w.shape}, expected {shape} from the config"
            )
        tensors[name] = np.ascontiguousarray(w)

    d, v = config.hidden_size, config.vocab_size
    tensors: dict[str, np.ndarray] = {}
    add("model.embed_tokens.weight", host("embed", "embedding"), (v, d))
    add("model.norm.weight", host("final_norm", "scale"), (d,))
    for hf_suffix, ours, shape, kind in _layer_specs(config):
        stacked = host("layers", *ours)
        if stacked.shape[:1] != (config.num_layers,):
            raise CheckpointError(
                f"save_hf: params 'layers/{'/'.join(ours)}' has shape {stacked.shape}, "
                f"expected {config.num_layers} stacked layers"
            )
        for i in range(config.num_layers):
            add(f"model.layers.{i}.{hf_suffix}", _to_hf(stacked[i], kind), shape)
    if not config.tie_word_embeddings:
        add("lm_head.weight", host("lm_head", "kernel").T, (v, d))
    head_tensors = {}
    for head in _EXTRA_HEADS:
        if f"{head}_head" in params:
            head_tensors[f"{head}_head.kernel"] = host(f"{head}_head", "kernel")
            head_tensors[f"{head}_head.bias"] = host(f"{head}_head", "bias").reshape(1)

    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".save_hf_", dir=parent)
    try:
        shards, current, size = [], {}, 0
        for name, w in tensors.items():
            if current and size + w.nbytes > max_shard_bytes:
                shards.append(current)
                current, size = {}, 0
            current[name] = w
            size += w.nbytes
        shards.append(current)
        metadata = {"format": "pt"}
        if len(shards) == 1:
            save_file(shards[0], os.path.join(tmp, "model.safetensors"), metadata=metadata)
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, os.path.join(tmp, fname), metadata=metadata)
                weight_map.update(dict.fromkeys(shard, fname))
            total = sum(w.nbytes for w in tensors.values())
            with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
                json.dump(
                    {"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2
                )
        if head_tensors:
            save_file(head_tensors, os.path.join(tmp, HEADS_FILE), metadata=metadata)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config_to_hf(config), f, indent=2)
        if tokenizer_dir is not None:
            for fname in os.listdir(tokenizer_dir):
                # generation_config.json too: the tokenizer reads its stop ids there.
                if fname.startswith("tokenizer") or fname in (
                    "special_tokens_map.json",
                    "vocab.json",
                    "merges.txt",
                    "chat_template.jinja",
                    "chat_template.json",
                    "generation_config.json",
                ):
                    shutil.copy(os.path.join(tokenizer_dir, fname), tmp)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
