r"""Reward models at a documented scale: ORM, PRM, implicit PRM and DPO from one SFT start.

  python -m benchmarks.reward_models --workdir /tmp/bench_rm --seeds 0,1,2

Scale (arithmetic_chain, num_steps=3, operands 1..9; the `tiny` preset with
four layers, char vocabulary; each stage's steps and learning rate in
STAGE_SCALE below, batch 32, cosine schedule):
  SFT           600 steps × 64 demonstrations (30% with a wrong step), lr 3e-3
  ORM           pairs (reference ≻ one propagated error), from SFT
  PRM           step-labelled solutions (50% erroneous), from SFT
  implicit PRM  solutions, outcome cross-entropy, β 0.05, π_ref = SFT
  DPO           pairs, β 0.1, π_ref = SFT (precomputed)
The SFT start is trained once (--sft_seed); every other stage runs once per
seed, so seeds can run in separate processes on one workdir and a last run
over all of them (reusing the finished stages) prints the aggregate.
Held-out evaluation (test split, never trained on): 500 pairs / lists /
solutions; ProcessBench τ tuned on 500 train-split solutions of another
seed; pass@1 on 200 problems × 16 samples for SFT and DPO alike.

Four layers, not the preset's two: a two-layer model learns to generate the
arithmetic but not to verify it from a scalar head in this budget (its
ORM/PRM stay at positional-cue level), while four layers can.

Prints a JSON line last. Headline figures are means over seeds with a 95%
bootstrap interval (`<key>_ci95`, rliable, as in experiments/sweep.py) and the
per-seed values (`<key>_per_seed`): orm_pairwise_accuracy,
prm_processbench_f1 (τ = 0.5), implicit_prm_processbench_f1 (tuned τ),
dpo_pass_at_1 and dpo_pass_at_1_gain (over sft_pass_at_1). Beside them:
orm_best_of_4_accuracy, prm_processbench_f1_tuned, step AUROCs,
random_processbench_f1 (uniform random step scores) and CPU seconds per stage.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stages  # the shared SFT start and cached stages, beside this script

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/rewardjax_bench_reward_models", "Run directory.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the reward-model and DPO stages.")
_SFT_SEED = flags.DEFINE_integer(
    "sft_seed", 0, "Seed of the one SFT start every stage and seed begins from."
)
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies every stage's steps (0.1 for a smoke run).")
_FRESH = flags.DEFINE_bool(
    "fresh",
    False,
    "Delete the workdir first (else finished stages, those with eval.json, are reused).",
)

NUM_EVAL = 500
# (steps, learning rate) of each stage, all from the SFT checkpoint, batch 32.
# The ORM learns to verify late: its train accuracy sits near 0.68 for ~2000
# steps before it finds the wrong step (0.70 held-out at 1000 steps, 0.87 at
# 3000, 0.884 at 5000); 8000 steps give it room past that transition.
STAGE_SCALE = {
    "orm": (8000, 5e-4),
    "prm": (2000, 5e-4),
    "implicit_prm": (300, 3e-4),
    "dpo": (200, 1e-5),
}


def _steps(n: int) -> int:
    return stages.scaled_steps(n, _SCALE.value)


def _offline(c):
    c.data.num_train = 16384
    c.data.num_test = NUM_EVAL
    c.eval.num_records = NUM_EVAL
    c.eval.num_problems = 200
    c.eval.num_samples = 16
    c.eval.batch_prompts = 100
    return c


def _train(name: str, config, cpu: dict, *, evaluate: bool = True) -> dict:
    return stages.train_stage(_WORKDIR.value, name, config, cpu, evaluate=evaluate)


def _random_f1(seed: int) -> float:
    """ProcessBench F1 of uniform random step scores on the held-out solutions (τ = 0.5)."""
    from rewardjax import evaluation
    from rewardjax.data.steps import first_error_label
    from rewardjax.data.tasks import make_task
    from rewardjax.training.kinds.data import load_records

    task = make_task("arithmetic_chain", num_steps=3, max_operand=9)
    solutions = load_records(task, "step_labels", num=NUM_EVAL, split="test", seed=seed)
    labels = np.array([first_error_label(s) for s in solutions])
    rng = np.random.default_rng(seed)
    f1s = [
        evaluation.processbench_f1([rng.random(len(s.steps)) for s in solutions], labels)["f1"]
        for _ in range(20)
    ]
    return float(np.mean(f1s))


STAGES = ("orm", "prm", "implicit_prm", "dpo")
# Each stage's headline metric in its evaluation, and the JSON key it is reported under.
HEADLINE = {
    "orm": ("pairwise_accuracy", "orm_pairwise_accuracy"),
    "prm": ("processbench_f1", "prm_processbench_f1"),
    "implicit_prm": ("tuned_processbench_f1", "implicit_prm_processbench_f1"),
    "dpo": ("pass@1", "dpo_pass_at_1"),
}


def _stage_config(stage: str, sft_hf: str, seed: int):
    from configs import dpo_arithmetic, prm_arithmetic, rm_arithmetic

    steps, lr = STAGE_SCALE[stage]
    make = {
        "orm": lambda: rm_arithmetic.get_config(f"model_path={sft_hf}"),
        "prm": lambda: prm_arithmetic.get_config(f"model_path={sft_hf}"),
        "implicit_prm": lambda: prm_arithmetic.get_config(f"kind=implicit_prm,model_path={sft_hf}"),
        "dpo": lambda: dpo_arithmetic.get_config(f"model_path={sft_hf}"),
    }[stage]
    return _offline(stages.schedule(make(), _steps(steps), lr, seed))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # checkpoint chatter; progress bars stay
    import rewardjax.objectives  # noqa: F401

    if _FRESH.value:
        shutil.rmtree(_WORKDIR.value, ignore_errors=True)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    cpu: dict[str, float] = {}
    seeds = [int(s) for s in _SEEDS.value]

    sft_eval = _train("sft", stages.sft_start_config(_steps(600), _SFT_SEED.value), cpu)
    sft_hf = os.path.join(_WORKDIR.value, "sft", "hf")

    evals: dict[str, list[dict]] = {stage: [] for stage in STAGES}
    for seed in seeds:
        for stage in STAGES:
            name = f"{stage}_seed{seed}"
            evals[stage].append(_train(name, _stage_config(stage, sft_hf, seed), cpu))

    # Mean and 95% bootstrap CI over seeds (rliable), as experiments/sweep.py tabulates.
    headline = {key: [e[metric] for e in evals[stage]] for stage, (metric, key) in HEADLINE.items()}
    headline["dpo_pass_at_1_gain"] = [p - sft_eval["pass@1"] for p in headline["dpo_pass_at_1"]]
    result = {"bench": "reward_models", "seeds": seeds, "scale": _SCALE.value}
    result.update(stages.seed_aggregate(headline))

    def mean(stage, metric):
        return float(np.mean([e[metric] for e in evals[stage]]))

    result.update(
        orm_best_of_4_accuracy=mean("orm", "best_of_4_accuracy"),
        prm_processbench_f1_tuned=mean("prm", "tuned_processbench_f1"),
        prm_step_auroc=mean("prm", "step_auroc"),
        implicit_prm_processbench_f1_at_0_5=mean("implicit_prm", "processbench_f1"),
        implicit_prm_step_auroc=mean("implicit_prm", "step_auroc"),
        random_processbench_f1=_random_f1(seeds[0]),
        sft_pass_at_1=sft_eval["pass@1"],
        cpu_s={k: round(v, 1) for k, v in cpu.items()},
    )
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
