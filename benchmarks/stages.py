"""Stages the training benchmarks share: the SFT start, and trainer runs cached in a workdir.

  cpu = {}
  sft_eval = train_stage(workdir, "sft", sft_start_config(steps=600, seed=0), cpu)
  prm_eval = train_stage(workdir, "prm_seed0", schedule(prm_config, 2000, 5e-4, seed=0), cpu)

A stage is finished when its directory holds eval.json: a rerun on the same
workdir reuses it (and the CPU seconds it recorded in cpu.json), so seeds can
run in separate processes and a last run over all of them aggregates.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

# Four layers, not the tiny preset's two: a two-layer model learns to generate
# the arithmetic but not to verify it from a scalar head in these budgets.
LAYERS = {"num_layers": 4}


def scaled_steps(steps: int, scale: float) -> int:
    """`steps` × `scale`, at least 4 (a smoke run still warms up and decays)."""
    return max(round(steps * scale), 4)


def schedule(c, steps: int, lr: float, seed: int):
    """Seed, steps and a cosine learning rate over them; no checkpoints or mid-run evals."""
    c.seed = seed
    c.steps = steps
    c.optim.learning_rate = lr
    c.optim.total_steps = steps
    c.optim.warmup_steps = min(20, steps // 4)
    c.checkpoint.every = 0
    c.eval.every = 0
    c.log.every = 50
    return c


def sft_start_config(steps: int, seed: int):
    """The SFT start of the reward-model benchmarks: 64-demonstration batches, 30% with a wrong step.

    lr 3e-3 decaying to a tenth; evaluated by pass@1 on 200 held-out problems × 16.
    """
    from configs import sft_arithmetic

    c = schedule(sft_arithmetic.get_config("error_rate=0.3"), steps, 3e-3, seed)
    c.model.overrides = dict(LAYERS)
    c.optim.warmup_steps = 30
    c.optim.end_factor = 0.1
    c.eval.num_problems, c.eval.num_samples, c.eval.batch_prompts = 200, 16, 100
    return c


def seed_aggregate(
    per_seed: dict[str, list], *, counts: tuple[str, ...] = (), digits: int | None = None
) -> dict:
    """Mean, rliable 95% CI (`<key>_ci95`) and per-seed values (`<key>_per_seed`) of each key.

    A value that is None or not finite (an AUROC over one class, a stage that
    did not run) leaves its seed out of the mean and is None in `_per_seed`; a
    key with no value left has mean None. Keys starting with one of `counts`
    (rollouts, solutions: the same for every seed) get their plain mean only.
    `digits`: round the figures.
    """
    import math

    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    def finite(x) -> bool:
        return x is not None and math.isfinite(x)

    def rnd(x):
        return x if digits is None or x is None else round(x, digits)

    kept = {k: [x for x in v if finite(x)] for k, v in per_seed.items()}
    intervals = mean_ci_over_seeds(
        {k: v for k, v in kept.items() if v and not k.startswith(counts)}, reps=2000
    )
    out: dict = {}
    for key, row in per_seed.items():
        if key.startswith(counts):
            out[key] = rnd(sum(kept[key]) / len(kept[key])) if kept[key] else None
        elif key in intervals:
            out[key] = rnd(intervals[key]["mean"])
            out[f"{key}_ci95"] = [rnd(intervals[key]["ci_low"]), rnd(intervals[key]["ci_high"])]
        else:
            out[key] = None
        out[f"{key}_per_seed"] = [rnd(x) if finite(x) else None for x in row]
    return out


def rounded(result: dict) -> dict:
    return {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}


def cached_stage(workdir: str, name: str, run: Callable[[], dict], cpu: dict) -> dict:
    """`run()`'s JSON-able result, computed once: kept in `workdir/name/eval.json`.

    The CPU seconds of `run` are recorded as `cpu[name + "_cpu_s"]` (and kept
    beside the result, so a reuse reports them too).
    """
    stage_dir = os.path.join(workdir, name)
    reused = _reuse(stage_dir, name, cpu)
    if reused is not None:
        return reused
    os.makedirs(stage_dir, exist_ok=True)
    start = time.process_time()
    result = run()
    cpu[f"{name}_cpu_s"] = time.process_time() - start
    _finish(stage_dir, name, result, cpu)
    return result


def train_stage(workdir: str, name: str, config, cpu: dict, *, evaluate: bool = True) -> dict:
    """Trains `config` with the offline trainer in `workdir/name` (exported to its hf/), once.

    Returns the trainer's evaluation ({} with evaluate=False); records
    `cpu[name + "_train_cpu_s"]` and `cpu[name + "_eval_cpu_s"]`.
    """
    from rewardjax.training import offline

    stage_dir = os.path.join(workdir, name)
    reused = _reuse(stage_dir, name, cpu)
    if reused is not None:
        return reused
    start = time.process_time()
    trainer = offline.OfflineTrainer(config, stage_dir)
    trainer.run()
    cpu[f"{name}_train_cpu_s"] = time.process_time() - start
    result = {}
    if evaluate:
        start = time.process_time()
        result = trainer.evaluate()
        cpu[f"{name}_eval_cpu_s"] = time.process_time() - start
    _finish(stage_dir, name, result, cpu)
    return result


def _reuse(stage_dir: str, name: str, cpu: dict) -> dict | None:
    """A finished stage's result (this run's or an earlier one's), its CPU seconds into `cpu`."""
    done, cpu_file = os.path.join(stage_dir, "eval.json"), os.path.join(stage_dir, "cpu.json")
    if not os.path.exists(done):
        return None
    with open(done) as f:
        result = json.load(f)
    if os.path.exists(cpu_file):
        with open(cpu_file) as f:
            cpu.update(json.load(f))
    print(name, "(reused)", json.dumps(rounded(result)), flush=True)
    return result


def _finish(stage_dir: str, name: str, result: dict, cpu: dict) -> None:
    with open(os.path.join(stage_dir, "cpu.json"), "w") as f:
        json.dump({k: v for k, v in cpu.items() if k.startswith(f"{name}_")}, f)
    # eval.json last: its presence marks the stage finished.
    with open(os.path.join(stage_dir, "eval.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(name, json.dumps(rounded(result)), flush=True)
