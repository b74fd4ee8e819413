r"""Curricula in the RL loop: DRIVE two-stage, Guide hints, priority oversampling vs uniform.

  python benchmarks/curricula.py --workdir /tmp/rj_curricula              # 3 seeds
  python benchmarks/curricula.py --workdir /tmp/rj_cur_smoke --scale 0.05 # smoke run

The mixed-difficulty task: arithmetic chains of 2–6 operations (operands 1–9);
the hard subset is chains of 5–6. One SFT start (stages.sft_start_config on
this task, 64 new tokens), then per seed, four GRPO arms from it on a pool of
POOL training prompts (task.pool_size), each stopped at the same number of
sampled rows (STEPS × 16 prompts × 8 samples; hint rollouts count):

  uniform   prompts drawn uniformly from the pool, G = 8
  drive     DRIVE: uniform G = 8 for the first half, then the hard set (pool
            prompts with a stage-1 pass rate in [0, 0.5] over ≥ 8 samples,
            hardest first) with G = 32 (4 prompts per step)
  hints     uniform, plus Guide hints (prefix placement, adaptive length,
            target 0.5, at most 4 groups per step) for all-fail groups
  priority  2 × 16 candidates per step, the 16 of highest p(1 − p) by their
            recorded pass rate kept (unseen: 0.25)
  drive_g16 (not run by default) DRIVE with G = 16 in stage 2 (8 prompts per
            step): does stage 2's damage follow how few prompts a step holds?

Each arm is evaluated on 200 held-out problems × 8 samples (temperature 1):
pass@1 overall and on the hard subset; gains over uniform are paired by seed,
with rliable's 95% bootstrap intervals. Training signals: the share of
zero-variance groups, the share of all-fail groups that yield a learning
signal (hints: hinted groups with both outcomes), the importance ratios of the
hinted rows. The JSON line is printed last.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np
from absl import app, flags, logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stages  # noqa: E402  the shared SFT start and cached stages

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/rewardjax_bench_curricula", "Run dir.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the RL arms.")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies steps and sizes (0.05 for a smoke run).")
_ARMS = flags.DEFINE_list("arms", ["uniform", "drive", "hints", "priority"], "Arms to run.")
_FRESH = flags.DEFINE_bool("fresh", False, "Delete the workdir first (else reuse finished stages).")

ARMS = ("uniform", "drive", "hints", "priority", "drive_g16")
TASK = dict(num_steps=(2, 6), max_operand=9)
HARD_STEPS = 5  # chains of at least this many operations form the hard subset
MAX_NEW_TOKENS = 64
SFT_STEPS = 600
POOL = 256
STEPS, PROMPTS, GROUP = 120, 16, 8
DRIVE_GROUP = 32
LEARNING_RATE = 2e-4
EVAL_PROBLEMS, EVAL_SAMPLES = 200, 8
GAINS = ("pass_at_1", "hard_pass_at_1")


def _size(n: int, least: int = 4) -> int:
    return max(round(n * _SCALE.value), least)


def sft_config():
    c = stages.sft_start_config(stages.scaled_steps(SFT_STEPS, _SCALE.value), seed=0)
    c.task.kwargs = dict(TASK)
    c.optim.warmup_steps = min(c.optim.warmup_steps, c.steps // 4)
    c.eval.max_new_tokens = MAX_NEW_TOKENS
    c.eval.num_problems = _size(200)
    c.eval.batch_prompts = min(100, c.eval.num_problems)
    return c


def rl_config(arm: str, sft_hf: str, seed: int):
    """One arm: configs/grpo_curriculum.py's rule, the same start, pool, step shape and rate."""
    from configs import grpo_curriculum

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")
    rule = "drive" if arm.startswith("drive") else arm
    c = grpo_curriculum.get_config(f"model_path={sft_hf},curriculum={rule}")
    assert dict(c.task.kwargs) == TASK and c.rollout.max_new_tokens == MAX_NEW_TOKENS
    c.seed = seed
    c.task.pool_size = _size(POOL, 16)
    c.rollout.prompts_per_step = PROMPTS
    c.rollout.group_size = GROUP
    c.optim.learning_rate = LEARNING_RATE
    c.steps = 10**6  # the loop below stops at the row budget
    c.checkpoint.every = 0
    c.export_hf = False
    c.log.samples_every = 0
    if rule == "drive":  # stage 2 for the second half of the budget
        c.curriculum.drive.switch_step = stages.scaled_steps(STEPS, _SCALE.value) // 2
        assert c.curriculum.drive.group_size == DRIVE_GROUP
        if arm == "drive_g16":  # a diagnostic: stage 2 with G = 16 (8 prompts per step)
            c.curriculum.drive.group_size = 16
    return c


def _evaluate(trainer, seed: int) -> dict[str, float]:
    """pass@1 on held-out problems, overall and by difficulty."""
    import jax

    from rewardjax.training.rollout import sample_and_grade

    problems = trainer.source.test_problems(_size(EVAL_PROBLEMS, 16))
    result = sample_and_grade(
        trainer.model_config,
        trainer.state.params["policy"],
        trainer.tokenizer,
        trainer.task,
        problems,
        rng=jax.random.key(10_000 + seed),
        n=EVAL_SAMPLES,
        max_new_tokens=MAX_NEW_TOKENS,
        batch_prompts=min(100, len(problems)),
    )
    per_problem = result.correct.mean(axis=1)
    hard = np.asarray([len(p.steps) - 1 >= HARD_STEPS for p in problems])
    return {
        "pass_at_1": float(per_problem.mean()),
        "hard_pass_at_1": float(per_problem[hard].mean()),
        "easy_pass_at_1": float(per_problem[~hard].mean()),
        "hard_fraction": float(hard.mean()),
    }


def run_arm(arm: str, sft_hf: str, seed: int, cpu: dict) -> dict:
    """Trains one arm to the row budget (cached); its held-out scores and training signals."""
    from rewardjax.training import rl

    name = f"{arm}_seed{seed}"
    run_dir = os.path.join(_WORKDIR.value, name, "run")
    budget = stages.scaled_steps(STEPS, _SCALE.value) * PROMPTS * GROUP

    def run():
        trainer = rl.RLTrainer(rl_config(arm, sft_hf, seed), run_dir)
        rows = []
        while trainer.counters.get("rollout_rows", 0) < budget:
            metrics = trainer.train_step()
            rows.append({k: float(v) for k, v in metrics.items() if np.ndim(v) == 0})
        trainer.checkpointer.close()

        def total(key):
            return float(sum(r.get(f"curriculum/{key}", 0.0) for r in rows))

        out = _evaluate(trainer, seed)
        ratios = [r["curriculum/is_ratio_mean"] for r in rows if "curriculum/is_ratio_mean" in r]
        fail = total("fail_groups")
        out.update(
            steps=float(len(rows)),
            rollout_rows=float(trainer.counters["rollout_rows"]),
            zero_variance_group_frac=float(
                np.mean([r["rollout/zero_std_group_frac"] for r in rows])
            ),
            train_accuracy_last=float(
                np.mean([r["reward/accuracy"] for r in rows[-max(1, len(rows) // 10) :]])
            ),
            # All-fail groups that still gave a gradient (hints: hinted ones with
            # both outcomes); without hints an all-fail group has none.
            fail_group_signal_frac=total("hint_signal_groups") / fail if fail else None,
            hint_groups=total("hint_groups"),
            is_ratio_mean=float(np.mean(ratios)) if ratios else None,
            is_ratio_min=min(
                (r["curriculum/is_ratio_min"] for r in rows if "curriculum/is_ratio_min" in r),
                default=None,
            ),
            hard_set_size=float(len(trainer.curriculum.hard_set)),
        )
        return out

    return stages.cached_stage(_WORKDIR.value, name, run, cpu)


def named_figures(per_seed: dict[str, list]) -> dict:
    """The issue's names for the headline figures (means over seeds, as in the aggregate)."""
    out = {}
    if "hints_fail_group_signal_frac" in per_seed:
        out["hints_signal_fraction_all_fail"] = float(
            np.mean([x for x in per_seed["hints_fail_group_signal_frac"] if x is not None])
        )
    for name, arm in (("oversampling_zero_variance_frac", "priority"), ("_without", "uniform")):
        key = f"{arm}_zero_variance_group_frac"
        if key in per_seed:
            name = "oversampling_zero_variance_frac" + ("" if arm == "priority" else name)
            out[name] = float(np.mean(per_seed[key]))
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    arms = [a.strip() for a in _ARMS.value if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise app.UsageError(f"--arms {','.join(unknown)}: known arms are {', '.join(ARMS)}")
    if _FRESH.value:
        shutil.rmtree(_WORKDIR.value, ignore_errors=True)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    load_start = os.getloadavg()[0]
    cpu: dict[str, float] = {}
    seeds = [int(s) for s in _SEEDS.value]
    start = time.time()
    sft_eval = stages.train_stage(_WORKDIR.value, "sft", sft_config(), cpu)
    sft_hf = os.path.join(_WORKDIR.value, "sft", "hf")
    per_seed: dict[str, list] = {}
    for seed in seeds:
        results = {arm: run_arm(arm, sft_hf, seed, cpu) for arm in arms}
        for arm, result in results.items():
            for key, value in result.items():
                per_seed.setdefault(f"{arm}_{key}", []).append(value)
        if "uniform" in results:
            for arm in arms:
                if arm == "uniform":
                    continue
                for key in GAINS:
                    gain = results[arm][key] - results["uniform"][key]
                    per_seed.setdefault(f"{arm}_{key}_gain", []).append(gain)
    result = {
        "bench": "curricula",
        "seeds": seeds,
        "scale": _SCALE.value,
        "arms": arms,
        "task": {"num_steps": list(TASK["num_steps"]), "hard_steps": HARD_STEPS},
        "row_budget": stages.scaled_steps(STEPS, _SCALE.value) * PROMPTS * GROUP,
        "sft_pass_at_1": sft_eval.get("pass@1"),
        **stages.seed_aggregate(per_seed),
        **named_figures(per_seed),
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "wall_s": round(time.time() - start, 1),
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
