"""Roofline step-time estimates, worked out by hand for a small model."""

import pytest

from rewardjax.models.config import ModelConfig
from rewardjax.training.step_time import ACCELERATORS, step_seconds

# 2 layers, D = 8, H = 2 query heads, K = 1 kv head, head_dim 4, MLP 16, V = 10.
CONFIG = ModelConfig(
    vocab_size=10,
    hidden_size=8,
    intermediate_size=16,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    head_dim=4,
    remat="none",
    dtype="bfloat16",
)
# Weights a token multiplies through: per layer q 8·8, k and v 8·4 each, o 8·8,
# MLP 3·8·16; then the LM head 8·10.
WEIGHTS = 2 * (64 + 32 + 32 + 64 + 384) + 80
ATTENTION = 4 * 2 * 2 * 4  # FLOPs per attended position: 4 · layers · heads · head_dim


def _forward(tokens, attended):
    return 2 * WEIGHTS * tokens + ATTENTION * attended


def test_update_is_three_forwards_and_remat_adds_one():
    rows, seq = 4, 6
    forward = _forward(rows * seq, rows * seq * (seq + 1) / 2)
    peak, _ = ACCELERATORS["h100"]
    est = step_seconds(
        CONFIG, objective="sft", rows=rows, seq_len=seq, prompt_len=2, mfu=0.5, devices=2
    )
    assert est["update_s"] == pytest.approx(3 * forward / (peak * 0.5 * 2))
    assert est["sampler_s"] == 0.0 and est["forwards_s"] == 0.0
    assert est["total_s"] == est["update_s"]
    remat = step_seconds(
        CONFIG.replace(remat="full"), objective="sft", rows=rows, seq_len=seq, prompt_len=2
    )
    plain = step_seconds(CONFIG, objective="sft", rows=rows, seq_len=seq, prompt_len=2)
    assert remat["update_s"] == pytest.approx(plain["update_s"] * 4 / 3)


def test_decode_of_a_small_model_is_bound_by_memory_bandwidth():
    rows, prompt_len, new = 8, 5, 3
    peak, bandwidth = ACCELERATORS["a100"]
    est = step_seconds(
        CONFIG,
        objective="grpo",
        rows=rows,
        seq_len=prompt_len + new,
        prompt_len=prompt_len,
        prompts=2,
        new_tokens=new,
        extra_forwards=2,
        accelerator="a100",
        mfu=0.4,
        bandwidth_util=0.5,
    )
    # Each decode step reads the bfloat16 weights once and the KV cache filled so
    # far (2 · layers · kv heads · head_dim values per position, 2 bytes each).
    kv_per_position = 2 * 2 * 1 * 4 * 2
    decode = sum(
        (WEIGHTS * 2 + rows * (prompt_len + t) * kv_per_position) / (bandwidth * 0.5)
        for t in (1, 2, 3)
    )
    prefill = _forward(2 * prompt_len, 2 * prompt_len * (prompt_len + 1) / 2) / (peak * 0.4)
    assert est["sampler_s"] == pytest.approx(decode + prefill)
    forward = _forward(rows * 8, rows * 8 * 9 / 2)
    assert est["forwards_s"] == pytest.approx(2 * forward / (peak * 0.4))
    assert est["total_s"] == pytest.approx(est["update_s"] + est["forwards_s"] + est["sampler_s"])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="accelerator 'v100'; known: h100"):
        step_seconds(CONFIG, objective="sft", rows=1, seq_len=2, prompt_len=1, accelerator="v100")
    with pytest.raises(ValueError, match="mfu=0 and bandwidth_util=0.7 must lie in"):
        step_seconds(CONFIG, objective="sft", rows=1, seq_len=2, prompt_len=1, mfu=0)
