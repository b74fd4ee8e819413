"""experiments/plan.py compiles the sharded step on abstract shapes and reports bytes per device."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _parallel_harness as harness

PLAN = os.path.join(harness.ROOT, "experiments", "plan.py")


def test_plan_reports_bytes_per_device_for_the_tiny_preset():
    common = ["--preset", "tiny", "--mesh", "1,2,1", "--batch", "8", "--seq_len", "32"]
    procs = [
        harness.start(PLAN, [*common, "--objective", objective], devices=2)
        for objective in ("sft", "grpo")
    ]
    outs = [harness.finish(p, 300) for p in procs]
    sft, grpo = (harness.last_json(*o, "plan.py")["plan"][0] for o in outs)
    table = outs[0][1]
    assert "per-device GiB" in table and "tiny" in table and "1,2,1" in table

    # tiny: D=64, H=4, K=2, Dh=16, MLP 128, V=128 tied, 2 layers, q/k/v bias.
    # block = attn 64·64 + 2·64·32 + 64·64 + bias 64+32+32 + mlp 3·64·128 + norms 2·64
    #       = 12288 + 128 + 24576 + 128 = 37120; total = 2·37120 + 128·64 + 64 = 82496.
    assert sft["num_params"] == 82496
    # fsdp=2 halves every array: `embed` goes on fsdp, and the head width
    # (`kv`) where `embed` leaves it free (the q/k/v biases):
    # 82496/2 = 41248 floats = 164992 bytes.
    assert sft["params_bytes"] == 164992
    # AdamW's mu and nu mirror the params; its step counts are a few scalars.
    assert 2 * 164992 <= sft["optimizer_bytes"] <= 2 * 164992 + 64
    # Batch per device: 4 rows × (8 prompt tokens × 2 int32 + 24 tokens × (int32 + f32)).
    assert sft["batch_bytes"] == 4 * (8 * 8 + 24 * 8)
    # GRPO adds old / rollout log-probs and advantages: 3 × 24 float32 per row.
    assert grpo["batch_bytes"] == sft["batch_bytes"] + 4 * 3 * 24 * 4
    assert grpo["params_bytes"] == sft["params_bytes"]
    for r in (sft, grpo):
        assert r["temp_bytes"] > 0
        assert r["peak_bytes"] >= r["params_bytes"] + r["optimizer_bytes"] + r["temp_bytes"]
        assert r["alias_bytes"] >= r["params_bytes"] + r["optimizer_bytes"]  # donated state
