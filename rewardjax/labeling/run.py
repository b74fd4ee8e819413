"""One labelling run from a config: sample solutions, label their steps, write a step-label JSONL.

  summary = label_run(config)          # config: configs/label_arithmetic.py

Solutions are sampled by the solver policy on the task's problems, split into
steps at the separator, and labelled by Monte Carlo rollouts of the completer
(`method="monte_carlo"`: every prefix, hard or soft labels) or by binary
search for the first error (`method="first_error_search"`: hard labels).
With `consensus.prm_path`, only solutions where a trained PRM puts the first
error at the same step are written. The JSONL holds `StepLabels` rows, which
the PRM trainer reads unchanged (`data.train_path`); each row's `fields` keep
the labeller's prefix values and, since a procedural task knows them, the
exact labels — so the summary scores the labeller against the truth.
"""

from __future__ import annotations

import math

import jax
import ml_collections
import numpy as np

from rewardjax import models
from rewardjax.data.formats import write_jsonl
from rewardjax.data.steps import split_steps
from rewardjax.data.tasks import make_task
from rewardjax.labeling import consensus as cons
from rewardjax.labeling.montecarlo import (
    Completer,
    first_error_search,
    monte_carlo_values,
    step_labels,
)
from rewardjax.scoring.models import ProcessRewardModel
from rewardjax.tokenizers import load_tokenizer
from rewardjax.training.policy import prompt_format_of
from rewardjax.training.rollout import sample_and_grade

__all__ = ["METHODS", "exact_labels", "label_run"]

METHODS = ("monte_carlo", "first_error_search")


def exact_labels(task, problem, steps: list[str], separator: str) -> tuple[list[float], int] | None:
    """The task's exact 0/1 step labels and first error (−1: none) of a step list.

    None when the grader does not label every step (lines after the answer),
    and for an incomplete solution (every written step right, no answer): the
    task calls it error-free while its outcome, and so its last prefix value,
    is 0 — no first error is right for both, so it is not scored.
    """
    grade = task.grade(problem, separator.join(steps))
    if len(grade.step_correct) != len(steps):
        return None
    if not grade.correct and all(grade.step_correct):
        return None
    labels = [float(x) for x in grade.step_correct]
    return labels, cons.normalise_first_error(grade.first_error, len(steps))


def _check(c: ml_collections.ConfigDict) -> None:
    if c.method not in METHODS:
        raise ValueError(f"config method={c.method!r}; known: {', '.join(METHODS)}")
    if c.labels not in ("hard", "soft"):
        raise ValueError(f"config labels={c.labels!r}; known: hard, soft")
    if c.method == "first_error_search" and c.labels == "soft":
        raise ValueError(
            "method='first_error_search' evaluates only the prefixes its search visits, so it "
            "gives hard labels: set labels='hard'"
        )
    if not 0.0 <= c.threshold < 1.0:
        raise ValueError(f"config threshold={c.threshold} must lie in [0, 1)")
    if c.method == "first_error_search" and c.threshold:
        raise ValueError(
            "method='first_error_search' searches for the first prefix value of 0: set "
            "threshold=0, or method='monte_carlo' to call values at most the threshold errors"
        )
    if c.k < 1:
        raise ValueError(f"config k={c.k}: each prefix needs at least one rollout")
    if not c.solver.path:
        raise ValueError("config solver.path is empty: the policy whose solutions are labelled")
    if c.num_problems < 1 or c.samples_per_problem < 1:
        raise ValueError(
            f"config num_problems={c.num_problems}, samples_per_problem={c.samples_per_problem}: "
            "both must be >= 1"
        )


def label_run(c: ml_collections.ConfigDict) -> dict:
    """Samples, labels and writes `c.output`; returns the summary (JSON-able)."""
    _check(c)
    task = make_task(c.task.name, **c.task.kwargs)
    tokenizer = load_tokenizer(c.tokenizer or c.solver.path)
    tokenizer.prompt_format = prompt_format_of(c, tokenizer)
    rng = jax.random.key(c.seed)
    solver_config, solver_params = models.load_hf(c.solver.path, heads=("lm",))
    problems = [task.problem(i, split=c.split, seed=c.seed) for i in range(c.num_problems)]
    rng, key = jax.random.split(rng)
    sampled = sample_and_grade(
        solver_config,
        solver_params,
        tokenizer,
        task,
        problems,
        rng=key,
        n=c.samples_per_problem,
        max_new_tokens=c.solver.max_new_tokens,
        temperature=c.solver.temperature,
    )
    skipped: dict[str, int] = {}
    rows, row_problems = [], []
    for p, texts in zip(problems, sampled.texts):
        for text in texts:
            steps = split_steps(text, c.separator)
            if len(steps) < 2:
                # One step carries no process information: its label is the outcome.
                skipped["single_step"] = skipped.get("single_step", 0) + 1
            elif any(not s.strip() for s in steps):
                skipped["empty_step"] = skipped.get("empty_step", 0) + 1
            else:
                rows.append(steps)
                row_problems.append(p)
    if c.completer.path and c.completer.path != c.solver.path:
        completer_config, completer_params = models.load_hf(c.completer.path, heads=("lm",))
    else:
        completer_config, completer_params = solver_config, solver_params
    completer = Completer(
        completer_config,
        completer_params,
        tokenizer,
        max_new_tokens=c.completer.max_new_tokens,
        temperature=c.completer.temperature,
        batch_prefixes=c.completer.batch_prefixes,
    )

    def grade(problem, text):
        return task.grade(problem, text).correct

    rng, key = jax.random.split(rng)
    label = monte_carlo_values if c.method == "monte_carlo" else first_error_search
    result = label(
        completer,
        row_problems,
        rows,
        k=c.k,
        grade=grade,
        rng=key,
        separator=c.separator,
        on_grader_error=c.on_grader_error,
    )
    if c.method == "monte_carlo":
        labels = result.labels(c.labels, threshold=c.threshold)
        first_errors, extra = result.first_errors(threshold=c.threshold), {}
    else:
        labels, first_errors = result.labels(), result.first_errors
        extra = {"rounds": result.rounds}
    for reason, n in result.skipped.items():
        skipped[reason] = skipped.get(reason, 0) + n
    outcomes = [None if v is None else bool(v[-1]) for v in result.values]
    fields = []
    exact_first, exact_rows = [], []
    for i, (p, steps) in enumerate(zip(row_problems, rows)):
        exact = exact_labels(task, p, steps, c.separator)
        values = result.values[i]
        fields.append(
            dict(
                uid=p.uid,
                prefix_values=None
                if values is None
                else [None if math.isnan(x) else float(x) for x in values],
                exact_labels=None if exact is None else exact[0],
                exact_first_error=None if exact is None else exact[1],
            )
        )
        if exact is not None and labels[i] is not None:
            exact_rows.append(i)
            exact_first.append(exact[1])
    keep = np.array([lab is not None for lab in labels], bool)
    summary = dict(
        method=c.method,
        labels=c.labels,
        k=c.k,
        solutions=len(rows),
        labelled=int(keep.sum()),
        skipped=skipped,
        rollouts=result.rollouts,
        prefixes=result.prefixes,
        seconds=result.seconds,
        # Wall time includes the sampler's compilation (benchmarks time warm calls).
        prefixes_per_s_incl_compile=result.prefixes / max(result.seconds, 1e-9),
        **extra,
    )
    if exact_rows:
        predicted = [first_errors[i] for i in exact_rows]
        summary["first_error_accuracy"] = cons.first_error_accuracy(
            predicted, exact_first, [len(rows[i]) for i in exact_rows]
        )
        summary["step_label"] = cons.step_label_f1(
            [labels[i] for i in exact_rows], [fields[i]["exact_labels"] for i in exact_rows]
        )
        summary["exact_labelled"] = len(exact_rows)
    if c.consensus.prm_path:
        prm = ProcessRewardModel.load(
            c.consensus.prm_path, tokenizer=tokenizer, separator=c.separator
        )
        idx = np.flatnonzero(keep)
        scores = prm.step_scores([row_problems[i].prompt for i in idx], [rows[i] for i in idx])
        agree = cons.consensus_mask(
            [first_errors[i] for i in idx],
            cons.prm_first_errors(scores, threshold=c.consensus.threshold),
            [len(rows[i]) for i in idx],
        )
        summary["consensus_kept_fraction"] = float(agree.mean()) if len(idx) else 0.0
        keep[idx[~agree]] = False
        if exact_rows:
            kept_exact = [i for i in exact_rows if keep[i]]
            summary["consensus_first_error_accuracy"] = (
                cons.first_error_accuracy(
                    [first_errors[i] for i in kept_exact],
                    [fields[i]["exact_first_error"] for i in kept_exact],
                    [len(rows[i]) for i in kept_exact],
                )
                if kept_exact
                else None
            )
    records = step_labels(
        row_problems,
        rows,
        [lab if k else None for lab, k in zip(labels, keep)],
        first_errors,
        outcomes=outcomes,
        fields=fields,
    )
    summary["written"] = len(records)
    if c.output:
        write_jsonl(c.output, records)
        summary["output"] = c.output
    return summary
