r"""Process supervision: automatic step labels against exact ones, and PRMs trained on them.

  python -m benchmarks.process_supervision --workdir /tmp/bench_ps --seeds 0,1,2
  python -m benchmarks.process_supervision --workdir /tmp/ps_smoke --scale 0.1 --seeds 0

Scale (arithmetic_chain, num_steps=3, operands 1..9, whose grader labels every
step exactly; the SFT start of benchmarks/reward_models.py: the `tiny` preset
with four layers, 600 steps, 30% of demonstrations with a wrong step). The
SFT policy both writes the solutions (temperature 1, 48 new tokens) and rolls
out from their step prefixes (Math-Shepherd's setting). Solutions with fewer
than two steps, an empty step, lines after the answer (no exact label for
them), no answer line after right steps (the exact labels call them
error-free while the outcome, MC's last value, is wrong) or more than the
PRM's encoding holds are left out and counted (`skipped`).
--scale multiplies every size and step count below (0.1: a smoke run);
finished stages (eval.json in their directory) are reused by a rerun, the
labelling timings included (delete labels_throughput/ to retime).

Parts (--parts, default all three):
  labels  200 held-out (test split) problems × 4 solutions, sampled once
          (seed 0); per seed (the rollout PRNG key): Monte Carlo prefix
          values at K = 4, 8, 16 scored against the exact labels by
          first-error accuracy and step-label F1 (positive class: a wrong
          step), hard (1[any rollout correct]; first error = first value 0)
          and soft (the value, thresholded at 0.5; first error = first value
          below 0.5); with the prm part, hard labels at a threshold τ tuned
          on that part's train-split solutions (first error = first value
          ≤ τ; `labeling.tune_threshold`), scored on these held-out ones;
          and OmegaPRM-style binary search at K = 8 on the same
          solutions: its rollouts over Math-Shepherd's at K = 8 and its
          first-error accuracy beside MC's. Throughput, once: 64 prefixes ×
          K = 8 labelled (sampled, decoded, graded) by one batched
          `Completer.continuations` call against one `sampling.generate` per
          prefix (a completer of batch_prefixes=1), both compiled first,
          interleaved, 3 repeats, medians, load on record (benchmarks/method.py).
  prm     per seed: 500 train-split problems × 4 solutions from the SFT
          policy, labelled by MC at K = 8 (soft). PRMs from the SFT start
          (configs/prm_arithmetic.py with data.train_path, 800 steps, lr
          5e-4, batch 32; 800 rather than reward_models' 2,000 to keep the
          part near 30 CPU minutes for three seeds), evaluated like
          reward_models' PRM: ProcessBench F1 at τ = 0.5 on 500 held-out
          (test split) exact-labelled solutions the task generates (half with
          an injected error; not the policy's own solutions). Arms, on the
          same solutions and steps: MC labels; consensus-filtered MC labels;
          the task's exact labels. The consensus labeller is 2-fold
          cross-fitted: the solutions are split by problem into halves, a PRM
          trained on each half's MC labels (400 steps: the same epochs)
          scores the other half, and a solution is kept where that PRM's
          first error (first step below 0.5) is MC's first error (first
          value 0), as `labeling.run.label_run` filters. Generated arms: the
          PRM trainer's own training solutions (16,384 train-split
          demonstrations, half with an injected error: the distribution of
          the held-out set) labelled by MC at K = 8, soft and hard at the
          tuned τ, against their exact labels (reward_models' PRM
          configuration: same solutions, steps and seeds), 2,000 steps each.
  rl      per seed, seven RL arms from the SFT start, 150 steps of 16 prompts
          × 8 samples (lr 2e-4), scored by held-out pass@1 (200 test-split
          problems × 8 samples): outcome-only GRPO and PRIME online
          (configs/rl_variants.py algo=prime: the implicit PRM trained on
          every step's rollouts), with ψ at the policy's learning rate and at
          a tenth of it; PAV progress rewards under the frozen SFT
          prover (K = 2 rollouts per prefix) with the outcome, and its
          control, the same REINFORCE++ estimator with the outcome alone;
          sum-form and min-form credit of the PRM trained on this seed's MC
          labels (the prm part), with its hacking signals (steps per
          solution, step length, PRM total on correct vs incorrect rows, at
          the first and last tenth of training). Gains are paired by seed.

Targets: MC first-error accuracy ≥ 0.90 at K = 8 (hard, τ = 0 and tuned τ); OmegaPRM rollouts ≤
0.5 × Math-Shepherd's at K = 8, counted only with its first-error accuracy
within 2 points of MC's; labelling ≥ 3× faster batched than one call per
prefix; PRM on MC labels ProcessBench F1 ≥ 0.75, on policy solutions and on
generated ones (the PRM on exact generated labels, reward_models at 2,000
steps: 0.935).

Prints a JSON line last: per-seed metrics as mean, `<key>_ci95` (rliable 95%
bootstrap over seeds, as experiments/sweep.py) and `<key>_per_seed`;
mc_first_error_accuracy_k{4,8,16} (hard) and _soft_k*, mc_step_f1_k* and
_soft_k*, omega_first_error_accuracy, omega_rollout_ratio,
omega_accuracy_gap (MC K = 8 hard minus OmegaPRM), prm_mc_processbench_f1,
prm_consensus_processbench_f1, prm_exact_processbench_f1,
consensus_kept_fraction, prm_mc_generated_processbench_f1,
prm_exact_generated_processbench_f1, generated_mc_first_error_accuracy,
mc_threshold_k8, mc_first_error_accuracy_tuned_k8; prime_pass_at_1_gain_vs_outcome,
pav_pass_at_1_gain_vs_outcome, minform_minus_sumform_pass_at_1 and each arm's
rl_<arm>_pass_at_1; labeling_speedup_vs_naive with the load averages;
`targets` (each target, met or not) and CPU seconds per stage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import method  # the shared measuring method, beside this script
import stages  # the shared SFT start and cached stages

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/rewardjax_bench_process_supervision", "Run dir.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: rollout keys and PRM trainings.")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies steps and sizes (0.1 for a smoke run).")
_PARTS = flags.DEFINE_list("parts", ["labels", "prm", "rl"], "Parts to run: labels, prm, rl.")
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Delete the workdir first (else finished stages, with eval.json, are reused)."
)

PARTS = ("labels", "prm", "rl")
TASK = dict(num_steps=3, max_operand=9)
SEPARATOR = "\n"
MAX_NEW_TOKENS = 48  # solver and completer alike
SFT_SEED = 0
SOLUTION_SEED = 0  # the labels part's held-out solutions: one set for every seed
KS = (4, 8, 16)
OMEGA_K = 8
LABEL_PROBLEMS, TRAIN_PROBLEMS, SAMPLES_PER_PROBLEM = 200, 500, 4
THROUGHPUT_PREFIXES, THROUGHPUT_REPEATS = 64, 3
# 800 steps (batch 32, ~14 epochs of ~1,800 solutions) keeps the prm part near 30
# CPU minutes for three seeds; the cross-fitted labellers take half, the same
# epochs over their half of the solutions.
PRM_STEPS, FOLD_PRM_STEPS, PRM_LR = 800, 400, 5e-4
# The generated arms: the PRM trainer's own data at reward_models' scale (16,384
# solutions, 2,000 steps: the exact arm has reward_models' PRM configuration).
GEN_SOLUTIONS, GEN_ERROR_RATE, GEN_PRM_STEPS = 16384, 0.5, 2000
NUM_EVAL = 500
TARGETS = dict(
    mc_first_error_accuracy_k8=0.90,
    omega_rollout_ratio=0.5,
    omega_accuracy_gap=0.02,
    labeling_speedup_vs_naive=3.0,
    prm_mc_processbench_f1=0.75,
)


def _size(n: int, least: int = 8) -> int:
    return max(round(n * _SCALE.value), least)


@dataclasses.dataclass
class Rows:
    """Usable sampled solutions with their exact labels.

    Attributes:
      problems: [N] task problems; indices: [N] their index in the split.
      steps: [N] step lists (S_i >= 2).
      exact: [N] exact 0/1 labels [S_i]; exact_first: [N] first error (−1: none).
    """

    problems: list
    indices: list[int]
    steps: list[list[str]]
    exact: list[list[float]]
    exact_first: list[int]

    def num_steps(self) -> list[int]:
        return [len(s) for s in self.steps]

    def select(self, keep) -> Rows:
        idx = [i for i, k in enumerate(keep) if k]
        return Rows(*([getattr(self, f.name)[i] for i in idx] for f in dataclasses.fields(self)))


class Setup:
    """The task, tokenizer and SFT policy every part samples and rolls out with."""

    def __init__(self, sft_hf: str):
        from rewardjax import models
        from rewardjax.data.tasks import make_task
        from rewardjax.labeling import Completer
        from rewardjax.tokenizers import load_tokenizer

        self.sft_hf = sft_hf
        self.task = make_task("arithmetic_chain", **TASK)
        self.tokenizer = load_tokenizer("char")
        self.config, self.params = models.load_hf(sft_hf, heads=("lm",))
        self.completer = Completer(
            self.config,
            self.params,
            self.tokenizer,
            max_new_tokens=MAX_NEW_TOKENS,
            batch_prefixes=64,
        )

    def grade(self, problem, text: str) -> bool:
        return self.task.grade(problem, text).correct

    def mc_values(self, rows: Rows, rng):
        """Math-Shepherd prefix values of `rows` at K = OMEGA_K under the SFT completer."""
        from rewardjax import labeling

        return labeling.monte_carlo_values(
            self.completer,
            rows.problems,
            rows.steps,
            k=OMEGA_K,
            grade=self.grade,
            rng=rng,
            separator=SEPARATOR,
        )

    def problems(self, indices, split: str, seed: int) -> list:
        return [self.task.problem(i, split=split, seed=seed) for i in indices]

    def sample(self, indices, *, split: str, problem_seed: int, rng) -> tuple[Rows, dict]:
        """SAMPLES_PER_PROBLEM solutions per problem; the usable ones, and skip counts by reason."""
        from configs import common
        from rewardjax.data.steps import split_steps
        from rewardjax.data.tokenize import encode_steps
        from rewardjax.labeling.run import exact_labels
        from rewardjax.training.rollout import sample_and_grade

        problems = self.problems(indices, split, problem_seed)
        sampled = sample_and_grade(
            self.config,
            self.params,
            self.tokenizer,
            self.task,
            problems,
            rng=rng,
            n=SAMPLES_PER_PROBLEM,
            max_new_tokens=MAX_NEW_TOKENS,
            batch_prompts=100,
        )
        data = common.offline_base("prm").data  # the PRM trainer's encoding limits
        rows = Rows([], [], [], [], [])
        skipped: dict[str, int] = {}
        for index, p, texts in zip(indices, problems, sampled.texts):
            for text in texts:
                steps = split_steps(text, SEPARATOR)
                reason = None
                if len(steps) < 2:  # one step carries no process information
                    reason = "single_step"
                elif any(not s.strip() for s in steps):
                    reason = "empty_step"
                elif (exact := exact_labels(self.task, p, steps, SEPARATOR)) is None:
                    # Lines after the answer, or incomplete (see exact_labels).
                    reason = "no_exact_labels"
                else:
                    try:
                        encode_steps(
                            self.tokenizer,
                            [p.prompt],
                            [steps],
                            max_prompt_len=data.prompt_length,
                            max_completion_len=data.completion_length,
                            max_steps=data.max_steps,
                            separator=SEPARATOR,
                        )
                    except ValueError:
                        reason = "too_long_for_prm"
                if reason:
                    skipped[reason] = skipped.get(reason, 0) + 1
                    continue
                rows.problems.append(p)
                rows.indices.append(index)
                rows.steps.append(steps)
                rows.exact.append(exact[0])
                rows.exact_first.append(exact[1])
        summary = dict(
            sampled=len(problems) * SAMPLES_PER_PROBLEM,
            usable=len(rows.steps),
            skipped=skipped,
            sampled_pass_at_1=float(np.mean(sampled.correct)),
            usable_with_error=float(np.mean([f >= 0 for f in rows.exact_first]))
            if rows.steps
            else 0.0,
        )
        return rows, summary


def _key(*path: int):
    import jax

    key = jax.random.key(path[0])
    for x in path[1:]:
        key = jax.random.fold_in(key, x)
    return key


def _scores(predicted_first, predicted_labels, rows: Rows) -> dict[str, float]:
    from rewardjax import labeling

    return dict(
        first_error_accuracy=labeling.first_error_accuracy(
            predicted_first, rows.exact_first, rows.num_steps()
        ),
        step_f1=labeling.step_label_f1(predicted_labels, rows.exact)["f1"],
    )


# ---- part 1: labels -------------------------------------------------------------------


def _label_solutions(setup: Setup, cpu: dict) -> tuple[Rows, dict]:
    """The held-out solutions every seed labels (sampled once, kept in the workdir), and counts."""

    def run():
        rows, summary = setup.sample(
            range(_size(LABEL_PROBLEMS)),
            split="test",
            problem_seed=SOLUTION_SEED,
            rng=_key(SOLUTION_SEED, 0),
        )
        return dict(summary, indices=rows.indices, steps=rows.steps)

    result = stages.cached_stage(_WORKDIR.value, "labels_solutions", run, cpu)
    rows = _rows_of(setup, result, split="test", problem_seed=SOLUTION_SEED)
    return rows, {k: v for k, v in result.items() if k not in ("indices", "steps")}


def _rows_of(setup: Setup, result: dict, *, split: str, problem_seed: int) -> Rows:
    """Rows rebuilt from stored (problem index, steps) pairs: the problems are deterministic."""
    from rewardjax.labeling.run import exact_labels

    problems = setup.problems(result["indices"], split, problem_seed)
    exact = [exact_labels(setup.task, p, s, SEPARATOR) for p, s in zip(problems, result["steps"])]
    return Rows(
        problems,
        list(result["indices"]),
        [list(s) for s in result["steps"]],
        [e[0] for e in exact],
        [e[1] for e in exact],
    )


def _label_seed(setup: Setup, rows: Rows, seed: int, cpu: dict) -> dict:
    """MC labels at each K and first-error search at OMEGA_K, scored against the exact labels."""
    from rewardjax import labeling

    def run():
        out: dict = {}
        common = dict(grade=setup.grade, separator=SEPARATOR)
        for k in KS:
            values = labeling.monte_carlo_values(
                setup.completer, rows.problems, rows.steps, k=k, rng=_key(seed, 1, k), **common
            )
            soft = values.labels("soft")
            hard = _scores(values.first_errors(), values.labels("hard"), rows)
            soft_scores = _scores(labeling.prm_first_errors(soft, threshold=0.5), soft, rows)
            out[f"mc_first_error_accuracy_k{k}"] = hard["first_error_accuracy"]
            out[f"mc_first_error_accuracy_soft_k{k}"] = soft_scores["first_error_accuracy"]
            out[f"mc_step_f1_k{k}"] = hard["step_f1"]
            out[f"mc_step_f1_soft_k{k}"] = soft_scores["step_f1"]
            out[f"mc_rollouts_k{k}"] = values.rollouts
            if k == OMEGA_K:  # for the tuned threshold (_tuned_threshold)
                out[f"mc_values_k{k}"] = _values_json(values)
        found = labeling.first_error_search(
            setup.completer, rows.problems, rows.steps, k=OMEGA_K, rng=_key(seed, 2), **common
        )
        omega = _scores(found.first_errors, found.labels(), rows)
        out["omega_first_error_accuracy"] = omega["first_error_accuracy"]
        out["omega_step_f1"] = omega["step_f1"]
        out["omega_rollouts"] = found.rollouts
        out["omega_rounds"] = found.rounds
        out["omega_rollout_ratio"] = found.rollouts / max(out[f"mc_rollouts_k{OMEGA_K}"], 1)
        out["omega_accuracy_gap"] = (
            out[f"mc_first_error_accuracy_k{OMEGA_K}"] - out["omega_first_error_accuracy"]
        )
        return out

    return stages.cached_stage(_WORKDIR.value, f"labels_seed{seed}", run, cpu)


def _values_json(values) -> list:
    return [None if v is None else [float(x) for x in v] for v in values.values]


def _values_of(stored: list) -> list:
    return [None if v is None else np.asarray(v, float) for v in stored]


def _train_threshold(setup: Setup, seed: int, cpu: dict) -> tuple[float, float]:
    """(τ, its first-error accuracy) tuned on this seed's train-split policy solutions at K = 8."""
    from rewardjax import labeling

    _, train, _, _, train_values = _prm_labels(setup, seed, cpu)
    return labeling.tune_threshold(train_values, train.exact_first, k=OMEGA_K)


def _tuned_threshold(setup: Setup, held: Rows, seed: int, cpu: dict) -> dict:
    """MC first errors at K = OMEGA_K with τ tuned on this seed's train-split solutions.

    τ (first error: the first prefix value ≤ τ; Math-Shepherd's hard rule is
    τ = 0) maximises first-error accuracy against the exact labels of the prm
    part's train-split solutions, then labels the held-out solutions of the
    labels part: no held-out label chooses it.
    """
    from rewardjax import labeling

    tau, train_accuracy = _train_threshold(setup, seed, cpu)
    values = _values_of(_label_seed(setup, held, seed, cpu)[f"mc_values_k{OMEGA_K}"])
    first = [None if v is None else labeling.first_error_of_values(v, tau) for v in values]
    labels = [None if v is None else labeling.hard_labels(v, tau) for v in values]
    scores = _scores(first, labels, held)
    return {
        f"mc_threshold_k{OMEGA_K}": tau,
        f"mc_threshold_train_accuracy_k{OMEGA_K}": train_accuracy,
        f"mc_first_error_accuracy_tuned_k{OMEGA_K}": scores["first_error_accuracy"],
        f"mc_step_f1_tuned_k{OMEGA_K}": scores["step_f1"],
    }


def _throughput(setup: Setup, rows: Rows, seed: int, cpu: dict) -> dict:
    """Prefixes labelled per second: one batched call for all vs one sampler call per prefix."""
    from rewardjax import labeling

    jobs = [(i, s) for i, steps in enumerate(rows.steps) for s in range(len(steps) - 1)]
    jobs = jobs[: _size(THROUGHPUT_PREFIXES)]
    prompts = [rows.problems[i] for i, _ in jobs]
    prefixes = [labeling.prefix_text(rows.steps[i], s, SEPARATOR) for i, s in jobs]
    batched = dataclasses.replace(setup.completer, batch_prefixes=len(jobs))
    naive = dataclasses.replace(setup.completer, batch_prefixes=1)  # one generate(n=K) per prefix

    def side(completer):
        def label() -> float:
            start = time.perf_counter()
            texts = completer.continuations(
                prompts, k=OMEGA_K, rng=_key(seed, 3), prefixes=prefixes
            )
            for (i, _), head, continuations in zip(jobs, prefixes, texts):
                for c in continuations:
                    setup.grade(rows.problems[i], head + c)
            return time.perf_counter() - start

        return label

    def run():
        sides = {"batched": side(batched), "naive": side(naive)}
        for label in sides.values():  # compile every shape first
            label()
        start = method.machine_load()
        samples = method.interleave(sides, repeats=THROUGHPUT_REPEATS)
        line = method.report(
            "process_supervision_labeling",
            samples,
            start=start,
            ratio=("naive", "batched"),
            ratio_key="labeling_speedup_vs_naive",
            prefixes=len(jobs),
            k=OMEGA_K,
        )
        for name in sides:
            line[f"{name}_prefixes_per_s"] = len(jobs) / line[f"{name}_s_median"]
        return line

    return stages.cached_stage(_WORKDIR.value, "labels_throughput", run, cpu)


# ---- part 2: PRMs on automatic labels ---------------------------------------------------


def _prm_config(sft_hf: str, train_path: str, seed: int, steps: int = PRM_STEPS):
    from configs import prm_arithmetic

    c = prm_arithmetic.get_config(f"model_path={sft_hf}")
    c = stages.schedule(c, stages.scaled_steps(steps, _SCALE.value), PRM_LR, seed)
    c.data.train_path = train_path
    c.data.num_test = NUM_EVAL
    c.eval.num_records = NUM_EVAL
    return c


def _write_records(path: str, rows: Rows, labels, first_errors) -> int:
    from rewardjax import labeling
    from rewardjax.data.formats import write_jsonl

    records = labeling.step_labels(
        rows.problems,
        rows.steps,
        labels,
        first_errors,
        fields=[dict(uid=p.uid, index=i) for p, i in zip(rows.problems, rows.indices)],
    )
    return write_jsonl(path, records)


def _prm_labels(setup: Setup, seed: int, cpu: dict) -> tuple[str, Rows, list, dict, list]:
    """Train-split solutions of this seed with MC K = 8 soft labels and exact labels, as JSONL.

    Writes mc.jsonl, exact.jsonl and fold_{a,b}.jsonl (MC labels of each half).
    """

    name = f"prm_labels_seed{seed}"
    stage_dir = os.path.join(_WORKDIR.value, name)

    def run():
        rows, summary = setup.sample(
            range(_size(TRAIN_PROBLEMS)), split="train", problem_seed=seed, rng=_key(seed, 4)
        )
        values = setup.mc_values(rows, _key(seed, 5))
        soft, first = values.labels("soft"), values.first_errors()
        _write_records(os.path.join(stage_dir, "mc.jsonl"), rows, soft, first)
        exact_first = [None if f < 0 else f for f in rows.exact_first]
        _write_records(os.path.join(stage_dir, "exact.jsonl"), rows, rows.exact, exact_first)
        for fold in "ab":
            keep = _fold_mask(rows, fold)
            _write_records(
                os.path.join(stage_dir, f"fold_{fold}.jsonl"),
                rows.select(keep),
                [x for x, k in zip(soft, keep) if k],
                [x for x, k in zip(first, keep) if k],
            )
        return dict(
            summary,
            indices=rows.indices,
            steps=rows.steps,
            mc_first_errors=first,
            mc_first_error_accuracy=_scores(first, values.labels("hard"), rows)[
                "first_error_accuracy"
            ],
            mc_values=_values_json(values),
            rollouts=values.rollouts,
        )

    result = stages.cached_stage(_WORKDIR.value, name, run, cpu)
    rows = _rows_of(setup, result, split="train", problem_seed=seed)
    values = _values_of(result["mc_values"])
    return stage_dir, rows, result["mc_first_errors"], result["skipped"], values


def _generated_labels(setup: Setup, seed: int, cpu: dict) -> tuple[str, dict]:
    """The PRM trainer's own generated train solutions (GEN_SOLUTIONS, half with an injected
    error: the distribution of the held-out set), labelled by MC at K = OMEGA_K (soft).

    Writes mc_generated.jsonl (MC labels) and exact_generated.jsonl (the task's).
    """
    from rewardjax import labeling
    from rewardjax.data import generators

    name = f"prm_generated_labels_seed{seed}"
    stage_dir = os.path.join(_WORKDIR.value, name)

    def run():
        n = _size(GEN_SOLUTIONS)
        records = generators.step_labels(
            setup.task, num=n, error_rate=GEN_ERROR_RATE, split="train", seed=seed
        )
        rows = Rows(
            setup.problems(range(n), "train", seed),
            list(range(n)),
            [list(r.steps) for r in records],
            [list(r.labels) for r in records],
            [labeling.normalise_first_error(r.first_error, len(r.steps)) for r in records],
        )
        values = setup.mc_values(rows, _key(seed, 6))
        first = values.first_errors()
        _write_records(
            os.path.join(stage_dir, "mc_generated.jsonl"), rows, values.labels("soft"), first
        )
        exact_first = [None if f < 0 else f for f in rows.exact_first]
        _write_records(
            os.path.join(stage_dir, "exact_generated.jsonl"), rows, rows.exact, exact_first
        )
        return dict(
            solutions=n,
            with_error=float(np.mean([f >= 0 for f in rows.exact_first])),
            generated_mc_first_error_accuracy=_scores(first, values.labels("hard"), rows)[
                "first_error_accuracy"
            ],
            rollouts=values.rollouts,
        )

    return stage_dir, stages.cached_stage(_WORKDIR.value, name, run, cpu)


def _generated_hard_labels(setup: Setup, seed: int, generated_dir: str, cpu: dict) -> str:
    """The generated solutions' MC values as hard labels at the tuned τ (1[value > τ]).

    τ is tuned on this seed's policy solutions and their exact labels (as
    `_tuned_threshold`): a small exactly labelled set sets the rule that labels
    the large unlabelled one. Writes mc_generated_hard.jsonl; returns its path.
    """
    from rewardjax import labeling
    from rewardjax.data.formats import StepLabels, read_jsonl, write_jsonl

    name = f"prm_generated_hard_labels_seed{seed}"
    path = os.path.join(_WORKDIR.value, name, "mc_generated_hard.jsonl")

    def run():
        tau, _ = _train_threshold(setup, seed, cpu)
        records = read_jsonl(os.path.join(generated_dir, "mc_generated.jsonl"), StepLabels)
        hard = []
        for r in records:
            values = np.asarray(r.labels)  # the soft labels: the prefix values
            hard.append(
                dataclasses.replace(
                    r,
                    labels=labeling.hard_labels(values, tau),
                    first_error=labeling.first_error_of_values(values, tau),
                )
            )
        return dict(threshold=tau, written=write_jsonl(path, hard))

    stages.cached_stage(_WORKDIR.value, name, run, cpu)
    return path


def _fold_mask(rows: Rows, fold: str) -> list[bool]:
    """Half a of the solutions: those of even problem indices (a problem's samples stay together)."""
    return [(i % 2 == 0) == (fold == "a") for i in rows.indices]


def _consensus(setup, seed, labels_dir, rows: Rows, mc_first, cpu) -> dict:
    """2-fold cross-fitted consensus: each half judged by the PRM trained on the other half."""
    from rewardjax import labeling
    from rewardjax.data.formats import read_jsonl
    from rewardjax.scoring.models import ProcessRewardModel

    folds = {}
    for fold in "ab":
        path = os.path.join(labels_dir, f"fold_{fold}.jsonl")
        folds[fold] = stages.train_stage(
            _WORKDIR.value,
            f"prm_fold_{fold}_seed{seed}",
            _prm_config(setup.sft_hf, path, seed, FOLD_PRM_STEPS),
            cpu,
        )
    name = f"prm_consensus_labels_seed{seed}"

    def run():
        prm_first: list = [None] * len(rows.steps)
        for judge, judged in (("a", "b"), ("b", "a")):
            prm = ProcessRewardModel.load(
                os.path.join(_WORKDIR.value, f"prm_fold_{judge}_seed{seed}", "hf"),
                tokenizer=setup.tokenizer,
                separator=SEPARATOR,
            )
            idx = [i for i, k in enumerate(_fold_mask(rows, judged)) if k]
            scores = prm.step_scores(
                [rows.problems[i].prompt for i in idx], [rows.steps[i] for i in idx]
            )
            for i, f in zip(idx, labeling.prm_first_errors(scores, threshold=0.5)):
                prm_first[i] = f
        keep = labeling.consensus_mask(mc_first, prm_first, rows.num_steps())
        kept = rows.select(keep)
        labels = [r.labels for r in read_jsonl(os.path.join(labels_dir, "mc.jsonl"), "step_labels")]
        written = 0
        if keep.any():
            written = _write_records(
                os.path.join(_WORKDIR.value, name, "consensus.jsonl"),
                kept,
                [x for x, k in zip(labels, keep) if k],
                [x for x, k in zip(mc_first, keep) if k],
            )
        accuracy = labeling.first_error_accuracy
        return dict(
            consensus_kept_fraction=float(keep.mean()),
            written=written,
            # Do the kept rows' MC labels agree with the exact ones more often than all rows'?
            train_mc_first_error_accuracy=accuracy(mc_first, rows.exact_first, rows.num_steps()),
            consensus_kept_mc_first_error_accuracy=accuracy(
                [x for x, k in zip(mc_first, keep) if k], kept.exact_first, kept.num_steps()
            )
            if written
            else None,
            prm_fold_first_error_accuracy=accuracy(prm_first, rows.exact_first, rows.num_steps()),
            prm_fold_processbench_f1=float(np.mean([f["processbench_f1"] for f in folds.values()])),
        )

    return stages.cached_stage(_WORKDIR.value, name, run, cpu)


def _prm_seed(setup: Setup, seed: int, cpu: dict) -> dict:
    labels_dir, rows, mc_first, skipped, _ = _prm_labels(setup, seed, cpu)
    consensus = _consensus(setup, seed, labels_dir, rows, mc_first, cpu)
    generated_dir, generated = _generated_labels(setup, seed, cpu)
    out = dict(consensus)
    out["generated_mc_first_error_accuracy"] = generated["generated_mc_first_error_accuracy"]
    for arm in ("mc_generated", "exact_generated"):
        result = stages.train_stage(
            _WORKDIR.value,
            f"prm_{arm}_seed{seed}",
            _prm_config(
                setup.sft_hf, os.path.join(generated_dir, f"{arm}.jsonl"), seed, GEN_PRM_STEPS
            ),
            cpu,
        )
        out[f"prm_{arm}_processbench_f1"] = result["processbench_f1"]
        out[f"prm_{arm}_step_auroc"] = result.get("step_auroc")
    arms = {
        "mc": os.path.join(labels_dir, "mc.jsonl"),
        "consensus": os.path.join(
            _WORKDIR.value, f"prm_consensus_labels_seed{seed}", "consensus.jsonl"
        )
        if consensus["written"]
        else None,
        "exact": os.path.join(labels_dir, "exact.jsonl"),
    }
    for arm, path in arms.items():
        if path is None:  # consensus kept nothing (a smoke run's policy)
            out[f"prm_{arm}_processbench_f1"] = out[f"prm_{arm}_step_auroc"] = None
            continue
        result = stages.train_stage(
            _WORKDIR.value, f"prm_{arm}_seed{seed}", _prm_config(setup.sft_hf, path, seed), cpu
        )
        out[f"prm_{arm}_processbench_f1"] = result["processbench_f1"]
        out[f"prm_{arm}_step_auroc"] = result.get("step_auroc")
    # Last, so a rerun of an earlier workdir trains only this arm.
    result = stages.train_stage(
        _WORKDIR.value,
        f"prm_mc_generated_hard_seed{seed}",
        _prm_config(
            setup.sft_hf,
            _generated_hard_labels(setup, seed, generated_dir, cpu),
            seed,
            GEN_PRM_STEPS,
        ),
        cpu,
    )
    out["prm_mc_generated_hard_processbench_f1"] = result["processbench_f1"]
    out["prm_mc_generated_hard_step_auroc"] = result.get("step_auroc")
    out["prm_train_solutions"] = len(rows.steps)
    out["prm_train_skipped"] = skipped
    return out


# ---- part 3: RL arms ------------------------------------------------------------------

RL_STEPS = 150  # × scale; 16 prompts × 8 samples per step, lr 2e-4 (configs/grpo_arithmetic.py)
RL_EVAL_PROBLEMS = 200  # held-out (test split) problems × RL_EVAL_SAMPLES, temperature 1
RL_EVAL_SAMPLES = 8
PAV_K = 2  # prover rollouts per prefix: PAV's cost grows with it
# Every arm samples the same rollouts per step from the same SFT start.
RL_ARMS = (
    "outcome",
    "prime",
    "outcome_reinforce_pp",
    "pav",
    "sum_form",
    "min_form",
    "prime_slow_psi",
)
# PRIME's implicit PRM at a tenth of the policy's learning rate (prime.learning_rate):
# at the policy's own rate ψ drifted onto completions it never saw (see BENCHMARKS.md).
PRIME_SLOW_PSI_LR = 2e-5
# Gain key → (arm, the arm it is compared with, paired by seed).
RL_GAINS = {
    "prime_pass_at_1_gain_vs_outcome": ("prime", "outcome"),
    "prime_slow_psi_pass_at_1_gain_vs_outcome": ("prime_slow_psi", "outcome"),
    "pav_pass_at_1_gain_vs_outcome": ("pav", "outcome_reinforce_pp"),
    "minform_minus_sumform_pass_at_1": ("min_form", "sum_form"),
}
# Reward-hacking signals of the PRM-credit arms (reward/prm_reward/<key> over training).
HACKING = ("steps_per_solution", "step_chars_mean", "total_correct_mean", "total_incorrect_mean")


def _rl_config(arm: str, sft_hf: str, prm_hf: str, seed: int):
    """One arm: GRPO (outcome), PRIME online, PAV or its REINFORCE++ control, PRM credit."""
    from configs import grpo_arithmetic, grpo_arithmetic_pav, grpo_arithmetic_prm, rl_variants

    if arm == "outcome":
        c = grpo_arithmetic.get_config(f"model_path={sft_hf}")
    elif arm in ("prime", "prime_slow_psi"):
        c = rl_variants.get_config(f"algo=prime,model_path={sft_hf}")
        if arm == "prime_slow_psi":
            c.prime.learning_rate = PRIME_SLOW_PSI_LR
    elif arm in ("pav", "outcome_reinforce_pp"):
        c = grpo_arithmetic_pav.get_config(f"model_path={sft_hf},k={PAV_K}")
        if arm == "outcome_reinforce_pp":  # PAV's estimator, the progress source dropped
            del c.rewards.sources["pav_progress_reward"]
    elif arm in ("sum_form", "min_form"):
        # The PRM trained on this seed's Monte Carlo labels (the prm part).
        c = grpo_arithmetic_prm.get_config(f"model_path={sft_hf},prm_path={prm_hf},credit={arm}")
    else:
        raise ValueError(f"unknown RL arm {arm!r}")
    c.seed = seed
    c.steps = stages.scaled_steps(RL_STEPS, _SCALE.value)
    c.optim.learning_rate = 2e-4
    c.checkpoint.every = 0
    c.export_hf = False
    c.log.every = 5
    c.log.samples_every = 0
    c.eval.num_problems = _size(RL_EVAL_PROBLEMS)
    c.eval.num_samples = RL_EVAL_SAMPLES
    c.eval.batch_prompts = min(100, c.eval.num_problems)
    return c


def _rl_stage(name: str, config, cpu: dict) -> dict:
    """Trains one arm once (cached); held-out pass@k, and the hacking signals of its run."""
    from rewardjax.training import rl

    run_dir = os.path.join(_WORKDIR.value, name, "run")

    def run():
        trainer = rl.RLTrainer(config, run_dir)
        trainer.run()
        out = {k: float(v) for k, v in trainer.evaluate().items() if np.isscalar(v)}
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            rows = [r for r in map(json.loads, f) if "reward/accuracy" in r]
        tenth = max(1, len(rows) // 10)
        out["train_accuracy_first"] = float(np.mean([r["reward/accuracy"] for r in rows[:tenth]]))
        out["train_accuracy_last"] = float(np.mean([r["reward/accuracy"] for r in rows[-tenth:]]))
        for key in HACKING:
            series = [
                r[f"reward/prm_reward/{key}"] for r in rows if f"reward/prm_reward/{key}" in r
            ]
            if series:
                out[f"{key}_first"] = float(np.mean(series[:tenth]))
                out[f"{key}_last"] = float(np.mean(series[-tenth:]))
        if "prime/param_distance" in rows[-1]:
            out["prime_param_distance_last"] = float(rows[-1]["prime/param_distance"])
        return out

    return stages.cached_stage(_WORKDIR.value, name, run, cpu)


def _rl_seed(setup: Setup, seed: int, cpu: dict) -> dict:
    """Every arm of one seed: pass@1 per arm, the paired gains, the PRM arms' hacking signals."""
    prm_hf = os.path.join(_WORKDIR.value, f"prm_mc_seed{seed}", "hf")
    out = {}
    results = {}
    for arm in RL_ARMS:
        results[arm] = _rl_stage(
            f"rl_{arm}_seed{seed}", _rl_config(arm, setup.sft_hf, prm_hf, seed), cpu
        )
        out[f"rl_{arm}_pass_at_1"] = results[arm]["pass@1"]
    for key, (arm, base) in RL_GAINS.items():
        out[key] = results[arm]["pass@1"] - results[base]["pass@1"]
    for arm in ("sum_form", "min_form"):
        for key, value in results[arm].items():
            if key.startswith(HACKING):
                out[f"rl_{arm}_{key}"] = value
        if (
            "total_correct_mean_last" in results[arm]
            and "total_incorrect_mean_last" in results[arm]
        ):
            # The PRM's total on correct minus incorrect rows at the end: near 0 once
            # the process reward no longer tracks correctness.
            out[f"rl_{arm}_prm_gap_last"] = (
                results[arm]["total_correct_mean_last"] - results[arm]["total_incorrect_mean_last"]
            )
    for arm in ("prime", "prime_slow_psi"):
        out[f"rl_{arm}_param_distance_last"] = results[arm].get("prime_param_distance_last")
        out[f"rl_{arm}_length_mean"] = results[arm]["mean_length"]
    return out


# ---- the report -----------------------------------------------------------------------


# Sampling costs, not scores: their mean and per-seed values, without an interval.
COUNTS = ("mc_rollouts_", "omega_rollouts", "omega_rounds", "prm_train_solutions")


def _targets(result: dict) -> dict[str, bool | None]:
    def get(key):
        return result.get(key)

    def at_least(key):
        return None if get(key) is None else get(key) >= TARGETS[key]

    omega = None
    if get("omega_rollout_ratio") is not None:
        omega = (
            get("omega_rollout_ratio") <= TARGETS["omega_rollout_ratio"]
            and get("omega_accuracy_gap") <= TARGETS["omega_accuracy_gap"]
        )

    def at_least_as(key, target):
        return None if get(key) is None else get(key) >= TARGETS[target]

    return dict(
        mc_first_error_accuracy_k8=at_least("mc_first_error_accuracy_k8"),
        mc_first_error_accuracy_tuned_k8=at_least_as(
            "mc_first_error_accuracy_tuned_k8", "mc_first_error_accuracy_k8"
        ),
        omega_rollouts_within_accuracy=omega,
        labeling_speedup_vs_naive=at_least("labeling_speedup_vs_naive"),
        prm_mc_processbench_f1=at_least("prm_mc_processbench_f1"),
        prm_mc_generated_processbench_f1=at_least_as(
            "prm_mc_generated_processbench_f1", "prm_mc_processbench_f1"
        ),
        prm_mc_generated_hard_processbench_f1=at_least_as(
            "prm_mc_generated_hard_processbench_f1", "prm_mc_processbench_f1"
        ),
    )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    parts = [p.strip() for p in _PARTS.value if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise app.UsageError(f"--parts {','.join(unknown)}: known parts are {', '.join(PARTS)}")
    import rewardjax.objectives  # noqa: F401

    if _FRESH.value:
        shutil.rmtree(_WORKDIR.value, ignore_errors=True)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    cpu: dict[str, float] = {}
    seeds = [int(s) for s in _SEEDS.value]
    start = time.time()

    steps = stages.scaled_steps(600, _SCALE.value)
    sft_eval = stages.train_stage(
        _WORKDIR.value, "sft", stages.sft_start_config(steps, SFT_SEED), cpu
    )
    setup = Setup(os.path.join(_WORKDIR.value, "sft", "hf"))
    result: dict = {
        "bench": "process_supervision",
        "seeds": seeds,
        "scale": _SCALE.value,
        "parts": parts,
        "sft_pass_at_1": sft_eval["pass@1"],
    }
    per_seed: dict[str, list] = {}

    def collect(row: dict, keys) -> None:
        for key in keys:
            per_seed.setdefault(key, []).append(row[key])

    if "labels" in parts:
        rows, sampled = _label_solutions(setup, cpu)
        for seed in seeds:
            row = dict(_label_seed(setup, rows, seed, cpu))
            row.pop(f"mc_values_k{OMEGA_K}")
            collect(row, row)
        speed = _throughput(setup, rows, seeds[0], cpu)
        result.update(
            label_solutions=len(rows.steps),
            label_solutions_sampled=sampled["sampled"],
            label_solutions_skipped=sampled["skipped"],
            label_solutions_with_error=float(np.mean([f >= 0 for f in rows.exact_first])),
            labeling_speedup_vs_naive=speed["labeling_speedup_vs_naive"],
            labeling_throughput={k: v for k, v in speed.items() if k != "bench"},
            load_avg_start=speed["load_avg_start"],
            load_avg_end=speed["load_avg_end"],
            loaded=speed["loaded"],
        )
    if "prm" in parts:
        keys = (
            "prm_mc_processbench_f1",
            "prm_consensus_processbench_f1",
            "prm_exact_processbench_f1",
            "consensus_kept_fraction",
            "prm_fold_processbench_f1",
            "prm_fold_first_error_accuracy",
            "train_mc_first_error_accuracy",
            "consensus_kept_mc_first_error_accuracy",
            "prm_mc_step_auroc",
            "prm_consensus_step_auroc",
            "prm_exact_step_auroc",
            "prm_train_solutions",
            "generated_mc_first_error_accuracy",
            "prm_mc_generated_processbench_f1",
            "prm_exact_generated_processbench_f1",
            "prm_mc_generated_step_auroc",
            "prm_exact_generated_step_auroc",
            "prm_mc_generated_hard_processbench_f1",
            "prm_mc_generated_hard_step_auroc",
        )
        for seed in seeds:
            row = _prm_seed(setup, seed, cpu)
            collect(row, keys)
            result.setdefault("prm_train_skipped_per_seed", []).append(row["prm_train_skipped"])
    if "labels" in parts and "prm" in parts:
        for seed in seeds:
            row = _tuned_threshold(setup, rows, seed, cpu)
            collect(row, row)
    if "rl" in parts:
        for seed in seeds:
            _prm_seed(setup, seed, cpu)  # the PRM of the credit arms (cached when prm ran)
            row = _rl_seed(setup, seed, cpu)
            collect(row, row)
    result.update(stages.seed_aggregate(per_seed, counts=COUNTS))
    result["targets"] = _targets(result)
    result["cpu_s"] = {k: round(v, 1) for k, v in cpu.items()}
    result["wall_s"] = round(time.time() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
