"""ModelConfig: one dataclass for the Llama 3, Qwen2/2.5 and Qwen3 decoder families."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

FAMILIES = ("llama", "qwen2", "qwen3")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_name(dtype: Any) -> Any:
    """The name ("float32", "bfloat16", ...) of a dtype given as a name, `jnp.float32`,
    `np.float32` or an `np.dtype`; anything else is returned unchanged (for the
    caller's own error naming its known values)."""
    if isinstance(dtype, str):
        return dtype
    try:
        return np.dtype(dtype).name
    except TypeError:
        return dtype


REMAT_POLICIES = ("none", "full", "dots")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a decoder-only transformer.

    Attributes:
      family: "llama" (Llama 3.x), "qwen2" (Qwen2/2.5: bias on q/k/v) or
        "qwen3" (RMSNorm on q and k per head). Decides the HF architecture on
        export; the two flags below carry the actual differences.
      vocab_size: V.
      hidden_size: D.
      intermediate_size: SwiGLU width.
      num_layers: decoder blocks (scanned).
      num_heads: query heads H.
      num_kv_heads: key/value heads K (GQA); must divide H.
      head_dim: per-head width; None means D / H.
      qkv_bias: bias on the q, k, v projections (Qwen2).
      qk_norm: RMSNorm over head_dim on q and k before RoPE (Qwen3).
      tie_word_embeddings: LM head reuses the embedding matrix.
      rope_theta: RoPE base.
      rope_scaling: None or a dict in HF form; only {"rope_type": "llama3",
        "factor", "low_freq_factor", "high_freq_factor",
        "original_max_position_embeddings"} is supported.
      rms_norm_eps: RMSNorm epsilon.
      max_position_embeddings: longest sequence the config is meant for.
      initializer_range: std of the normal init for fresh models.
      param_dtype: storage dtype of parameters ("float32" or "bfloat16").
      dtype: compute dtype of activations and matmuls.
      remat: rematerialisation of each block in the backward pass:
        "none", "full" (save only block inputs) or "dots" (save matmul outputs).
      bos_token_id, eos_token_id, pad_token_id: carried to and from HF configs.
      reward_outputs: outputs of the "reward" head: 1 is a scalar reward
        (kernel [D], bias []); K > 1 one score per rated attribute (kernel
        [D, K], bias [K]; not written to HF checkpoints).
      lora_rank, lora_alpha, lora_targets: LoRA adapters (α/r)·A·B on the
        named projections (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
        down_proj; `rewardjax.models.lora`); rank 0: none.
      lora_dtype: storage dtype of the adapters (float32 beside a bfloat16
        frozen base keeps the trained weights and their optimizer in full precision).
    """

    family: str = "qwen2"
    vocab_size: int = 128
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int | None = None
    qkv_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = True
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | tuple | None = None
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    param_dtype: str = "float32"
    dtype: str = "float32"
    remat: str = "none"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    reward_outputs: int = 1
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ()
    lora_dtype: str = "float32"

    def __post_init__(self):
        from rewardjax.models import lora

        # A list from a config file: stored as a tuple so the config stays hashable.
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets or ()))
        lora.check_config(self)
        if self.family not in FAMILIES:
            raise ValueError(f"ModelConfig.family={self.family!r}; known: {', '.join(FAMILIES)}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)} must be positive")
        k = self.reward_outputs
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ModelConfig.reward_outputs={self.reward_outputs!r} must be >= 1")
        if self.num_heads <= 0 or self.num_kv_heads <= 0:
            raise ValueError(
                f"ModelConfig.num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads} "
                "must be positive"
            )
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"ModelConfig.num_heads={self.num_heads} does not divide "
                f"hidden_size={self.hidden_size} (set head_dim explicitly to allow it)"
            )
        if self.head_dim is not None and self.head_dim * self.num_heads == self.hidden_size:
            # The default D / H spelled out: store None so equal models compare equal
            # (HF files write head_dim for some families and not for others).
            object.__setattr__(self, "head_dim", None)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelConfig.num_kv_heads={self.num_kv_heads} does not divide "
                f"num_heads={self.num_heads}"
            )
        if self.resolved_head_dim % 2:
            raise ValueError(f"ModelConfig head_dim={self.resolved_head_dim} must be even for RoPE")
        for name in ("param_dtype", "dtype", "lora_dtype"):
            object.__setattr__(self, name, dtype_name(getattr(self, name)))
            if getattr(self, name) not in _DTYPES:
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r}; known: {', '.join(_DTYPES)}"
                )
        if self.remat not in REMAT_POLICIES:
            raise ValueError(
                f"ModelConfig.remat={self.remat!r}; known: {', '.join(REMAT_POLICIES)}"
            )
        if isinstance(self.rope_scaling, dict):
            # Stored as sorted items so the config stays hashable (a static jit argument).
            object.__setattr__(self, "rope_scaling", tuple(sorted(self.rope_scaling.items())))
        if self.rope_scaling is not None:
            kind = self.rope_scaling_dict.get("rope_type", self.rope_scaling_dict.get("type"))
            if kind not in ("llama3", "default"):
                raise ValueError(
                    f"ModelConfig.rope_scaling rope_type={kind!r} is not supported "
                    "(supported: 'llama3', 'default')"
                )

    @property
    def rope_scaling_dict(self) -> dict[str, Any] | None:
        return None if self.rope_scaling is None else dict(self.rope_scaling)

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def jnp_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def jnp_param_dtype(self):
        return _DTYPES[self.param_dtype]

    @property
    def jnp_lora_dtype(self):
        return _DTYPES[self.lora_dtype]

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        """Parameter count of the backbone plus LM head (no extra heads)."""
        d, h, k, hd = self.hidden_size, self.num_heads, self.num_kv_heads, self.resolved_head_dim
        attn = d * h * hd + 2 * d * k * hd + h * hd * d
        if self.qkv_bias:
            attn += h * hd + 2 * k * hd
        if self.qk_norm:
            attn += 2 * hd
        mlp = 3 * d * self.intermediate_size
        block = attn + mlp + 2 * d
        embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * block + embed + d


def _qwen25(**kw) -> ModelConfig:
    base = dict(
        family="qwen2",
        vocab_size=151936,
        qkv_bias=True,
        tie_word_embeddings=True,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )
    base.update(kw)
    return ModelConfig(**base)


PRESETS: dict[str, ModelConfig] = {
    # CPU tests and the procedural quickstart; vocab covers the char tokenizer.
    "tiny": ModelConfig(
        family="qwen2",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        qkv_bias=True,
        max_position_embeddings=512,
    ),
    "qwen2.5-0.5b": _qwen25(
        hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2
    ),
    "qwen2.5-1.5b": _qwen25(
        hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2
    ),
    "qwen3-0.6b": ModelConfig(
        family="qwen3",
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_layers=28,
        num_heads=16,
        num_kv_heads=8,
        head_dim=128,
        qk_norm=True,
        tie_word_embeddings=True,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        max_position_embeddings=40960,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    ),
    "llama-3.2-1b": ModelConfig(
        family="llama",
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        tie_word_embeddings=True,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rms_norm_eps=1e-5,
        max_position_embeddings=131072,
        bos_token_id=128000,
        eos_token_id=128001,
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """Returns the named preset, with dataclass fields overridden."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None
    return config.replace(**overrides) if overrides else config
