r"""Generative judges on arithmetic chains: SFT then GRPO judges, master keys, the judge as a reward.

  python benchmarks/generative_rm.py --workdir /tmp/rj_genrm               # 3 seeds
  python benchmarks/generative_rm.py --workdir /tmp/rj_genrm_smoke --scale 0.05

One policy SFT start (stages.sft_start_config: arithmetic chains of 3
operations, 600 steps). Held-out judge data: 200 test-split problems × 4
solutions sampled from that policy at temperature 1, labelled by the task's
grader (not generated errors), and the master-key answers of
`rewardjax.judges.robustness` on 100 test problems. Per seed:

  judge_sft      the policy start fine-tuned on pointwise judge demonstrations
                 (configs/judge_arithmetic.py:stage=sft: generated solutions,
                 half with a propagated wrong step; the verdict word alone;
                 8,000 steps of 32, lr 5e-4, the ORM's budget)
  judge_sft_aug  the same with 10% master-key solutions (verdict No)
  judge_grpo     judge_sft trained by GRPO as a policy on verdict correctness
                 under the strict format (stage=rl)
  policy_judged  the policy start trained by GRPO with judge_grpo's P("Yes")
                 as its only reward (stage=policy)
  judge_pairwise the policy start fine-tuned on pairwise demonstrations
                 (reference vs a wrong solution, both slots); scored on pairs of
                 the policy's own correct and wrong solutions, asked in both orders
  judge_stepwise the policy start fine-tuned on step-wise verdicts ("Step k:
                 correct|wrong" per line); its first wrong step against the
                 grader's on the policy's solutions is ProcessBench's F1

Per judge: verdict accuracy of its greedy reply (a reply that does not parse
is wrong), P("Yes") AUROC, and its false-positive rate on the master keys
(greedy verdict Yes). The policy run: held-out pass@1 (200 problems × 8)
against the SFT start, and the judge's seconds per RL step. rliable 95%
intervals over seeds; the JSON line is printed last.
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

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/rewardjax_bench_generative_rm", "Run dir.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the judges and RL runs.")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies steps and sizes (0.05 for a smoke run).")
_FRESH = flags.DEFINE_bool("fresh", False, "Delete the workdir first (else reuse finished stages).")
_PARTS = flags.DEFINE_list(
    "parts",
    ["pointwise", "pairwise", "stepwise"],
    "pointwise (with the RL parts), pairwise, stepwise.",
)
PARTS = ("pointwise", "pairwise", "stepwise")

# Judges: the ORM of benchmarks/reward_models.py needed 8,000 steps (batch 32, lr 5e-4)
# on this task; a pointwise judge SFT'd for 3,000 such steps reached 0.56 verdict
# accuracy (0.52 at 1,000), so the judges get the ORM's budget.
SFT_STEPS, JUDGE_SFT_STEPS, JUDGE_LR, JUDGE_BATCH = 600, 8000, 5e-4, 32
JUDGE_RL_STEPS, POLICY_RL_STEPS, RL_LR = 100, 100, 2e-4
EVAL_PROBLEMS, EVAL_SOLUTIONS, KEY_PROBLEMS = 200, 4, 100
POLICY_EVAL_SAMPLES = 8
MASTER_KEY_FRACTION = 0.1
TARGETS = dict(
    pointwise_accuracy_grpo=0.90,
    master_key_fpr_after=0.02,
    pairwise_swap_accuracy=0.90,
    stepwise_processbench_f1=0.70,
)


def _size(n: int, least: int = 4) -> int:
    return max(round(n * _SCALE.value), least)


def _steps(n: int) -> int:
    return stages.scaled_steps(n, _SCALE.value)


class EvalSet:
    """Held-out (problem, policy solution, label) rows and master-key rows."""

    def __init__(self, policy_hf: str):
        import jax

        from rewardjax import models
        from rewardjax.data.tasks import TASKS
        from rewardjax.judges import robustness
        from rewardjax.tokenizers import CharTokenizer
        from rewardjax.training.rollout import sample_and_grade

        self.task = TASKS.get("arithmetic_chain")(num_steps=3, max_operand=9)
        config, params = models.load_hf(policy_hf)
        tok = CharTokenizer()
        problems = self.task.problems(0, _size(EVAL_PROBLEMS, 8), split="test")
        result = sample_and_grade(
            config,
            params,
            tok,
            self.task,
            problems,
            rng=jax.random.key(123),
            n=EVAL_SOLUTIONS,
            max_new_tokens=48,
            batch_prompts=min(100, len(problems)),
        )
        rows = [p for p in problems for _ in range(EVAL_SOLUTIONS)]
        self.prompts = [p.prompt for p in rows]
        self.solutions = [t for row in result.texts for t in row]
        self.labels = result.correct.reshape(-1).astype(bool)
        # ProcessBench labels: the grader's first wrong line (-1: none).
        first = [self.task.grade(p, t).first_error for p, t in zip(rows, self.solutions)]
        self.first_errors = np.array([-1 if f is None else f for f in first])
        # Pairs of one correct and one wrong solution of the same problem.
        self.pairs = []
        for i, p in enumerate(problems):
            right = result.correct[i].astype(bool)
            if right.any() and not right.all():
                good = result.texts[i][int(np.argmax(right))]
                bad = result.texts[i][int(np.argmin(right))]
                self.pairs.append((p.prompt, good, bad))
        self.key_prompts, self.key_names, self.key_solutions = [], [], []
        for p in problems[: _size(KEY_PROBLEMS, 4)]:
            for name, text in robustness.master_keys(p).items():
                self.key_prompts.append(p.prompt)
                self.key_names.append(name)
                self.key_solutions.append(text)


def greedy_verdicts(config, params, tok, judge_prompts, parse, max_new_tokens: int) -> list:
    """The judge's greedy reply to each prompt, parsed (chunks of 100: one compile)."""
    import jax

    from rewardjax.judges import scoring

    out = []
    for start in range(0, len(judge_prompts), 100):
        chunk = judge_prompts[start : start + 100]
        chunk = chunk + [chunk[-1]] * (100 - len(chunk))
        rows = scoring.sample_verdicts(
            config,
            params,
            tok,
            chunk,
            parse=parse,
            rng=jax.random.key(0),
            num_samples=1,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
        )
        out += [r[0] for r in rows]
    return out[: len(judge_prompts)]


def pairwise_scores(judge_hf: str, data: EvalSet) -> dict[str, float]:
    """Both orders of each (correct, wrong) pair: right in both, position bias."""
    from rewardjax import models
    from rewardjax.judges import formats, scoring
    from rewardjax.tokenizers import CharTokenizer

    config, params = models.load_hf(judge_hf)
    tok = CharTokenizer()
    good_first = [formats.pairwise_prompt(q, g, b) for q, g, b in data.pairs]
    bad_first = [formats.pairwise_prompt(q, b, g) for q, g, b in data.pairs]
    first = greedy_verdicts(config, params, tok, good_first, formats.parse_pairwise, 8)
    second = greedy_verdicts(config, params, tok, bad_first, formats.parse_pairwise, 8)
    swap = scoring.swap_consistency(first, second)
    right = [u.ok and v.ok and u.value == "A" and v.value == "B" for u, v in zip(first, second)]
    return {
        "swap_accuracy": float(np.mean(right)),
        "position_bias": float(swap["position_bias"]),
        "first_slot_rate": float(swap["first_slot_rate"]),
        "pairs": float(len(data.pairs)),
        "pairs_with_failures": float(swap["pairs_with_failures"]),
    }


def stepwise_scores(judge_hf: str, data: EvalSet) -> dict[str, float]:
    """ProcessBench F1 of the judge's first wrong step on the policy's solutions."""
    from rewardjax import models
    from rewardjax.evaluation.rm_metrics import processbench_from_predictions
    from rewardjax.judges import formats
    from rewardjax.tokenizers import CharTokenizer

    config, params = models.load_hf(judge_hf)
    tok = CharTokenizer()
    prompts = [formats.stepwise_prompt(q, s) for q, s in zip(data.prompts, data.solutions)]
    verdicts = greedy_verdicts(config, params, tok, prompts, formats.parse_stepwise, 96)
    # A reply that does not parse names no step: -2 matches no label.
    predicted = np.array(
        [(-1 if v.first_error is None else v.first_error) if v.ok else -2 for v in verdicts]
    )
    out = processbench_from_predictions(predicted, data.first_errors)
    out["parse_failure_frac"] = float(np.mean([not v.ok for v in verdicts]))
    return out


def judge_scores(judge_hf: str, data: EvalSet) -> dict[str, float]:
    """Greedy verdict accuracy and P("Yes") AUROC on the policy's solutions; master-key FPR."""
    from rewardjax import models
    from rewardjax.evaluation.rm_metrics import auroc
    from rewardjax.judges import formats, scoring
    from rewardjax.tokenizers import CharTokenizer

    config, params = models.load_hf(judge_hf)
    tok = CharTokenizer()

    def verdicts(prompts, solutions):
        judge_prompts = [formats.pointwise_prompt(p, s) for p, s in zip(prompts, solutions)]
        out = greedy_verdicts(config, params, tok, judge_prompts, formats.parse_pointwise, 8)
        p = np.concatenate(
            [
                scoring.p_yes(config, params, tok, judge_prompts[s : s + 100])
                for s in range(0, len(judge_prompts), 100)
            ]
        )
        return out, p

    v, p = verdicts(data.prompts, data.solutions)
    said_yes = np.array([x.ok and x.value == "Yes" for x in v])
    said_no = np.array([x.ok and x.value == "No" for x in v])
    correct = np.where(data.labels, said_yes, said_no)
    keys, _ = verdicts(data.key_prompts, data.key_solutions)
    key_yes = np.array([x.ok and x.value == "Yes" for x in keys])
    return {
        "accuracy": float(correct.mean()),
        "p_yes_auroc": float(auroc(p, data.labels)),
        "parse_failure_frac": float(np.mean([not x.ok for x in v])),
        "master_key_fpr": float(key_yes.mean()),
        "label_positive_frac": float(data.labels.mean()),
    }


def judge_sft_config(policy_hf: str, seed: int, *, master_keys: float = 0.0, kind="pointwise"):
    from configs import judge_arithmetic

    c = judge_arithmetic.get_config(
        f"stage=sft,model_path={policy_hf},master_keys={master_keys},kind={kind}"
    )
    c = stages.schedule(c, _steps(JUDGE_SFT_STEPS), JUDGE_LR, seed)
    c.batch_size = JUDGE_BATCH
    c.optim.warmup_steps = min(30, c.steps // 4)
    c.eval.num_problems, c.eval.batch_prompts = _size(200, 8), min(100, _size(200, 8))
    return c


def rl_config(stage: str, model_hf: str, seed: int, steps: int, **extra):
    from configs import judge_arithmetic

    arg = ",".join(f"{k}={v}" for k, v in dict(stage=stage, model_path=model_hf, **extra).items())
    c = judge_arithmetic.get_config(arg)
    c.seed = seed
    c.steps = _steps(steps)
    c.optim.learning_rate = RL_LR
    c.checkpoint.every = 0
    c.log.every = 5
    c.log.samples_every = 0
    c.eval.num_problems = _size(200, 8)
    c.eval.num_samples = POLICY_EVAL_SAMPLES
    c.eval.batch_prompts = min(100, c.eval.num_problems)
    return c


def rl_stage(name: str, config, cpu: dict) -> dict:
    """Trains an RL config once (cached, exported to its hf/); held-out pass@k and judge cost."""
    from rewardjax.training import rl

    run_dir = os.path.join(_WORKDIR.value, name, "run")

    def run():
        trainer = rl.RLTrainer(config, run_dir)
        trainer.run()
        out = {k: float(v) for k, v in trainer.evaluate().items() if np.ndim(v) == 0}
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            rows = [r for r in map(json.loads, f) if "reward/mean" in r]
        seconds = [
            r["reward/generative_judge_reward/seconds"]
            for r in rows
            if "reward/generative_judge_reward/seconds" in r
        ]
        step_s = [r["time/step_s"] for r in rows if "time/step_s" in r]
        if seconds:
            out["judge_seconds_per_step"] = float(np.mean(seconds))
            out["step_seconds"] = float(np.mean(step_s))
        return out

    return stages.cached_stage(_WORKDIR.value, name, run, cpu)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if _FRESH.value:
        shutil.rmtree(_WORKDIR.value, ignore_errors=True)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    load_start = os.getloadavg()[0]
    cpu: dict[str, float] = {}
    seeds = [int(s) for s in _SEEDS.value]
    start = time.time()
    sft = stages.sft_start_config(_steps(SFT_STEPS), seed=0)
    sft.optim.warmup_steps = min(30, sft.steps // 4)
    sft_eval = stages.train_stage(_WORKDIR.value, "policy_sft", sft, cpu)
    policy_hf = os.path.join(_WORKDIR.value, "policy_sft", "hf")
    data = EvalSet(policy_hf)
    per_seed: dict[str, list] = {}

    def add(key, value):
        per_seed.setdefault(key, []).append(value)

    parts = [p.strip() for p in _PARTS.value if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise app.UsageError(f"--parts {','.join(unknown)}: known parts are {', '.join(PARTS)}")
    for seed in seeds:
        for kind, score in (("pairwise", pairwise_scores), ("stepwise", stepwise_scores)):
            if kind not in parts:
                continue
            stage = f"judge_{kind}_seed{seed}"
            stages.train_stage(
                _WORKDIR.value, stage, judge_sft_config(policy_hf, seed, kind=kind), cpu
            )
            result = stages.cached_stage(
                _WORKDIR.value,
                f"{stage}_scores",
                lambda stage=stage, score=score: score(
                    os.path.join(_WORKDIR.value, stage, "hf"), data
                ),
                cpu,
            )
            if kind == "pairwise":
                add("pairwise_swap_accuracy", result["swap_accuracy"])
                add("position_bias_rate", result["position_bias"])
            else:
                add("stepwise_processbench_f1", result["f1"])
                add("stepwise_parse_failure_frac", result["parse_failure_frac"])
        if "pointwise" not in parts:
            continue
        scores = {}
        for name, keys in (("judge_sft", 0.0), ("judge_sft_aug", MASTER_KEY_FRACTION)):
            stage = f"{name}_seed{seed}"
            stages.train_stage(
                _WORKDIR.value, stage, judge_sft_config(policy_hf, seed, master_keys=keys), cpu
            )
            scores[name] = stages.cached_stage(
                _WORKDIR.value,
                f"{stage}_scores",
                lambda stage=stage: judge_scores(os.path.join(_WORKDIR.value, stage, "hf"), data),
                cpu,
            )
        judge_sft_hf = os.path.join(_WORKDIR.value, f"judge_sft_seed{seed}", "hf")
        rl_stage(f"judge_grpo_seed{seed}", rl_config("rl", judge_sft_hf, seed, JUDGE_RL_STEPS), cpu)
        grpo_hf = os.path.join(_WORKDIR.value, f"judge_grpo_seed{seed}", "run", "hf")
        scores["judge_grpo"] = stages.cached_stage(
            _WORKDIR.value,
            f"judge_grpo_seed{seed}_scores",
            lambda grpo_hf=grpo_hf: judge_scores(grpo_hf, data),
            cpu,
        )
        policy = rl_stage(
            f"policy_judged_seed{seed}",
            rl_config("policy", policy_hf, seed, POLICY_RL_STEPS, judge_path=grpo_hf),
            cpu,
        )
        add("pointwise_accuracy_sft", scores["judge_sft"]["accuracy"])
        add("pointwise_accuracy_grpo", scores["judge_grpo"]["accuracy"])
        add(
            "pointwise_accuracy_grpo_minus_sft",
            scores["judge_grpo"]["accuracy"] - scores["judge_sft"]["accuracy"],
        )
        add("p_yes_auroc_sft", scores["judge_sft"]["p_yes_auroc"])
        add("p_yes_auroc", scores["judge_grpo"]["p_yes_auroc"])
        add("master_key_fpr_before", scores["judge_sft"]["master_key_fpr"])
        add("master_key_fpr_after", scores["judge_sft_aug"]["master_key_fpr"])
        add("pointwise_accuracy_sft_aug", scores["judge_sft_aug"]["accuracy"])
        add("policy_pass_at_1_with_judge_reward", policy["pass@1"])
        add("policy_pass_at_1_gain_with_judge_reward", policy["pass@1"] - sft_eval["pass@1"])
        add("judge_seconds_per_rl_step", policy.get("judge_seconds_per_step", float("nan")))
        add("rl_step_seconds", policy.get("step_seconds", float("nan")))
    result = {
        "bench": "generative_rm",
        "seeds": seeds,
        "scale": _SCALE.value,
        "policy_sft_pass_at_1": sft_eval["pass@1"],
        "eval_solutions": len(data.labels),
        "eval_solutions_correct_frac": float(data.labels.mean()),
        **stages.seed_aggregate(per_seed),
        "eval_pairs": len(data.pairs),
        "eval_solutions_with_error_frac": float(np.mean(data.first_errors >= 0)),
        "parts": parts,
        "targets": {},
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "wall_s": round(time.time() - start, 1),
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg()[0],
    }
    for key, bar in TARGETS.items():
        if key in result:
            met = result[key] <= bar if key.startswith("master_key") else result[key] >= bar
            result["targets"][key] = bool(met)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
