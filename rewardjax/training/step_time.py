"""Roofline estimates of the time of a training step on an accelerator.

A matmul-bound pass takes FLOPs / (peak · mfu); a decode step of the sampler
reads every weight and the filled KV cache once per generated token, so it
takes max(FLOPs / (peak · mfu), bytes / (bandwidth · bandwidth_util)). The
FLOPs are `inference.compute.forward_flops` (2 per weight per token plus the
attention); a backward pass costs two forward passes, and full
rematerialisation adds one more.

  est = step_seconds(config, objective="grpo", rows=128, seq_len=768, prompt_len=256,
                     prompts=16, new_tokens=512, accelerator="h100")
  est["total_s"], est["update_s"], est["sampler_s"]

These are lower bounds at the stated utilisations, not measurements: real steps
add host work (rewards, the sandbox), collectives and launch overheads. Every
row is assumed to run to the full `new_tokens` (no early EOS), an upper bound
on the decode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardjax.inference.compute import causal_pairs, forward_flops, matmul_params
from rewardjax.models.config import ModelConfig

__all__ = ["ACCELERATORS", "step_seconds"]

# Dense bfloat16 peak FLOP/s and memory bandwidth (bytes/s), from the vendors'
# data sheets: H100 SXM, H200 SXM, A100 SXM 80 GB, TPU v5e, TPU v5p.
ACCELERATORS: dict[str, tuple[float, float]] = {
    "h100": (989e12, 3.35e12),
    "h200": (989e12, 4.8e12),
    "a100": (312e12, 2.039e12),
    "tpu-v5e": (197e12, 0.819e12),
    "tpu-v5p": (459e12, 2.765e12),
}
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def step_seconds(
    config: ModelConfig,
    *,
    objective: str,
    rows: int,
    seq_len: int,
    prompt_len: int,
    prompts: int = 0,
    new_tokens: int = 0,
    extra_forwards: int = 0,
    accelerator: str = "h100",
    devices: int = 1,
    mfu: float = 0.4,
    bandwidth_util: float = 0.7,
) -> dict[str, Any]:
    """Estimated seconds of one step: the update, the extra forward passes and the sampler.

    Args:
      config: the model.
      objective: "grpo" (also samples `prompts` × rows/prompts completions of
        `new_tokens` tokens after `prompt_len`-token prompts) or any offline /
        SFT objective (the update only).
      rows, seq_len: the rows of one update and their tokens (prompt + completion).
      prompt_len: the prompt part of each row.
      prompts: distinct prompts of the rollout (grpo; prefilled once each).
      new_tokens: the rollout's completion budget (grpo).
      extra_forwards: forward passes over the batch outside the update (GRPO's
        old and reference log-probs: 2 with a KL term, else 1).
      accelerator: a key of ACCELERATORS.
      devices: devices the work splits over (the estimate assumes perfect scaling).
      mfu: the fraction of peak FLOP/s a matmul-bound pass reaches.
      bandwidth_util: the fraction of the memory bandwidth a decode step reaches.

    Returns:
      {"accelerator", "mfu", "bandwidth_util", "update_s", "forwards_s",
       "sampler_s", "total_s", "update_tflop", "sampler_tflop"}.
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator {accelerator!r}; known: {', '.join(ACCELERATORS)}")
    if not (0 < mfu <= 1 and 0 < bandwidth_util <= 1):
        raise ValueError(f"mfu={mfu} and bandwidth_util={bandwidth_util} must lie in (0, 1]")
    peak, bandwidth = ACCELERATORS[accelerator]
    flop_rate = peak * mfu * devices
    forward = float(
        forward_flops(config, tokens=rows * seq_len, attended=rows * causal_pairs(0, seq_len))
    )
    passes = 3 + (1 if config.remat != "none" else 0)
    out = {
        "accelerator": accelerator,
        "mfu": mfu,
        "bandwidth_util": bandwidth_util,
        "update_s": passes * forward / flop_rate,
        "forwards_s": extra_forwards * forward / flop_rate,
        "sampler_s": 0.0,
        "update_tflop": passes * forward / 1e12,
        "sampler_tflop": 0.0,
    }
    if objective == "grpo" and new_tokens:
        bytes_read, flops = _sampler(
            config, rows=rows, prompt_len=prompt_len, new_tokens=new_tokens
        )
        byte_rate = bandwidth * bandwidth_util * devices
        out["sampler_s"] = float(np.sum(np.maximum(flops / flop_rate, bytes_read / byte_rate)))
        out["sampler_s"] += _prefill(config, prompts or rows, prompt_len) / flop_rate
        out["sampler_tflop"] = float(flops.sum()) / 1e12
    out["total_s"] = out["update_s"] + out["forwards_s"] + out["sampler_s"]
    return out


def _prefill(config: ModelConfig, prompts: int, prompt_len: int) -> float:
    return float(
        forward_flops(
            config, tokens=prompts * prompt_len, attended=prompts * causal_pairs(0, prompt_len)
        )
    )


def _sampler(config: ModelConfig, *, rows, prompt_len, new_tokens):
    """(bytes [T], FLOPs [T]) read and computed by each decode step (cache after position p + t)."""
    width = _BYTES.get(config.dtype, 4)
    kv_per_position = 2 * config.num_layers * config.num_kv_heads * config.resolved_head_dim
    filled = prompt_len + np.arange(1, new_tokens + 1, dtype=np.float64)
    weights = matmul_params(config) * width  # the embedding is gathered, not read whole
    bytes_read = weights + rows * filled * kv_per_position * width
    flops = forward_flops(config, tokens=rows, attended=rows * filled)
    return bytes_read, np.asarray(flops, np.float64)
