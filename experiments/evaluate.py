r"""Evaluate reward models, PRMs and policies on held-out data, and test-time selection.

  # ORM: pairwise accuracy, best-of-4, calibration, correlation (generated held-out data)
  python -m experiments.evaluate --orm=/tmp/rm/hf
  # An ensemble of three ORMs, aggregated by mean − λ·std
  python -m experiments.evaluate --orm=/tmp/rm0/hf,/tmp/rm1/hf,/tmp/rm2/hf --ensemble=mean_minus_std
  # PRM and implicit PRM: ProcessBench F1, step AUROC, calibration
  python -m experiments.evaluate --prm=/tmp/prm/hf --implicit_prm=/tmp/iprm/hf --reference=/tmp/sft/hf
  # Test-time selection: accuracy vs N = 1..64 for each rule, next to pass@N
  python -m experiments.evaluate --policy=/tmp/sft/hf --orm=/tmp/rm/hf --prm=/tmp/prm/hf \
      --metrics=selection --num_problems=100 --max_n=64
  # JSONL data instead of generated records
  python -m experiments.evaluate --prm=/tmp/prm/hf --steps_data=steps.jsonl

Metrics (--metrics, default: every one the given models and data allow):
  pairwise_accuracy  ORM (or implicit PRM) on preference pairs, strict
  best_of_4          ORM on 4-response lists with one best (RewardBench 2 style)
  processbench_f1    PRM / implicit PRM first-error F1 against exact step labels
  step_auroc         PRM / implicit PRM step-level AUROC
  calibration        Brier and ECE (ORM: σ(r) vs outcome; PRM: p_s vs step label)
  correlation        score vs true correctness (Pearson, Spearman, AUROC)
  pass_at_k          the policy's held-out pass@k
  selection          majority vote, best-of-N (ORM, PRM min/last/prod/mean) and
                     weighted votes, for N = 1, 2, 4, ..., max_n, with pass@N
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import app, flags

_ORM = flags.DEFINE_list("orm", [], "ORM directories; several form an ensemble.")
_ENSEMBLE = flags.DEFINE_enum(
    "ensemble", "mean", ["mean", "median", "min", "mean_minus_std"], "Ensemble aggregation."
)
_STD_COEF = flags.DEFINE_float("std_coef", 1.0, "λ of mean − λ·std.")
_PRM = flags.DEFINE_string("prm", "", "PRM directory (head 'prm').")
_IMPLICIT = flags.DEFINE_string("implicit_prm", "", "Implicit PRM directory (a causal LM).")
_REFERENCE = flags.DEFINE_string("reference", "", "π_ref directory of the implicit PRM.")
_BETA = flags.DEFINE_float("beta", 0.05, "β the implicit PRM was trained with.")
_POLICY = flags.DEFINE_string("policy", "", "Policy directory, for pass_at_k and selection.")
_TOKENIZER = flags.DEFINE_string(
    "tokenizer", "char", "Tokenizer spec; empty: each model directory's own."
)
_METRICS = flags.DEFINE_list("metrics", [], "Metrics to report (default: all that apply).")
_TASK = flags.DEFINE_string(
    "task", "arithmetic_chain", "Procedural task of generated data and problems."
)
_TASK_KWARGS = flags.DEFINE_string(
    "task_kwargs", '{"num_steps": 3, "max_operand": 9}', "Task kwargs (JSON)."
)
_PAIRS = flags.DEFINE_string("pairs_data", "", "JSONL preference pairs (default: generated).")
_RANKED = flags.DEFINE_string("ranked_data", "", "JSONL ranked lists (default: generated).")
_STEPS = flags.DEFINE_string(
    "steps_data", "", "JSONL step-labelled solutions (default: generated)."
)
_NUM_RECORDS = flags.DEFINE_integer(
    "num_records", 500, "Generated held-out records of each format."
)
_ERROR_RATE = flags.DEFINE_float("error_rate", 0.5, "Share of generated solutions with an error.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.5, "τ of the ProcessBench first-error prediction.")
_VALIDATION = flags.DEFINE_string(
    "validation_data",
    "",
    "JSONL step labels on which τ is tuned (default: generated from the train split; 'none': no tuning).",
)
_SEPARATOR = flags.DEFINE_string("separator", "\n", "Step separator.")
_NUM_PROBLEMS = flags.DEFINE_integer(
    "num_problems", 100, "Held-out problems for pass_at_k / selection."
)
_MAX_N = flags.DEFINE_integer("max_n", 64, "Candidates sampled per problem.")
_NUM_SUBSETS = flags.DEFINE_integer("num_subsets", 100, "Subsets per (problem, N).")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 48, "Sampling budget.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Rows per reward-model forward.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data, the sampling and the subsets.")
_OUTPUT = flags.DEFINE_string("output_json", "", "Also write the results here.")

ALL_METRICS = (
    "pairwise_accuracy",
    "best_of_4",
    "processbench_f1",
    "step_auroc",
    "calibration",
    "correlation",
    "pass_at_k",
    "selection",
)
# Result keys of the library evaluations, by metric.
_KEYS = {
    "pairwise_accuracy": ("pairwise_accuracy", "num_pairs"),
    "best_of_4": ("best_of_4_accuracy", "num_ranked"),
    "processbench_f1": (
        "processbench_f1",
        "acc_erroneous",
        "acc_correct",
        "tuned_threshold",
        "tuned_processbench_f1",
    ),
    "step_auroc": ("step_auroc",),
    "calibration": ("brier", "ece", "step_brier", "step_ece"),
    "correlation": ("pearson", "spearman", "auroc", "outcome_auroc", "outcome_pearson"),
}


def run(
    *,
    orm_paths=(),
    ensemble="mean",
    std_coef=1.0,
    prm_path="",
    implicit_path="",
    reference="",
    beta=0.05,
    policy_path="",
    tokenizer="char",
    metrics=(),
    task_name="arithmetic_chain",
    task_kwargs=None,
    pairs_data="",
    ranked_data="",
    steps_data="",
    num_records=500,
    error_rate=0.5,
    threshold=0.5,
    validation_data="",
    separator="\n",
    num_problems=100,
    max_n=64,
    num_subsets=100,
    max_new_tokens=48,
    temperature=1.0,
    batch_size=64,
    seed=0,
) -> dict:
    """Computes the requested metrics; returns {"table": {model: {metric: value}}, "selection": ...}."""
    from rewardjax import models, scoring
    from rewardjax.evaluation import scorers
    from rewardjax.registry import TASKS
    from rewardjax.tokenizers import load_tokenizer
    from rewardjax.training.kinds.data import load_records
    from rewardjax.training.rollout import sample_and_grade

    wanted = list(metrics) or list(ALL_METRICS)
    unknown = [m for m in wanted if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown {unknown}; known: {', '.join(ALL_METRICS)}")
    if not (orm_paths or prm_path or implicit_path or policy_path):
        raise ValueError("nothing to evaluate: give --orm, --prm, --implicit_prm and/or --policy")
    task = TASKS.get(task_name)(**(task_kwargs or {}))

    def tok(path):
        return load_tokenizer(tokenizer or path)

    orm = prm = implicit = None
    if orm_paths:
        members = [
            scoring.OutcomeRewardModel.load(p, tokenizer=tok(p), batch_size=batch_size)
            for p in orm_paths
        ]
        orm = (
            members[0]
            if len(members) == 1
            else scoring.RewardModelEnsemble(members, mode=ensemble, std_coef=std_coef)
        )
    if prm_path:
        prm = scoring.ProcessRewardModel.load(
            prm_path, tokenizer=tok(prm_path), batch_size=batch_size, separator=separator
        )
    if implicit_path:
        implicit = scoring.ImplicitProcessRewardModel.load(
            implicit_path,
            reference=reference,
            tokenizer=tok(implicit_path),
            beta=beta,
            batch_size=batch_size,
            separator=separator,
        )

    def data(path, fmt):
        return load_records(
            task, fmt, path=path, num=num_records, split="test", seed=seed, error_rate=error_rate
        )

    table: dict[str, dict[str, float]] = {}
    orm_blocks = {
        "pairwise_accuracy": "pairs",
        "best_of_4": "ranked",
        "calibration": "solutions",
        "correlation": "solutions",
    }
    needed = {orm_blocks[m] for m in wanted if m in orm_blocks}
    if needed:
        blocks = dict(
            pairs=data(pairs_data, "preference_pairs") if "pairs" in needed else (),
            ranked=data(ranked_data, "ranked_lists") if "ranked" in needed else (),
            solutions=data(steps_data, "step_labels") if "solutions" in needed else (),
        )
        if orm is not None:
            name = "orm" if len(orm_paths) == 1 else f"orm_ensemble_{ensemble}"
            table[name] = scorers.evaluate_orm(orm, **blocks)
        if implicit is not None and "pairs" in needed:
            table["implicit_prm_outcome"] = scorers.evaluate_orm(implicit, pairs=blocks["pairs"])
    if {"processbench_f1", "step_auroc", "calibration", "correlation"} & set(wanted):
        solutions = data(steps_data, "step_labels")
        validation = ()
        if validation_data != "none" and (validation_data or not steps_data):
            validation = load_records(
                task,
                "step_labels",
                path=validation_data,
                num=num_records,
                seed=seed + 1,
                error_rate=error_rate,
                split="train",
            )
        if prm is not None:
            table["prm"] = scorers.evaluate_prm(
                prm, solutions, threshold=threshold, validation=validation
            )
        if implicit is not None:
            table["implicit_prm"] = scorers.evaluate_prm(
                implicit, solutions, threshold=threshold, aggregation="last", validation=validation
            )
    keep = {k for m in wanted for k in _KEYS.get(m, ())}
    table = {model: {k: v for k, v in row.items() if k in keep} for model, row in table.items()}

    selection = None
    if policy_path and ({"pass_at_k", "selection"} & set(wanted)):
        config, params = models.load_hf(policy_path)
        policy_tok = tok(policy_path)
        problems = task.problems(0, num_problems, split="test", seed=seed)
        n = max_n if "selection" in wanted else min(max_n, 16)
        candidates = sample_and_grade(
            config,
            jax.tree.map(np.asarray, params),
            policy_tok,
            task,
            problems,
            rng=jax.random.key(seed),
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_prompts=min(num_problems, 64),
            progress=True,
        )
        if "pass_at_k" in wanted:
            table["policy"] = candidates.summary()
        if "selection" in wanted:
            selection = scorers.selection_curves(
                problems,
                candidates,
                orm=orm,
                prm=prm if prm is not None else implicit,
                num_subsets=num_subsets,
                seed=seed,
                separator=separator,
            )
            if prm is not None and implicit is not None:
                extra = scorers.selection_curves(
                    problems,
                    candidates,
                    prm=implicit,
                    num_subsets=num_subsets,
                    seed=seed,
                    separator=separator,
                )
                selection.update({f"implicit_{k}": v for k, v in extra.items() if "prm" in k})
    return {"table": table, "selection": selection}


def format_table(table: dict[str, dict[str, float]]) -> str:
    """model | metric | value, one row per metric."""
    rows = [(model, metric, value) for model, row in table.items() for metric, value in row.items()]
    if not rows:
        return "(no metric applies to the given models and data)"
    w_model = max(len("model"), *(len(r[0]) for r in rows))
    w_metric = max(len("metric"), *(len(r[1]) for r in rows))
    lines = [
        f"{'model':<{w_model}}  {'metric':<{w_metric}}  value",
        "-" * (w_model + w_metric + 12),
    ]
    lines += [f"{m:<{w_model}}  {k:<{w_metric}}  {v:.4f}" for m, k, v in rows]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rewardjax.inference import format_accuracy_table

    result = run(
        orm_paths=_ORM.value,
        ensemble=_ENSEMBLE.value,
        std_coef=_STD_COEF.value,
        prm_path=_PRM.value,
        implicit_path=_IMPLICIT.value,
        reference=_REFERENCE.value,
        beta=_BETA.value,
        policy_path=_POLICY.value,
        tokenizer=_TOKENIZER.value,
        metrics=_METRICS.value,
        task_name=_TASK.value,
        task_kwargs=json.loads(_TASK_KWARGS.value),
        pairs_data=_PAIRS.value,
        ranked_data=_RANKED.value,
        steps_data=_STEPS.value,
        num_records=_NUM_RECORDS.value,
        error_rate=_ERROR_RATE.value,
        threshold=_THRESHOLD.value,
        validation_data=_VALIDATION.value,
        separator=_SEPARATOR.value,
        num_problems=_NUM_PROBLEMS.value,
        max_n=_MAX_N.value,
        num_subsets=_NUM_SUBSETS.value,
        max_new_tokens=_MAX_NEW_TOKENS.value,
        temperature=_TEMPERATURE.value,
        batch_size=_BATCH.value,
        seed=_SEED.value,
    )
    print(format_table(result["table"]))
    if result["selection"] is not None:
        print("\naccuracy vs N (held-out problems; pass_at_n is the oracle ceiling)")
        print(format_accuracy_table(result["selection"]))
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(result, f, indent=2, default=str)


if __name__ == "__main__":
    app.run(main)
