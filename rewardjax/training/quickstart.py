"""The quickstart: SFT a tiny policy from scratch, improve it with GRPO, measure both.

  python -m experiments.train --config configs/quickstart.py --workdir /tmp/quickstart

Stages, each in its own sub-directory of the workdir (a rerun resumes):
  1. sft/  supervised warm start on deliberately imperfect demonstrations;
  2. eval of the SFT policy on held-out problems (pass@k, k = 1..16);
  3. rl/   GRPO against the task's verifiable reward, starting from sft/hf;
  4. the same eval of the RL policy; summary.json and quickstart.png.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from rewardjax import models
from rewardjax.registry import TASKS
from rewardjax.tokenizers import load_tokenizer
from rewardjax.training import offline, rl
from rewardjax.training.rollout import EvalResult, sample_and_grade
from rewardjax.training.writers import write_config


def evaluate_checkpoint(
    hf_dir: str, config: ml_collections.ConfigDict, *, tokenizer_spec: str, rng: jax.Array
) -> EvalResult:
    """Samples config.eval.num_samples completions per held-out problem from an HF directory."""
    model_config, params = models.load_hf(hf_dir)
    tokenizer = load_tokenizer(tokenizer_spec)
    task = TASKS.get(config.task.name)(**config.task.kwargs)
    problems = task.problems(0, config.eval.num_problems, split="test", seed=config.seed)
    return sample_and_grade(
        model_config,
        jax.tree.map(np.asarray, params),
        tokenizer,
        task,
        problems,
        rng=rng,
        n=config.eval.num_samples,
        max_new_tokens=config.eval.max_new_tokens,
        temperature=config.eval.temperature,
        batch_prompts=config.eval.batch_prompts,
        progress=True,
    )


def _plot(path: str, before: dict, after: dict, rl_metrics_file: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ks = sorted(int(k.split("@")[1]) for k in before if k.startswith("pass@"))
    axes[0].plot(ks, [before[f"pass@{k}"] for k in ks], "o-", label="SFT")
    axes[0].plot(ks, [after[f"pass@{k}"] for k in ks], "o-", label="SFT + GRPO")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("k")
    axes[0].set_ylabel("held-out pass@k")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    steps, rewards = [], []
    if os.path.exists(rl_metrics_file):
        with open(rl_metrics_file) as f:
            for line in f:
                record = json.loads(line)
                if "reward/mean" in record:
                    steps.append(record["step"])
                    rewards.append(record["reward/mean"])
    axes[1].plot(steps, rewards)
    axes[1].set_xlabel("GRPO step")
    axes[1].set_ylabel("mean training reward")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    start = time.time()
    write_config(config, workdir)
    sft_dir = os.path.join(workdir, "sft")
    rl_dir = os.path.join(workdir, "rl")
    rng = jax.random.key(config.seed)

    sft_config = ml_collections.ConfigDict(config.sft.to_dict())
    offline.OfflineTrainer(sft_config, sft_dir).run()
    sft_hf = os.path.join(sft_dir, "hf")

    eval_key_before, eval_key_after = jax.random.split(rng)
    before = evaluate_checkpoint(
        sft_hf, config, tokenizer_spec=sft_config.model.tokenizer, rng=eval_key_before
    )
    before_summary = before.summary()

    rl_config = ml_collections.ConfigDict(config.rl.to_dict())
    rl_config.model.path = sft_hf
    # The RL trainer exports its final policy to rl/hf (export_hf).
    rl.RLTrainer(rl_config, rl_dir).run()
    rl_hf = os.path.join(rl_dir, "hf")

    after = evaluate_checkpoint(
        rl_hf, config, tokenizer_spec=rl_config.model.tokenizer, rng=eval_key_after
    )
    after_summary = after.summary()

    summary = {
        "task": config.task.name,
        "num_heldout_problems": int(before.correct.shape[0]),
        "samples_per_problem": int(before.correct.shape[1]),
        "sft": before_summary,
        "rl": after_summary,
        "pass_at_1_before": before_summary["pass@1"],
        "pass_at_1_after": after_summary["pass@1"],
        "pass@1_gain": after_summary["pass@1"] - before_summary["pass@1"],
        "n_heldout": int(before.correct.shape[0]),
        "sft_steps": sft_config.steps,
        "rl_steps": rl_config.steps,
        # SFT, both evaluations and GRPO, from the start of this call (compiles included).
        "wall_s": time.time() - start,
    }
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        _plot(
            os.path.join(workdir, "quickstart.png"),
            before_summary,
            after_summary,
            os.path.join(rl_dir, "metrics.jsonl"),
        )
        ks = [k for k in before_summary if k.startswith("pass@")]
        print(
            "\nrewardjax quickstart —",
            config.task.name,
            f"({summary['num_heldout_problems']} held-out problems)",
        )
        print(f"{'':>10} " + " ".join(f"{k:>9}" for k in ks))
        print(f"{'SFT':>10} " + " ".join(f"{before_summary[k]:9.3f}" for k in ks))
        print(f"{'SFT+GRPO':>10} " + " ".join(f"{after_summary[k]:9.3f}" for k in ks))
        print(f"pass@1 gain: {summary['pass@1_gain'] * 100:+.1f} points")
        print(
            f"wrote {os.path.join(workdir, 'summary.json')} and {os.path.join(workdir, 'quickstart.png')}"
        )
    return summary
