"""rewardjax.training.memory_plan: abstract batches, the trainers' losses, one compiled step.

The multi-device command line is tested in test_plan.py; here the step is
planned on this process's single device.
"""

import jax
import pytest

from configs import dpo_arithmetic, grpo_arithmetic, ppo_arithmetic, sft_arithmetic
from rewardjax import models, parallel
from rewardjax.training import memory_plan
from rewardjax.training.optim import make_optimizer

# tiny: D=64, V=128 tied, 2 layers; 82,496 parameters (see test_plan.py).
TINY_PARAMS = 82496


def _mesh():
    return parallel.make_mesh(data=1, fsdp=1, tensor=1, devices=jax.devices()[:1])


def _plan(objective, config=None, rows=4, seq_len=12, prompt_len=4):
    return memory_plan.plan_update_step(
        models.preset("tiny"),
        name="tiny",
        mesh=_mesh(),
        objective=objective,
        rows=rows,
        seq_len=seq_len,
        prompt_len=prompt_len,
        microbatches=1,
        optimizer=make_optimizer(learning_rate=1e-5),
        logprob_impl="auto",
        config=config,
    )


def test_abstract_batch_keys_and_shapes():
    sft = memory_plan.abstract_batch("sft", 2, 3, 5)
    assert {k: (v.shape, str(v.dtype)) for k, v in sft.items()} == {
        "prompt_tokens": ((2, 3), "int32"),
        "prompt_mask": ((2, 3), "int32"),
        "tokens": ((2, 5), "int32"),
        "mask": ((2, 5), "float32"),
    }
    grpo = memory_plan.abstract_batch("grpo", 2, 3, 5, ref_logprobs=True, critic=True)
    extra = set(grpo) - set(sft)
    assert extra == {
        "old_logprobs",
        "rollout_logprobs",
        "advantages",
        "ref_logprobs",
        "old_values",
        "returns",
    }
    assert all(grpo[k].shape == (2, 5) and str(grpo[k].dtype) == "float32" for k in extra)


def test_sft_step_on_one_device():
    r = _plan("sft")
    assert r["num_params"] == TINY_PARAMS
    assert r["params_bytes"] == 4 * TINY_PARAMS  # float32, whole on the one device
    assert 2 * r["params_bytes"] <= r["optimizer_bytes"] <= 2 * r["params_bytes"] + 64
    # 4 rows × (4 prompt tokens × 2 int32 + 8 tokens × (int32 + f32)).
    assert r["batch_bytes"] == 4 * (4 * 8 + 8 * 8)
    assert r["temp_bytes"] > 0
    assert r["peak_bytes"] == (
        r["argument_bytes"] + r["output_bytes"] - r["alias_bytes"] + r["temp_bytes"]
    )
    assert (r["mesh"], r["objective"], r["batch"], r["seq_len"]) == ("1,1,1", "sft", 4, 12)


@pytest.mark.slow
def test_rl_config_plans_the_trainers_loss_inputs():
    # KL in the loss: π_ref's log-probs are one more [B, T] float32 input.
    grpo_kl = grpo_arithmetic.get_config("runlocal=True,kl_coef=0.04")
    assert grpo_kl.kl.placement == "loss"
    # 4 rows × (the SFT inputs + old / rollout log-probs, advantages, 8 f32 each).
    grpo_batch_bytes = 4 * (4 * 8 + 8 * 8 + 3 * 8 * 4)
    kl = _plan("grpo", grpo_kl)
    assert kl["batch_bytes"] == grpo_batch_bytes + 4 * 8 * 4
    assert kl["params_bytes"] == 4 * TINY_PARAMS
    # A critic: a second tiny trunk with a value head (D weights + 1 bias) and
    # old values and returns in the batch.
    ppo = ppo_arithmetic.get_config("runlocal=True")
    assert ppo.critic.enabled and ppo.kl.placement == "reward"
    critic = _plan("grpo", ppo)
    assert critic["num_params"] == 2 * TINY_PARAMS + 64 + 1
    assert critic["batch_bytes"] == grpo_batch_bytes + 2 * 4 * 8 * 4


def test_losses_come_from_the_config_blocks():
    policy = models.build(models.preset("tiny"))
    rl = grpo_arithmetic.get_config("runlocal=True")
    rl.loss.kwargs.clip_hgih = 0.3
    with pytest.raises(ValueError, match="clip_hgih"):
        memory_plan.update_loss("grpo", policy, config=rl)
    sft = sft_arithmetic.get_config()
    sft.objective.kwargs.aggregaton = "token_mean"
    with pytest.raises(ValueError, match="aggregaton"):
        memory_plan.update_loss("sft", policy, config=sft)
    # Without a config: the fixed ppo_clip / sft_nll defaults build.
    assert callable(memory_plan.update_loss("grpo", policy))
    assert callable(memory_plan.update_loss("sft", policy))
    with pytest.raises(memory_plan.PlanError, match="objective='dpo'"):
        memory_plan.update_loss("dpo", policy)


def test_plan_memory_names_the_flag_that_does_not_fit():
    with pytest.raises(memory_plan.PlanError, match="--devices=3 but JAX sees 1 devices"):
        memory_plan.plan_memory(presets="tiny", mesh="1,1,1", devices=3)
    with pytest.raises(memory_plan.PlanError, match="--prompt_len=40 must lie in"):
        memory_plan.plan_memory(presets="tiny", mesh="1,1,1", seq_len=32, prompt_len=40)
    with pytest.raises(memory_plan.PlanError, match="2 micro-batches"):
        memory_plan.plan_memory(presets="tiny", mesh="1,1,1", batch=3, microbatches=2)


def test_plan_memory_reads_rows_and_model_from_a_config():
    sft = sft_arithmetic.get_config("runlocal=True")
    mesh, (row,) = memory_plan.plan_memory(config=sft, mesh="1,1,1", seq_len=16, batch=2)
    assert mesh.devices.size == 1
    assert (row["model"], row["objective"], row["batch"]) == (sft.model.preset, "sft", 2)


def test_format_plan_table():
    row = dict(
        model="tiny",
        num_params=82496,
        mesh="1,2,1",
        objective="sft",
        batch=8,
        seq_len=32,
        params_bytes=2**30,
        optimizer_bytes=2**31,
        batch_bytes=0,
        temp_bytes=2**29,
        peak_bytes=3 * 2**30 + 2**29,
    )
    lines = memory_plan.format_plan_table([row]).splitlines()
    assert lines[0].startswith("per-device GiB")
    assert lines[1].split() == [
        "model",
        "params",
        "mesh",
        "obj",
        "batch×seq",
        "params",
        "optim",
        "batch",
        "temp",
        "peak",
        "process",
    ]
    assert set(lines[2]) == {"-"}
    assert lines[3].split() == [
        "tiny",
        "0.00B",
        "1,2,1",
        "sft",
        "8×32",
        "1.000",
        "2.000",
        "0.000",
        "0.500",
        "3.500",
        "-",
    ]
    row.update(process_peak_bytes=4 * 2**30)
    assert memory_plan.format_plan_table([row]).splitlines()[3].split()[-1] == "4.000"


# ------------------------------------------------------------------ sampler


def _sampler(prompts, samples, min_rows, max_new_tokens=490):
    # prompt bucket 16 + completion bucket 512 = 528 cache slots: the KV cache
    # (2 layers × 2 KV heads × 16 wide × 2 (keys, values) × 4 bytes = 512 bytes
    # per row and slot) is most of the sampler's memory.
    return memory_plan.plan_sampler(
        models.preset("tiny"),
        name="tiny",
        prompts=prompts,
        samples=samples,
        prompt_len=10,
        max_new_tokens=max_new_tokens,
        compact_min_rows=min_rows,
    )


@pytest.mark.parametrize(
    "prompts, samples, min_rows, capacities",
    [(4, 4, 8, [16, 8]), (4, 4, 0, [16]), (2, 2, 8, [4])],
    ids=["16_rows_compacted_to_8", "16_rows_uncompacted", "4_rows"],
)
def test_sampler_compiles_within_its_prediction(prompts, samples, min_rows, capacities):
    r = _sampler(prompts, samples, min_rows)
    assert (r["rows"], r["capacities"]) == (prompts * samples, capacities)
    assert (r["prompt_bucket"], r["completion_bucket"], r["slots"]) == (16, 512, 528)
    assert r["cache_block"] == 64  # generate's default: 512 / 8
    assert r["kv_cache_bytes"] == prompts * samples * 528 * 512
    assert r["params_bytes"] == 4 * TINY_PARAMS
    assert r["compiled_bytes"] == (
        r["argument_bytes"] + r["output_bytes"] - r["alias_bytes"] + r["temp_bytes"]
    )
    # The analytic peak bounds the compiled one, and closely: the cache is most
    # of both, so a cache term off by 2× in either direction breaks one side.
    assert r["compiled_bytes"] <= r["predicted_bytes"]
    assert r["compiled_bytes"] >= 0.75 * r["predicted_bytes"]


def test_kv_cache_bytes_are_init_caches_bytes():
    for cfg in (models.preset("tiny"), models.preset("tiny", dtype="bfloat16")):
        for rows, slots in ((1, 16), (12, 80), (16, 528)):
            cache = jax.eval_shape(lambda r=rows, s=slots, c=cfg: models.init_cache(c, r, s))
            nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache))
            assert memory_plan.kv_cache_bytes(cfg, rows, slots) == nbytes
            # One device's part: rows over the data axes, KV heads over tensor
            # (rounded up when they do not divide).
            assert memory_plan.kv_cache_bytes(cfg, rows, slots, head_shards=2) == nbytes // 2
        assert memory_plan.kv_cache_bytes(cfg, 12, 80, row_shards=4) == (
            memory_plan.kv_cache_bytes(cfg, 3, 80)
        )
        assert memory_plan.kv_cache_bytes(cfg, 12, 80, row_shards=8) == (
            memory_plan.kv_cache_bytes(cfg, 2, 80)
        )


def test_sampler_rejects_lengths_past_the_positions():
    with pytest.raises(memory_plan.PlanError, match="--max_new_tokens=600 exceeds"):
        _sampler(1, 1, 0, max_new_tokens=600)


def test_rollout_shape_of_a_preset_and_of_an_rl_config():
    # Without an RL config: the batch's rows, gcd(rows, 8) samples per prompt.
    assert memory_plan._rollout_shape(None, 16, 0, 0, 24) == dict(
        prompts=2, samples=8, max_new_tokens=24
    )
    assert memory_plan._rollout_shape(None, 12, 3, 40, 24) == dict(
        prompts=4, samples=3, max_new_tokens=40
    )
    with pytest.raises(memory_plan.PlanError, match="--group_size=5 does not divide"):
        memory_plan._rollout_shape(None, 12, 5, 0, 24)
    rl = grpo_arithmetic.get_config("runlocal=True")
    rl.rollout.top_p = 0.9
    shape = memory_plan._rollout_shape(rl, 999, 0, 0, 24)
    assert shape == dict(
        prompts=4,
        samples=4,
        max_new_tokens=32,
        compact_min_rows=8,
        cache_block=0,
        temperature=1.0,
        top_k=0,
        top_p=0.9,
    )
    assert memory_plan._rollout_shape(rl, 999, 2, 64, 24)["max_new_tokens"] == 64


@pytest.mark.slow
def test_plan_memory_plans_the_sampler_of_a_grpo_config():
    rl = grpo_arithmetic.get_config("runlocal=True")
    _, (row,) = memory_plan.plan_memory(config=rl, mesh="1,1,1", seq_len=48, prompt_len=16)
    s = row["sampler"]
    assert (s["model"], s["mesh"], s["prompts"], s["samples"]) == ("tiny", "1,1,1", 4, 4)
    assert (s["completion_bucket"], s["capacities"]) == (32, [16, 8])
    assert s["compiled_bytes"] <= s["predicted_bytes"]
    lines = memory_plan.format_sampler_table([s]).splitlines()
    assert lines[0].startswith("sampler: per-device GiB")
    assert lines[1].split() == [
        "model",
        "mesh",
        "prompts×n",
        "prompt+new",
        "params",
        "kv",
        "predict",
        "compiled",
    ]
    assert lines[3].split()[:4] == ["tiny", "1,1,1", "4×4", "16+32"]
    # The iteration holds the optimizer state through the rollout; the CPU
    # backend's process adds the runtime's resident memory.
    assert row["iteration_peak_bytes"] == max(
        row["peak_bytes"], s["compiled_bytes"] + row["optimizer_bytes"]
    )
    assert 0 < row["runtime_bytes"] <= memory_plan.host_resident_bytes()
    assert row["process_peak_bytes"] == row["iteration_peak_bytes"] + row["runtime_bytes"]


def test_iteration_peak_is_the_rollouts_when_it_is_larger():
    row = dict(peak_bytes=100, optimizer_bytes=30)
    assert memory_plan.iteration_peak(row) == 100
    assert memory_plan.iteration_peak({**row, "sampler": {"compiled_bytes": 60}}) == 100
    assert memory_plan.iteration_peak({**row, "sampler": {"compiled_bytes": 90}}) == 120
    # A frozen reference copy is resident through both.
    assert memory_plan.iteration_peak({**row, "reference_bytes": 7}) == 107


def test_a_reference_copy_is_planned_where_the_trainer_keeps_one():
    rl = grpo_arithmetic.get_config("runlocal=True")
    assert not memory_plan.holds_reference(rl)  # β = 0: no reference model
    rl.kl.placement, rl.kl.coef = "loss", 0.04
    assert memory_plan.holds_reference(rl)
    rl.lora.rank = 4  # the state's base is the reference
    assert not memory_plan.holds_reference(rl)
    dpo = dpo_arithmetic.get_config("runlocal=True")
    assert not memory_plan.holds_reference(dpo)  # precomputed, then freed
    dpo.reference.precompute = False
    assert memory_plan.holds_reference(dpo)
    _, (row,) = memory_plan.plan_memory(config=dpo, mesh="1,1,1", seq_len=32, batch=4)
    assert row["reference_bytes"] == row["policy_bytes"] == row["params_bytes"] > 0
    assert row["iteration_peak_bytes"] == row["peak_bytes"] + row["reference_bytes"]
    # Adapters asked for by argument: the base the state holds is the reference.
    _, (adapted,) = memory_plan.plan_memory(
        config=dpo, mesh="1,1,1", seq_len=32, batch=4, lora_rank=4
    )
    assert adapted["reference_bytes"] == 0


def test_prime_psi_and_its_optimizer_state_are_planned():
    rl = grpo_arithmetic.get_config("runlocal=True")
    _, (plain,) = memory_plan.plan_memory(config=rl, mesh="1,1,1", seq_len=32, sampler=False)
    assert plain["prime_bytes"] == 0
    rl.prime.enabled = True
    rl.advantage.name = "prime_combined_rloo"
    _, (row,) = memory_plan.plan_memory(config=rl, mesh="1,1,1", seq_len=32, sampler=False)
    # ψ: a full policy copy, and AdamW's two moments of every leaf.
    assert row["prime_bytes"] == row["policy_bytes"] + row["optimizer_bytes"] > 0
    assert row["reference_bytes"] == row["policy_bytes"]  # π_ref of ψ's log-ratio
    assert row["iteration_peak_bytes"] == (
        row["peak_bytes"] + row["reference_bytes"] + row["prime_bytes"]
    )


def test_lora_plan_holds_optimizer_state_of_the_adapters_only():
    _, (full,) = memory_plan.plan_memory(presets="tiny", mesh="1,1,1", batch=4, seq_len=32)
    _, (adapted,) = memory_plan.plan_memory(
        presets="tiny", mesh="1,1,1", batch=4, seq_len=32, lora_rank=4
    )
    cfg = models.preset("tiny")
    d, i, hd = cfg.hidden_size, cfg.intermediate_size, cfg.resolved_head_dim
    q, kv = cfg.num_heads * hd, cfg.num_kv_heads * hd
    # r·(in + out) per projection and layer: q, k, v, o, gate, up, down.
    widths = [(d, q), (d, kv), (d, kv), (q, d), (d, i), (d, i), (i, d)]
    adapters = cfg.num_layers * sum(4 * (a + b) for a, b in widths)
    assert adapted["trainable_params"] == adapters and adapted["lora_rank"] == 4
    assert full["trainable_params"] == full["num_params"]
    # AdamW's two float32 statistics per trainable parameter, and a few counters.
    assert 0 <= adapted["optimizer_bytes"] - 8 * adapters <= 64
    assert adapted["optimizer_bytes"] < full["optimizer_bytes"] / 5


def test_extra_forward_passes_follow_the_trainers_rule():
    c = grpo_arithmetic.get_config("runlocal=True")
    c.kl.placement, c.kl.coef = "none", 0.0
    # One epoch, one minibatch, no KL: the update's own forward gives the old log-probs.
    assert memory_plan._extra_forwards("grpo", c) == 0
    c.updates.epochs = 2
    assert memory_plan._extra_forwards("grpo", c) == 1
    c.updates.epochs = 1
    c.kl.placement, c.kl.coef = "loss", 0.01
    assert memory_plan._extra_forwards("grpo", c) == 2  # the old and the reference pass
    assert memory_plan._extra_forwards("sft", c) == 0
