"""LoRA adapters on the decoder's projections, as parameters beside the frozen ones.

A targeted projection y = x·W gains y += (α/r)·(x·A)·B, with A [in, r] and
B [r, out] ("LoRA: Low-Rank Adaptation of Large Language Models", Hu et al.,
2021). The adapters are linen parameters of a sibling module named
`<projection>_lora` (`layers/attn/q_proj_lora/{a,b}`, stacked over the
`layers` axis like every layer parameter), so the model stays one pure,
shardable module: the base weights keep their paths and HF names, an adapter
shards like its projection's input (A) and output (B) axes, and the rank
axis is replicated. Native linen rather than qwix: qwix rewrites the module
tree by interception (and its LoRA targets dot_generals by regex), while here
the adapter is an explicit parameter of the one decoder, visible to the
logical-axis rules, to `init_params`, to checkpoints and to the HF / PEFT
converters without a second model definition.

Initialisation as PEFT's default: A ~ U(−1/√in, 1/√in) (kaiming-uniform with
a = √5), B = 0, so fresh adapters leave the model's outputs unchanged.

  config = config.replace(lora_rank=16, lora_alpha=32.0, lora_targets=("q_proj", "v_proj"))
  params = init_params(config, key)           # base + adapters
  mask = trainable_mask(params)               # True on adapter leaves only
  merged_config, merged = merge(config, params)   # W + (α/r)·A·B, adapters gone
  base = strip(params)                        # the frozen model (adapters off)
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LORA_SUFFIX",
    "TARGETS",
    "TRAINED_HEADS",
    "LoRA",
    "adapter_count",
    "base_config",
    "is_adapter_path",
    "load_peft",
    "merge",
    "projection_shapes",
    "save_peft",
    "strip",
    "trainable_mask",
    "with_adapters",
    "with_lora",
]

# Projection name → (input dims, output dims) as functions of the config:
# the attention's q/k/v ([D] → [heads, head_dim]), o ([heads, head_dim] → [D]),
# the MLP's gate/up ([D] → [I]) and down ([I] → [D]).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_SUFFIX = "_lora"


def projection_shapes(config, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input dims, output dims) of a targeted projection's kernel."""
    d, i = config.hidden_size, config.intermediate_size
    h, k, hd = config.num_heads, config.num_kv_heads, config.resolved_head_dim
    return {
        "q_proj": ((d,), (h, hd)),
        "k_proj": ((d,), (k, hd)),
        "v_proj": ((d,), (k, hd)),
        "o_proj": ((h, hd), (d,)),
        "gate_proj": ((d,), (i,)),
        "up_proj": ((d,), (i,)),
        "down_proj": ((i,), (d,)),
    }[name]


def check_config(config) -> None:
    """Refuses unknown targets and a rank above a target's width (called by ModelConfig)."""
    if config.lora_rank == 0:
        if config.lora_targets:
            raise ValueError("ModelConfig.lora_targets is set but lora_rank is 0")
        return
    rank = config.lora_rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"ModelConfig.lora_rank={rank!r} must be an integer >= 0")
    if not config.lora_targets:
        raise ValueError(f"ModelConfig.lora_rank={rank} needs lora_targets; known: {TARGETS}")
    unknown = [t for t in config.lora_targets if t not in TARGETS]
    if unknown:
        raise ValueError(
            f"ModelConfig.lora_targets {unknown} match no projection; the projections are "
            f"{', '.join(TARGETS)}"
        )
    for name in config.lora_targets:
        shape_in, shape_out = projection_shapes(config, name)
        width = min(math.prod(shape_in), math.prod(shape_out))
        if rank > width:
            raise ValueError(
                f"ModelConfig.lora_rank={rank} exceeds {name}'s width {width} "
                f"({math.prod(shape_in)} → {math.prod(shape_out)})"
            )
    if not config.lora_alpha > 0:
        raise ValueError(f"ModelConfig.lora_alpha={config.lora_alpha} must be > 0")


def with_lora(config, block) -> Any:
    """`config` with the adapters of a config's `lora` block (rank 0: unchanged).

    Block keys: rank, alpha, targets (projection names; empty: all of TARGETS),
    dtype (the adapters' storage dtype; default float32).
    """
    if block is None or not block.get("rank"):
        return config
    targets = tuple(block.get("targets") or TARGETS)
    return config.replace(
        lora_rank=int(block["rank"]),
        lora_alpha=float(block["alpha"]),
        lora_targets=targets,
        lora_dtype=block.get("dtype") or "float32",
    )


def _partitioned(init, names):
    return nn.with_logical_partitioning(init, names, rules=())


class LoRA(nn.Module):
    """The low-rank update (α/r)·(x·A)·B of one projection.

    Attributes:
      config: the model config (rank, alpha, dtypes).
      shape_in, axes_in: the contracted trailing input dims and their logical names.
      shape_out, axes_out: the output dims and their logical names.
    """

    config: Any
    shape_in: tuple[int, ...]
    axes_in: tuple[str, ...]
    shape_out: tuple[int, ...]
    axes_out: tuple[str, ...]

    @nn.compact
    def __call__(self, x):
        c = self.config
        rank, fan_in = c.lora_rank, math.prod(self.shape_in)
        bound = 1.0 / math.sqrt(fan_in)
        a = self.param(
            "a",
            _partitioned(
                lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound),
                (*self.axes_in, None),
            ),
            (*self.shape_in, rank),
            c.jnp_lora_dtype,
        )
        b = self.param(
            "b",
            _partitioned(nn.initializers.zeros, (None, *self.axes_out)),
            (rank, *self.shape_out),
            c.jnp_lora_dtype,
        )
        lead = x.shape[: x.ndim - len(self.shape_in)]
        h = x.reshape(*lead, fan_in).astype(c.jnp_dtype) @ a.reshape(fan_in, rank).astype(
            c.jnp_dtype
        )
        out = h @ b.reshape(rank, -1).astype(c.jnp_dtype)
        return (out * (c.lora_alpha / rank)).reshape(*lead, *self.shape_out)


def is_adapter_path(path) -> bool:
    """Whether a key path (from `jax.tree_util`) lies in an adapter module."""
    return any(str(getattr(k, "key", k)).endswith(LORA_SUFFIX) for k in path)


# Heads a LoRA run trains whole: they are new (a reward model's, a PRM's, a critic's).
TRAINED_HEADS = ("value_head", "reward_head", "prm_head")


def trainable_mask(params) -> Any:
    """A pytree of bools matching `params`: True on adapter leaves and on the scalar heads."""

    def trained(path, _):
        names = [str(getattr(k, "key", k)) for k in path]
        return is_adapter_path(path) or any(n in TRAINED_HEADS for n in names)

    return jax.tree_util.tree_map_with_path(trained, params)


def adapter_count(params) -> int:
    """Number of adapter parameters."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return int(sum(np.size(x) for path, x in flat if is_adapter_path(path)))


def strip(params):
    """`params` without the adapter modules: the frozen base (the same arrays, no copy)."""
    if isinstance(params, dict):
        return {k: strip(v) for k, v in params.items() if not str(k).endswith(LORA_SUFFIX)}
    return params


def base_config(config):
    """`config` without adapters: the frozen model a LoRA run starts from."""
    return config.replace(lora_rank=0, lora_targets=(), lora_alpha=type(config).lora_alpha)


def merge(config, params) -> tuple[Any, Any]:
    """(config without LoRA, params with W + (α/r)·A·B folded into every targeted kernel).

    The merged model computes what the adapted one does (up to rounding) with
    no adapter matmuls: the form an HF export and a decode-heavy sampler use.
    """
    if not config.lora_rank:
        return config, params
    scale = config.lora_alpha / config.lora_rank

    def fold(tree):
        if not isinstance(tree, dict):
            return tree
        out = {k: fold(v) for k, v in tree.items() if not str(k).endswith(LORA_SUFFIX)}
        for name in config.lora_targets:
            adapter = tree.get(name + LORA_SUFFIX)
            if adapter is None or name not in out:
                continue
            a, b = adapter["a"], adapter["b"]  # [L, *in, r], [L, r, *out]
            kernel = out[name]["kernel"]
            n_in = a.ndim - 2
            delta = jnp.einsum(
                "lir,lro->lio",
                jnp.reshape(a, (a.shape[0], -1, a.shape[-1])).astype(jnp.float32),
                jnp.reshape(b, (b.shape[0], b.shape[1], -1)).astype(jnp.float32),
            ).reshape(a.shape[: 1 + n_in] + b.shape[2:])
            out[name] = {
                **out[name],
                "kernel": (kernel.astype(jnp.float32) + scale * delta).astype(kernel.dtype),
            }
        return out

    return base_config(config), fold(params)


# --------------------------------------------------------------------------- PEFT adapters

_PEFT_MODULES = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
}
_OURS = {"self_attn": "attn", "mlp": "mlp"}
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"


def _peft_key(layer: int, name: str, which: str) -> str:
    return f"base_model.model.model.layers.{layer}.{_PEFT_MODULES[name]}.{name}.lora_{which}.weight"


def save_peft(path: str, config, params, *, base_model: str = "") -> str:
    """Writes the adapters as a PEFT LoRA directory (`adapter_config.json` +
    `adapter_model.safetensors`) that `peft.PeftModel.from_pretrained` loads onto
    the `transformers` model of the base checkpoint.

    PEFT stores lora_A [r, in] and lora_B [out, r] per layer and scales by α/r,
    as these adapters do.
    """
    import json
    import os

    from safetensors.numpy import save_file

    if not config.lora_rank:
        raise ValueError("save_peft: the config has no LoRA adapters (lora_rank is 0)")
    tensors = {}
    for name in config.lora_targets:
        adapter = params["layers"][_OURS[_PEFT_MODULES[name]]][name + LORA_SUFFIX]
        a, b = np.asarray(adapter["a"], np.float32), np.asarray(adapter["b"], np.float32)
        rank = config.lora_rank
        for layer in range(config.num_layers):
            tensors[_peft_key(layer, name, "A")] = np.ascontiguousarray(
                a[layer].reshape(-1, rank).T
            )
            tensors[_peft_key(layer, name, "B")] = np.ascontiguousarray(
                b[layer].reshape(rank, -1).T
            )
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, PEFT_WEIGHTS), metadata={"format": "pt"})
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.lora_rank,
        "lora_alpha": config.lora_alpha,
        "target_modules": list(config.lora_targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }
    with open(os.path.join(path, PEFT_CONFIG), "w") as f:
        json.dump(adapter_config, f, indent=2)
    return path


def load_peft(path: str, config) -> tuple[Any, dict]:
    """(config with the adapters, {"layers": {"attn"/"mlp": {"<proj>_lora": {"a", "b"}}}}).

    Merge the tree into the base params (`with_adapters`). An adapter of
    another architecture (a shape or a layer count that does not fit
    `config`), a scaling this model does not implement (rsLoRA, DoRA) or a
    target that is not a projection is an error naming it.
    """
    import json
    import os

    from safetensors.numpy import load_file

    with open(os.path.join(path, PEFT_CONFIG)) as f:
        meta = json.load(f)
    if meta.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path}: peft_type {meta.get('peft_type')!r}, not LORA")
    for flag in ("use_rslora", "use_dora"):
        if meta.get(flag):
            raise ValueError(f"{path}: {flag}=true is not supported")
    targets = meta.get("target_modules")
    if isinstance(targets, str) or not targets:
        raise ValueError(f"{path}: target_modules must be a list of projection names")
    adapted = config.replace(
        lora_rank=int(meta["r"]), lora_alpha=float(meta["lora_alpha"]), lora_targets=tuple(targets)
    )
    tensors = load_file(os.path.join(path, PEFT_WEIGHTS))
    tree: dict = {}
    rank = adapted.lora_rank
    for name in adapted.lora_targets:
        shape_in, shape_out = projection_shapes(adapted, name)
        a_layers, b_layers = [], []
        for layer in range(adapted.num_layers):
            keys = [_peft_key(layer, name, w) for w in ("A", "B")]
            missing = [k for k in keys if k not in tensors]
            if missing:
                raise ValueError(f"{path}: no tensor {missing[0]} (an adapter of another model?)")
            a, b = tensors[keys[0]], tensors[keys[1]]
            want_a, want_b = (rank, math.prod(shape_in)), (math.prod(shape_out), rank)
            if a.shape != want_a or b.shape != want_b:
                raise ValueError(
                    f"{path}: {keys[0]} is {list(a.shape)} and lora_B {list(b.shape)}, but this "
                    f"model needs {list(want_a)} and {list(want_b)}: an adapter of another base"
                )
            a_layers.append(a.T.reshape(*shape_in, rank))
            b_layers.append(b.T.reshape(rank, *shape_out))
        extra = f"base_model.model.model.layers.{adapted.num_layers}."
        if any(k.startswith(extra) for k in tensors):
            raise ValueError(
                f"{path}: the adapter has more layers than the model's {config.num_layers}"
            )
        module = tree.setdefault("layers", {}).setdefault(_OURS[_PEFT_MODULES[name]], {})
        module[name + LORA_SUFFIX] = {
            "a": np.stack(a_layers).astype(adapted.lora_dtype),
            "b": np.stack(b_layers).astype(adapted.lora_dtype),
        }
    return adapted, tree


def with_adapters(params: dict, adapters: dict) -> dict:
    """`params` with the adapter modules of `adapters` added (nested dicts merged)."""
    out = dict(params)
    for key, value in adapters.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = with_adapters(out[key], value)
        else:
            out[key] = value
    return out
