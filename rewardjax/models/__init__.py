"""Decoder models: config, presets, the Flax module, HF checkpoint import/export."""

from rewardjax.models.config import PRESETS, ModelConfig, preset
from rewardjax.models.hf import CheckpointError, load_hf, save_hf
from rewardjax.models.transformer import (
    Decoder,
    KVCache,
    build,
    default_positions,
    gather_positions,
    init_cache,
    init_params,
    last_token_positions,
    lm_head_kernel,
    logical_axes,
)

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Decoder",
    "KVCache",
    "ModelConfig",
    "build",
    "default_positions",
    "gather_positions",
    "init_cache",
    "init_params",
    "last_token_positions",
    "lm_head_kernel",
    "load_hf",
    "logical_axes",
    "preset",
    "save_hf",
]
