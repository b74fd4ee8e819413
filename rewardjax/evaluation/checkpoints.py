"""Evaluate saved reward models, PRMs and policies on held-out data, and test-time selection.

`evaluate_checkpoints` loads exported model directories (ORMs, an ORM
ensemble, a PRM, an implicit PRM with its reference, a policy), scores
held-out records (JSONL files or records generated from a procedural task)
with the drivers of `rewardjax.evaluation.scorers`, samples the policy for
pass@k, and draws the selection curves (accuracy against N for majority vote,
best-of-N and weighted votes, next to pass@N). `experiments/evaluate.py` is
its command line (`evaluate_and_report`).

  result = evaluate_checkpoints(orm_paths=["/tmp/rm/hf"], metrics=["pairwise_accuracy"])
  print(format_metric_table(result["table"]))

Metrics (`CHECKPOINT_METRICS`):
  pairwise_accuracy  ORM (or implicit PRM) on preference pairs, strict
  best_of_4          ORM on 4-response lists with one best (RewardBench 2 style)
  processbench_f1    PRM / implicit PRM first-error F1 against exact step labels
  step_auroc         PRM / implicit PRM step-level AUROC
  calibration        Brier and ECE (ORM: σ(r) vs outcome; PRM: p_s vs step label)
  correlation        score vs true correctness (Pearson, Spearman, AUROC)
  pass_at_k          the policy's held-out pass@k
  selection          majority vote, best-of-N (ORM, PRM min/last/prod/mean) and
                     weighted votes, for N = 1, 2, 4, ..., max_n, with pass@N
  rewardbench        ORM on a RewardBench file: subset accuracies, the four
                     section scores and the overall score, as the benchmark
                     defines them (`evaluation.benchmarks`)
  rewardbench2       ORM on a RewardBench 2 file: best-of-n per subset, Ties
                     by its own score, and the mean of the subsets
  processbench       PRM / implicit PRM on ProcessBench files: first-error F1
                     per subset and their mean
  search             (asked for by name only) accuracy against generated tokens
                     and FLOPs of majority vote, best-of-N, PRM-weighted and
                     confidence-weighted votes, PRM beam and greedy step search,
                     early rejection and Refined-BoN, compute-matched against
                     best-of-N and majority vote (`evaluation.search_curves`)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from rewardjax import models, scoring
from rewardjax.evaluation import benchmarks, scorers
from rewardjax.inference import format_accuracy_table
from rewardjax.judges.reward import load_judge
from rewardjax.registry import TASKS
from rewardjax.scoring.models import laser_token_id
from rewardjax.tokenizers import PromptFormat, load_tokenizer
from rewardjax.training.kinds.data import load_records
from rewardjax.training.prompts import grader_for, load_problems
from rewardjax.training.rollout import sample_and_grade

__all__ = [
    "CHECKPOINT_METRICS",
    "DEFAULT_METRICS",
    "evaluate_and_report",
    "evaluate_checkpoints",
    "format_metric_table",
]

CHECKPOINT_METRICS = (
    "pairwise_accuracy",
    "best_of_4",
    "processbench_f1",
    "step_auroc",
    "calibration",
    "correlation",
    "pass_at_k",
    "selection",
    "rewardbench",
    "rewardbench2",
    "processbench",
    "search",
)
BENCHMARK_METRICS = ("rewardbench", "rewardbench2", "processbench")
# Metrics run when none is named: all but the search, which samples far more,
# and the benchmarks, which need their files; when a benchmark file is given,
# its benchmark (and pass_at_k on a problem file).
DEFAULT_METRICS = tuple(m for m in CHECKPOINT_METRICS if m not in (*BENCHMARK_METRICS, "search"))
# Result keys of the library evaluations, by metric.
_RESULT_KEYS = {
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


def evaluate_checkpoints(
    *,
    orm_paths: Sequence[str] = (),
    ensemble: str = "mean",
    std_coef: float = 1.0,
    prm_path: str = "",
    implicit_path: str = "",
    reference: str = "",
    beta: float = 0.05,
    policy_path: str = "",
    judge_path: str = "",
    tokenizer: str = "char",
    metrics: Sequence[str] = (),
    task_name: str = "arithmetic_chain",
    task_kwargs: Mapping[str, Any] | None = None,
    pairs_data: str = "",
    ranked_data: str = "",
    steps_data: str = "",
    num_records: int = 500,
    error_rate: float = 0.5,
    threshold: float = 0.5,
    validation_data: str = "",
    separator: str = "\n",
    num_problems: int = 100,
    max_n: int = 64,
    num_subsets: int = 100,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    search: Mapping[str, Any] | None = None,
    problems_data: str = "",
    problems_reader: str = "",
    prompt: Mapping[str, Any] | None = None,
    rewardbench: str = "",
    rewardbench2: str = "",
    processbench: Sequence[str] = (),
) -> dict[str, Any]:
    """Loads the saved models, scores held-out data with them and computes the requested metrics.

    Args:
      orm_paths: ORM directories; several form a `RewardModelEnsemble`
        aggregated by `ensemble` ("mean", "median", "min", "mean_minus_std"
        with λ = `std_coef`).
      prm_path: a PRM directory (head "prm").
      implicit_path, reference, beta: an implicit PRM (a causal LM), its π_ref
        directory and the β it was trained with.
      policy_path: a policy directory, sampled for pass_at_k and selection.
      judge_path: a generative judge (`rewardjax.judges`): its P("Yes") selects
        among the policy's samples in `selection` (bon_judge,
        weighted_majority_vote_judge).
      tokenizer: a tokenizer spec; empty: each model directory's own.
      metrics: names from `CHECKPOINT_METRICS` (empty: every one that applies).
      task_name, task_kwargs: the registered procedural task of generated
        records and problems.
      pairs_data, ranked_data, steps_data: JSONL records (empty: `num_records`
        generated from the task's test split, `error_rate` of the solutions
        with an error).
      threshold: τ of the ProcessBench first-error prediction.
      validation_data: JSONL step labels on which τ is tuned (empty: generated
        from the train split when the test records are generated; "none": no
        tuning).
      separator: the step separator.
      num_problems, max_n, num_subsets: held-out problems, candidates sampled
        per problem, and random subsets per (problem, N) of the selection
        curves.
      max_new_tokens, temperature: the policy's sampling.
      batch_size: rows per reward-model forward.
      seed: seed of the data, the sampling and the subsets.
      search: settings of the search metric (its confidence also weighs the
        selection metric's confidence_weighted_vote), keyword arguments of
        `search_curves` (beams, max_steps, early, refine, aggregation,
        confidence: "stated" or {"kl_coef", "ref_constant", "token"} of the
        policy's LaSeR self-reward, token as text, empty for the BOS), plus
        "plot" (a PNG path) and "max_rows".
      problems_data, problems_reader: held-out problems for pass_at_k and
        selection from a prompt file (the project's JSONL, or a published
        format: gsm8k, math, math500, humaneval, mbpp), graded by math-verify
        or by their tests in the sandbox; empty: the task's test split.
      prompt: how every model's prompts are written (`PromptFormat` keywords:
        chat_template, system, suffix); None: the text as is.
      rewardbench, rewardbench2: a RewardBench / RewardBench 2 file for the ORM.
      processbench: ProcessBench files for the PRMs, "name=path" or a path
        whose file name starts with its subset ("gsm8k.json",
        "math-00000-of-00001.parquet").

    Returns:
      {"table": {model: {metric: value}}, "selection": {rule: {N: accuracy}}
      or None, "search": [{method, setting, accuracy, tokens, flops,
      best_of_n_at_equal_tokens, majority_vote_at_equal_tokens}] or None}; the
      table's models are "orm" (or "orm_ensemble_<mode>"), "prm",
      "implicit_prm", "implicit_prm_outcome" and "policy".

    Raises:
      ValueError: an unknown metric, or no model to evaluate.
      CheckpointError: a directory that is not the model it is given as.
    """
    benchmark_files = {
        "rewardbench": rewardbench,
        "rewardbench2": rewardbench2,
        "processbench": list(processbench),
    }
    given = [m for m, path in benchmark_files.items() if path]
    if metrics:
        wanted = list(metrics)
    elif given or problems_data:
        wanted = given + (["pass_at_k"] if problems_data else [])
    else:
        wanted = list(DEFAULT_METRICS)
    unknown = [m for m in wanted if m not in CHECKPOINT_METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown {unknown}; known: {', '.join(CHECKPOINT_METRICS)}")
    if judge_path and not policy_path:
        raise ValueError("--judge selects among a policy's samples: give --policy too")
    if not (orm_paths or prm_path or implicit_path or policy_path):
        raise ValueError("nothing to evaluate: give --orm, --prm, --implicit_prm and/or --policy")
    task = TASKS.get(task_name)(**dict(task_kwargs or {}))

    prompt_format = PromptFormat(**prompt) if prompt else None

    def held_out():
        """(grader, problems): the problem file's, else the task's test split."""
        if problems_data:
            grader = grader_for(problems_reader)  # first: it refuses a format without prompts
            return grader, load_problems(problems_data, problems_reader)[0][:num_problems]
        return task, task.problems(0, num_problems, split="test", seed=seed)

    def tok(path):
        loaded = load_tokenizer(tokenizer or path)
        loaded.prompt_format = prompt_format
        return loaded

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
    keep = {k for m in wanted for k in _RESULT_KEYS.get(m, ())}
    table = {model: {k: v for k, v in row.items() if k in keep} for model, row in table.items()}
    bench = _benchmarks(
        wanted,
        benchmark_files,
        orm=orm,
        orm_name="orm" if len(orm_paths) <= 1 else f"orm_ensemble_{ensemble}",
        prms={"prm": prm, "implicit_prm": implicit},
        threshold=threshold,
        table=table,
    )

    selection = None
    if policy_path and ({"pass_at_k", "selection"} & set(wanted)):
        config, params = models.load_hf(policy_path)
        policy_tok = tok(policy_path)
        grader, problems = held_out()
        # A named metric samples max_n; the default run caps pass@k's samples at 16.
        n = max_n if "selection" in wanted or metrics else min(max_n, 16)
        candidates = sample_and_grade(
            config,
            jax.tree.map(np.asarray, params),
            policy_tok,
            grader,
            problems,
            rng=jax.random.key(seed),
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_prompts=min(len(problems), 64),
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
                judge=(
                    load_judge(judge_path, tokenizer=tok(judge_path), batch_size=batch_size)
                    if judge_path
                    else None
                ),
                confidence=_confidence(
                    (search or {}).get("confidence"), config, params, policy_tok
                ),
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
    search_rows = None
    if "search" in wanted:
        step_scorer = prm if prm is not None else implicit
        if not policy_path or step_scorer is None:
            raise ValueError("--metrics=search needs --policy and a --prm or --implicit_prm")
        grader, problems = held_out()
        search_rows = _search(
            dict(search or {}),
            policy_path=policy_path,
            policy_tok=tok(policy_path),
            scorer=step_scorer,
            task=grader,
            problems=problems,
            max_n=max_n,
            num_subsets=num_subsets,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            separator=separator,
            seed=seed,
        )
    return {"table": table, "selection": selection, "search": search_rows, "benchmarks": bench}


def _benchmarks(wanted, files, *, orm, orm_name, prms, threshold, table) -> dict[str, Any]:
    """The benchmark metrics on their files; headline numbers also go into `table`."""
    from rewardjax.data.published import read_published

    out: dict[str, Any] = {}
    for name in ("rewardbench", "rewardbench2"):
        if name not in wanted:
            continue
        if orm is None or not files[name]:
            raise ValueError(f"--metrics={name} needs --orm and --{name}=FILE")
        records = read_published(name, files[name]).records
        score = (
            benchmarks.score_rewardbench
            if name == "rewardbench"
            else (benchmarks.score_rewardbench2)
        )
        result = score(orm, records)
        out[name] = {orm_name: result}
        parts = result["sections"] if name == "rewardbench" else result["subsets"]
        row = table.setdefault(orm_name, {})
        row[f"{name}_score"] = result["score"]
        row.update({f"{name}/{part}": value for part, value in parts.items()})
    if "processbench" in wanted:
        scorers_given = {k: v for k, v in prms.items() if v is not None}
        if not scorers_given or not files["processbench"]:
            raise ValueError(
                "--metrics=processbench needs --prm or --implicit_prm and --processbench"
            )
        subsets = {
            subset: read_published("processbench", path).records
            for subset, path in _named_paths(files["processbench"]).items()
        }
        out["processbench"] = {}
        for model, scorer in scorers_given.items():
            result = benchmarks.score_processbench(scorer, subsets, threshold=threshold)
            out["processbench"][model] = result
            row = table.setdefault(model, {})
            row["processbench_average_f1"] = result["average_f1"]
            row.update({f"processbench_f1/{k}": v["f1"] for k, v in result["subsets"].items()})
    return out


def _named_paths(values: Sequence[str]) -> dict[str, str]:
    """{subset: path} of "name=path" entries, or of paths named by their file's first word."""
    out = {}
    for value in values:
        if "=" in value:
            name, path = value.split("=", 1)
        else:
            path = value
            name = re.split(r"[-_.]", os.path.basename(value), maxsplit=1)[0]
        if name in out:
            raise ValueError(f"--processbench names subset {name!r} twice ({out[name]}, {path})")
        out[name] = path
    return out


def _confidence(confidence, config, params, policy_tok):
    """The confidence vote's weights: "stated", None, or the policy's LaSeR self-scorer."""
    if not isinstance(confidence, Mapping):
        return confidence
    token = laser_token_id(policy_tok, confidence.get("token", ""), where="LaSeR's token")
    kwargs = dict(confidence, token=token)
    return scoring.LastTokenSelfScorer(
        config, jax.tree.map(np.asarray, params), policy_tok, **kwargs
    )


def _search(
    options,
    *,
    policy_path,
    policy_tok,
    scorer,
    task,
    problems,
    max_n,
    num_subsets,
    max_new_tokens,
    temperature,
    separator,
    seed,
) -> list[dict[str, Any]]:
    """The search metric: every method's points, with best-of-N and majority vote at equal tokens."""
    from rewardjax.evaluation import search_curves as curves
    from rewardjax.inference.search import PolicyExpander

    plot = options.pop("plot", "")
    max_rows = options.pop("max_rows", 256)
    config, params = models.load_hf(policy_path)
    params = jax.tree.map(np.asarray, params)
    confidence = _confidence(options.pop("confidence", None), config, params, policy_tok)
    expander = PolicyExpander(
        config,
        params,
        policy_tok,
        separator=separator,
        max_new_tokens=max_new_tokens,
        max_rows=max_rows,
        temperature=temperature,
    )
    points = curves.search_curves(
        expander,
        scorer.step_scores,
        task,
        problems,
        rng=jax.random.key(seed),
        policy_config=config,
        # An implicit PRM runs ψ and π_ref on every solution.
        scorer_config=[scorer.config, scorer.ref_config]
        if hasattr(scorer, "ref_config")
        else scorer.config,
        max_n=max_n,
        num_subsets=num_subsets,
        seed=seed,
        confidence=confidence,
        **options,
    )
    print(curves.format_search_table(points))
    if plot:
        curves.plot_search(points, plot)
    matched = {r: curves.compute_matched(points, r) for r in ("best_of_n", "majority_vote")}
    return [
        dict(
            p.summary(),
            **{f"{r}_at_equal_tokens": m[p.method, p.setting] for r, m in matched.items()},
        )
        for p in points
    ]


def format_metric_table(table: dict[str, dict[str, float]]) -> str:
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


def evaluate_and_report(*, output_json: str = "", **kwargs: Any) -> dict[str, Any]:
    """`evaluate_checkpoints(**kwargs)`, printed: the metric table, then the selection curves.

    Args:
      output_json: also write the result here as JSON (empty: do not).
      **kwargs: the arguments of `evaluate_checkpoints`.
    """
    result = evaluate_checkpoints(**kwargs)
    if result["table"] or result["search"] is None:  # the search printed its own table
        print(format_metric_table(result["table"]))
    if result["selection"] is not None:
        print("\naccuracy vs N (held-out problems; pass_at_n is the oracle ceiling)")
        print(format_accuracy_table(result["selection"]))
    if output_json:
        with open(output_json, "w") as f:
            json.dump(result, f, indent=2, default=str)
    return result
