r"""LoRA at the Qwen2.5-0.5B shape: one GRPO iteration, full vs LoRA, rewardjax vs TRL + peft.

  python benchmarks/lora.py                       # Qwen2.5-0.5B shape, 4 prompts × 4, 64 tokens
  python benchmarks/lora.py --preset tiny --new_tokens 8 --repeats 1   # a smoke run
  python benchmarks/lora.py --part sampler        # rollout with merged vs unmerged adapters
  python benchmarks/lora.py --part rl --workdir /tmp/rj_lora_rl   # Tina-style: LoRA vs full RL

The checkpoint has the preset's shape with random weights (a character-level
tokenizer; the model's vocabulary keeps the preset's size, the ids past the
tokenizer's are never prompted). Each measured configuration runs in its own
Python process, so its memory is its own: the process peak (`ru_maxrss`,
loading and compiling included) and the timed iterations' peak (the resident
high-water mark reset after the warm-up iteration, `method.reset_peak_rss`),
which is what training at this shape costs and what the ratios use:

  rewardjax_full   GRPO, every parameter trained (AdamW state of all)
  rewardjax_lora   GRPO with rank-16 adapters on every projection
  trl_lora         TRL's GRPOTrainer with a peft LoraConfig of the same rank,
                   alpha and targets (torch CPU, its best thread count)

A process builds its trainer, takes one warm-up iteration (compiles) and then
`--steps` timed ones; it reports seconds per iteration and its peak memory.
The configurations run in turn for `--repeats` rounds (benchmarks/method.py).
`experiments/plan.py`'s prediction for the same update (`plan_memory`) is set
beside the measured peak: the plan's process peak, the iteration's device
arrays (the larger of the update step and the rollout) plus the host runtime
(a planning process's own resident memory: Python, JAX, XLA and compiled
programs, which a CPU backend's arrays share memory with). Each plan runs in
its own process, as `experiments/plan.py` would.

JSON keys: lora_peak_memory_ratio (LoRA / full iteration peak),
lora_process_peak_ratio (the same for the process peaks), lora_optimizer_memory_ratio
(planned optimizer + gradient bytes, LoRA / full), speedup_vs_trl_lora,
plan_memory_error (|plan − measured| / measured, worst of full and LoRA),
peft_max_logit_diff (a PEFT round trip of the LoRA run's adapters, on a
small model of the same family), and the seconds and GiB of each side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RANK, ALPHA = 16, 32.0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_checkpoint(path: str, preset: str) -> None:
    import jax
    from grpo_step import char_tokenizer_json

    from rewardjax import models

    config = models.preset(preset).replace(eos_token_id=2, pad_token_id=0, bos_token_id=1)
    params = models.init_params(config, jax.random.key(0))
    models.save_hf(path, config, jax.device_get(params))
    char_tokenizer_json(path)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB


def rewardjax_side(model_dir: str, args, *, lora: bool) -> dict:
    from grpo_step import rewardjax_seconds

    block = dict(rank=RANK, alpha=ALPHA, targets=TARGETS) if lora else None
    seconds, info = rewardjax_seconds(model_dir, args, lora=block)
    return {
        "seconds": seconds,
        "peak_gib": _peak_gib(),
        "iteration_peak_gib": info["iteration_peak_gib"],
    }


def trl_side(model_dir: str, args, *, threads: int) -> dict:
    from grpo_step import trl_seconds
    from peft import LoraConfig

    lora = LoraConfig(
        r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0, task_type="CAUSAL_LM"
    )
    seconds, info = trl_seconds(
        model_dir, args, threads=threads, checkpointing=True, peft_config=lora, learning_rate=1e-5
    )
    return {
        "seconds": seconds,
        "peak_gib": _peak_gib(),
        "iteration_peak_gib": info["iteration_peak_gib"],
        "threads": threads,
    }


def plan(preset: str, args, *, lora: bool) -> dict:
    from rewardjax.training import memory_plan

    _, (row,) = memory_plan.plan_memory(
        presets=preset,
        mesh="1,1,1",
        batch=args.prompts * args.group,
        seq_len=32 + args.new_tokens,
        prompt_len=32,
        objective="grpo",
        remat="full",
        group_size=args.group,
        max_new_tokens=args.new_tokens,
        lora_rank=RANK if lora else 0,
    )
    return row


def peft_round_trip() -> float:
    """Max |logit difference| of a LoRA model and transformers + peft on its exported adapters."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import transformers
    from peft import PeftModel

    from rewardjax import models
    from rewardjax.models import lora

    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            initializer_range=0.15,
        )
    ).eval()
    root = tempfile.mkdtemp(prefix="bench_peft_")
    hf.save_pretrained(os.path.join(root, "base"))
    config, params = models.load_hf(os.path.join(root, "base"))
    config = config.replace(lora_rank=RANK, lora_alpha=ALPHA, lora_targets=tuple(TARGETS))
    full = models.init_params(config, jax.random.key(1))
    keys = iter(jax.random.split(jax.random.key(2), 64))
    adapters = {
        "layers": {
            m: {
                k: {n: 0.1 * jax.random.normal(next(keys), x.shape) for n, x in v.items()}
                for k, v in t.items()
                if k.endswith(lora.LORA_SUFFIX)
            }
            for m, t in full["layers"].items()
            if isinstance(t, dict)
        }
    }
    params = lora.with_adapters(params, adapters)
    lora.save_peft(os.path.join(root, "adapter"), config, params)
    tokens = np.random.default_rng(0).integers(0, 128, (2, 12))
    with torch.no_grad():
        theirs = PeftModel.from_pretrained(hf, os.path.join(root, "adapter"))(
            input_ids=torch.tensor(tokens)
        ).logits.numpy()
    ours = models.build(config).apply({"params": params}, jnp.asarray(tokens))
    return float(np.abs(np.asarray(ours) - theirs).max())


def sampler_merge(args) -> dict:
    """Seconds per rollout of base + adapters, unmerged vs merged before the rollout.

    Unmerged, every decode step runs the rank-r matmuls beside each targeted
    projection; merged, the rollout first folds W + (α/r)·A·B into a copy of
    the kernels (a jitted merge, timed with the rollout) and then decodes the
    plain model. The adapters are random (B ≠ 0) so neither side can skip
    them; every row decodes the full budget (no stop ids).
    """
    import time

    import jax
    import method
    import numpy as np

    from rewardjax import models, sampling
    from rewardjax.models import lora

    config = models.preset(args.preset).replace(
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=1,
        lora_rank=RANK,
        lora_alpha=ALPHA,
        lora_targets=tuple(TARGETS),
    )
    params = models.init_params(config, jax.random.key(0))
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            0.01 * jax.random.normal(jax.random.key(1), x.shape, x.dtype)
            if lora.is_adapter_path(path) and path[-1].key == "b"
            else x
        ),
        params,
    )
    prompts = np.random.default_rng(0).integers(3, 100, (args.prompts, 32)).tolist()
    merge = jax.jit(lambda p: lora.merge(config, p)[1])
    merged_config = lora.base_config(config)

    merge_seconds: list[float] = []

    def rollout(merged: bool) -> float:
        t0 = time.perf_counter()
        cfg, p = config, params
        if merged:
            cfg, p = merged_config, jax.block_until_ready(merge(params))
            merge_seconds.append(time.perf_counter() - t0)
        out = sampling.generate(
            cfg, p, prompts, rng=jax.random.key(2), n=args.group, max_new_tokens=args.new_tokens
        )
        jax.block_until_ready(out.tokens)
        return time.perf_counter() - t0

    rollout(False), rollout(True)  # compile both sides
    samples = method.interleave(
        {"unmerged": lambda: rollout(False), "merged": lambda: rollout(True)},
        repeats=args.repeats,
    )
    return samples, merge_seconds[1:]  # the timed rounds' merges


# The Tina-style comparison (`--part rl`): one SFT start on arithmetic chains
# (benchmarks/stages.py), then per seed GRPO arms from it at the same rollout
# budget. LoRA gets 10× full training's learning rate, the ratio "LoRA
# Without Regret" (Schulman et al., 2025) finds between their optimal rates.
# The model is small (157k parameters, width 64), so the ranks are too: rank 4
# on every projection trains 10% of its parameters, rank 1 2.6% (Tina's rank
# 32 on a 1.5B model trains about 0.5%).
RL_STEPS = 120
RL_ARMS = {
    "full": dict(lr=2e-4),
    "full_lr1e-3": dict(lr=1e-3),  # does full training gain more at a LoRA-like rate?
    "lora_r4": dict(lr=2e-3, rank=4),
    "lora_r1": dict(lr=2e-3, rank=1),
}


def rl_arm(arm: str, sft_hf: str, seed: int, scale: float):
    import stages

    from configs import grpo_arithmetic

    setting = RL_ARMS[arm]
    c = grpo_arithmetic.get_config(f"model_path={sft_hf}")
    c = stages.schedule(c, stages.scaled_steps(RL_STEPS, scale), setting["lr"], seed)
    c.export_hf = False
    c.log.samples_every = 0
    c.eval.num_problems = max(round(200 * scale), 16)
    c.eval.num_samples = 8
    if "rank" in setting:
        c.lora.update(rank=setting["rank"], alpha=2.0 * setting["rank"])
    return c


def rl_comparison(args) -> dict:
    """Held-out pass@1 gain over the SFT start: LoRA-only GRPO vs full GRPO, paired by seed."""
    import jax
    import stages

    from rewardjax.training import rl

    os.makedirs(args.workdir, exist_ok=True)
    cpu: dict[str, float] = {}
    sft = stages.sft_start_config(stages.scaled_steps(600, args.scale), seed=0)
    sft.optim.warmup_steps = min(sft.optim.warmup_steps, sft.steps // 4)
    sft.eval.num_problems = max(round(200 * args.scale), 16)
    sft.eval.num_samples = 8
    start = stages.train_stage(args.workdir, "sft", sft, cpu)
    sft_hf = os.path.join(args.workdir, "sft", "hf")
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed: dict[str, list[float]] = {}
    trainable: dict[str, int] = {}
    for seed in seeds:
        for arm in RL_ARMS:
            name = f"{arm}_seed{seed}"

            def run(arm=arm, name=name, seed=seed):
                trainer = rl.RLTrainer(
                    rl_arm(arm, sft_hf, seed, args.scale), os.path.join(args.workdir, name, "run")
                )
                trainer.run()
                out = trainer.evaluate()
                mask = trainer.trainable
                leaves = jax.tree.leaves(trainer.state.params["policy"])
                keep = jax.tree.leaves(mask["policy"]) if mask is not None else [True] * len(leaves)
                out["trainable_params"] = float(sum(x.size for x, k in zip(leaves, keep) if k))
                return out

            result = stages.cached_stage(args.workdir, name, run, cpu)
            trainable[arm] = int(result["trainable_params"])
            per_seed.setdefault(f"{arm}_pass_at_1", []).append(result["pass@1"])
            per_seed.setdefault(f"{arm}_gain", []).append(result["pass@1"] - start["pass@1"])
        for arm in RL_ARMS:
            if arm.startswith("lora"):
                per_seed.setdefault(f"{arm}_minus_full", []).append(
                    per_seed[f"{arm}_gain"][-1] - per_seed["full_gain"][-1]
                )
    out: dict = {"bench": "lora_rl", "seeds": seeds, "scale": args.scale}
    out["sft_pass_at_1"] = round(start["pass@1"], 4)
    out.update(stages.seed_aggregate(per_seed, digits=4))
    out["trainable_params"] = trainable
    out["arms"] = {a: dict(v) for a, v in RL_ARMS.items()}
    out["rl_steps"] = stages.scaled_steps(RL_STEPS, args.scale)
    out["cpu_s"] = {k: round(v, 1) for k, v in cpu.items()}
    return out


def dpo_side(model_dir: str, args, *, lora: bool) -> dict:
    """One DPO step at the checkpoint's shape: seconds, the step's peak memory, its batch shape.

    The reference log-probs are computed in the step (reference.precompute
    off): with LoRA from the base with the adapters off, in full training from
    a frozen copy of the weights.
    """
    import time

    import jax
    import method

    from configs import dpo_arithmetic
    from rewardjax.training import offline

    c = dpo_arithmetic.get_config(f"model_path={model_dir},precompute=False")
    c.model.tokenizer = model_dir
    if lora:
        c.lora.update(rank=RANK, alpha=ALPHA, targets=TARGETS)
    c.batch_size = args.prompts  # preference pairs per step
    c.steps = 3
    c.optim.learning_rate = 1e-6
    c.checkpoint.every = 0
    c.eval.every = 0
    c.export_hf = False
    trainer = offline.OfflineTrainer(c, tempfile.mkdtemp(prefix="bench_dpo_"))
    trainer.train_step()  # compile
    jax.block_until_ready(trainer.state.params)
    method.reset_peak_rss()
    objective = trainer.objective
    if getattr(objective, "next_batch_reads_policy", False):  # LoRA: the base is the reference
        batch, _ = objective.next_batch(trainer.state.params["policy"])
    else:
        batch, _ = objective.next_batch()
    start = time.perf_counter()
    trainer.update(batch)
    jax.block_until_ready(trainer.state.params)
    return {
        "seconds": time.perf_counter() - start,
        "peak_gib": _peak_gib(),
        "iteration_peak_gib": round(method.peak_rss_gib(), 3),
        "rows": 2 * c.batch_size,
        "seq_len": int(batch["prompt_tokens"].shape[1] + batch["chosen_tokens"].shape[1]),
        "prompt_len": int(batch["prompt_tokens"].shape[1]),
    }


def plan_dpo(model_dir: str, args, *, lora: bool) -> dict:
    """plan.py's prediction for the DPO step of `dpo_side` (the policy's update on 2B rows)."""
    from configs import dpo_arithmetic
    from rewardjax.training import memory_plan

    c = dpo_arithmetic.get_config(f"model_path={model_dir},precompute=False")
    c.batch_size = args.prompts
    _, (row,) = memory_plan.plan_memory(
        config=c,
        mesh="1,1,1",
        seq_len=c.data.prompt_length + c.data.completion_length,
        prompt_len=c.data.prompt_length,
        lora_rank=RANK if lora else 0,
    )
    return row


def child(args) -> None:
    """One configuration in this process: prints its JSON line."""
    if args.side.startswith("dpo_"):
        out = dpo_side(args.model_dir, args, lora=args.side == "dpo_lora")
        print(json.dumps(out))
        return
    if args.side.startswith("plandpo_"):
        row = plan_dpo(args.model_dir, args, lora=args.side == "plandpo_lora")
        print(json.dumps(row))
        return
    if args.side.startswith("plan_"):
        row = plan(args.preset, args, lora=args.side == "plan_lora")
        print(json.dumps({k: v for k, v in row.items() if k != "sampler"}))
        return
    if args.side == "trl_lora":
        out = trl_side(args.model_dir, args, threads=args.threads)
    else:
        out = rewardjax_side(args.model_dir, args, lora=args.side == "rewardjax_lora")
    print(json.dumps(out))


def main():
    import method

    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="qwen2.5-0.5b")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--side", default="")
    parser.add_argument("--model_dir", default="")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--part", default="iteration", choices=("iteration", "sampler", "rl", "dpo")
    )
    parser.add_argument("--workdir", default="/tmp/rewardjax_bench_lora_rl")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if args.side:
        child(args)
        return
    if args.part == "rl":
        load = method.machine_load()
        line = rl_comparison(args)
        line.update(load_avg_start=load["load_avg"], machine=load["machine"])
        print(json.dumps(line))
        return
    start = method.machine_load()
    if args.part == "sampler":
        samples, merges = sampler_merge(args)
        line = method.report(
            "lora_sampler",
            samples,
            start=start,
            ratio=("merged", "unmerged"),
            ratio_key="unmerged_speedup_vs_merged",
            merge_s_median=round(statistics.median(merges), 4),
            preset=args.preset,
            rows=args.prompts * args.group,
            new_tokens=args.new_tokens,
            rank=RANK,
            targets=len(TARGETS),
        )
        print(json.dumps(line))
        return
    model_dir = os.path.join(tempfile.mkdtemp(prefix="bench_lora_model_"), "model")
    build_checkpoint(model_dir, args.preset)
    runs: dict[str, list[dict]] = {}

    def run(side: str, threads: int = 2) -> dict:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            f"--side={side}",
            f"--model_dir={model_dir}",
        ]
        keys = ("preset", "prompts", "group", "new_tokens", "steps")
        cmd += [f"--{k}={getattr(args, k)}" for k in keys]
        cmd.append(f"--threads={threads}")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{side}: {out}", flush=True)
        return out

    if args.part == "dpo":
        steps = {m: run(f"dpo_{m}") for m in ("full", "lora")}
        planned = {m: run(f"plandpo_{m}") for m in ("full", "lora")}
        error = max(
            abs(planned[m]["process_peak_bytes"] / 2**30 - steps[m]["iteration_peak_gib"])
            / steps[m]["iteration_peak_gib"]
            for m in steps
        )
        line = {
            "bench": "lora_dpo",
            "dpo_step_s": {m: round(r["seconds"], 2) for m, r in steps.items()},
            "step_peak_gib": {m: r["iteration_peak_gib"] for m, r in steps.items()},
            "process_peak_gib": {m: round(r["peak_gib"], 2) for m, r in steps.items()},
            "plan_peak_gib": {
                m: round(r["process_peak_bytes"] / 2**30, 2) for m, r in planned.items()
            },
            "plan_memory_error": round(error, 3),
            "lora_peak_memory_ratio": round(
                steps["lora"]["iteration_peak_gib"] / steps["full"]["iteration_peak_gib"], 3
            ),
            "pairs": args.prompts,
            "seq_len": steps["full"]["seq_len"],
            "preset": args.preset,
            "load_avg_start": start["load_avg"],
            "machine": start["machine"],
        }
        print(json.dumps(line))
        return

    # torch's best thread count for the TRL side (1 or 2), probed once.
    probe = {n: run("trl_lora", n)["seconds"] for n in (1, 2)}
    threads = min(probe, key=probe.get)

    def timed(side: str):
        def call() -> float:
            out = run(side, threads)
            runs.setdefault(side, []).append(out)
            return out["seconds"]

        return call

    samples = method.interleave(
        {s: timed(s) for s in ("rewardjax_full", "rewardjax_lora", "trl_lora")},
        repeats=args.repeats,
    )
    peak = {s: max(r["peak_gib"] for r in runs[s]) for s in runs}
    # The timed iterations' own peak (after loading and compiling): what training costs.
    iteration = {s: max(r["iteration_peak_gib"] for r in runs[s]) for s in runs}
    planned = {m: run(f"plan_{m}") for m in ("full", "lora")}

    def state_bytes(row):  # optimizer statistics and the gradients of the trained parameters
        return row["optimizer_bytes"] + 4 * row["trainable_params"]

    # The plan's process peak (the iteration's arrays plus the host runtime)
    # against the measured peak of the timed iterations.
    plan_error = max(
        abs(planned[m]["process_peak_bytes"] / 2**30 - iteration[f"rewardjax_{m}"])
        / iteration[f"rewardjax_{m}"]
        for m in ("full", "lora")
    )
    line = method.report(
        "lora",
        samples,
        start=start,
        ratio=("trl_lora", "rewardjax_lora"),
        ratio_key="speedup_vs_trl_lora",
        lora_peak_memory_ratio=round(iteration["rewardjax_lora"] / iteration["rewardjax_full"], 3),
        lora_process_peak_ratio=round(peak["rewardjax_lora"] / peak["rewardjax_full"], 3),
        lora_optimizer_memory_ratio=round(
            state_bytes(planned["lora"]) / state_bytes(planned["full"]), 4
        ),
        plan_memory_error=round(plan_error, 3),
        peak_gib={s: round(v, 2) for s, v in peak.items()},
        iteration_peak_gib={s: round(v, 2) for s, v in iteration.items()},
        plan_peak_gib={m: round(r["process_peak_bytes"] / 2**30, 2) for m, r in planned.items()},
        plan_update_peak_gib={m: round(r["peak_bytes"] / 2**30, 2) for m, r in planned.items()},
        plan_runtime_gib=round(planned["full"]["runtime_bytes"] / 2**30, 2),
        trainable_params={m: r["trainable_params"] for m, r in planned.items()},
        peft_max_logit_diff=peft_round_trip(),
        preset=args.preset,
        prompts=args.prompts,
        group_size=args.group,
        new_tokens=args.new_tokens,
        rank=RANK,
        trl_threads=threads,
    )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
