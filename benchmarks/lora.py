r"""LoRA at the Qwen2.5-0.5B shape: one GRPO iteration, full vs LoRA, rewardjax vs TRL + peft.

  python benchmarks/lora.py                       # Qwen2.5-0.5B shape, 4 prompts × 4, 64 tokens
  python benchmarks/lora.py --preset tiny --new_tokens 8 --repeats 1   # a smoke run

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
beside the measured peak: the plan counts the device arrays of the update
step, the measurement the whole process (Python, XLA's compiled programs, the
sampler's cache), so their difference is reported, not asserted.

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


def child(args) -> None:
    """One configuration in this process: prints its JSON line."""
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
    args = parser.parse_args()
    if args.side:
        child(args)
        return
    start = method.machine_load()
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
        cmd += [f"--{k}={getattr(args, k)}" for k in ("prompts", "group", "new_tokens", "steps")]
        cmd.append(f"--threads={threads}")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{side}: {out}", flush=True)
        return out

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
    planned = {m: plan(args.preset, args, lora=m == "lora") for m in ("full", "lora")}

    def state_bytes(row):  # optimizer statistics and the gradients of the trained parameters
        return row["optimizer_bytes"] + 4 * row["trainable_params"]

    plan_error = max(
        abs(planned[m]["peak_bytes"] / 2**30 - iteration[f"rewardjax_{m}"])
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
        plan_peak_gib={m: round(r["peak_bytes"] / 2**30, 2) for m, r in planned.items()},
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
