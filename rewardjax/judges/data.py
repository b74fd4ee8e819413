"""Judge training examples: (judge prompt, target reply) pairs with exact verdicts.

  task = make_task("arithmetic_chain", num_steps=3)
  examples = task_judge_examples(task, num=1000, kinds=("pointwise", "pairwise"),
                                 rationale=True, error_rate=0.5)
  write_jsonl("judge_sft.jsonl", to_demonstrations(examples))
  # then an SFT run with data.train_path="judge_sft.jsonl" trains the judge

Verdicts come from the task's grader (`rewardjax.data.tasks.base`), never
from the generator's intent: the pointwise target is `grade.correct` (the
outcome), the stepwise target `grade.step_correct`, and the rationale names
the first wrong line and its reference line ("Step 2 is wrong: 12-3=8 should
be 12-3=9."). Wrong solutions are the tasks' own demonstrations with one
propagated error (`rewardjax.data.generators`).

Readers: `{"problem", "solution", "label"}` JSONL (`read_labeled_solutions`)
and preference pairs (`read_jsonl(path, PreferencePair)` then
`pairwise_examples_from_pairs`); bad rows raise `DataFormatError` naming the
file and line, as every reader in `rewardjax.data.formats` does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rewardjax.data.formats import (
    DataFormatError,
    Demonstration,
    PreferencePair,
    _Record,
    _string,
    read_jsonl,
)
from rewardjax.data.generators import demonstrations, preference_pairs
from rewardjax.data.tasks.base import Grade, Problem, Task, split_lines
from rewardjax.judges.formats import (
    pairwise_prompt,
    pairwise_target,
    pointwise_prompt,
    pointwise_target,
    stepwise_prompt,
    stepwise_target,
)

__all__ = [
    "JudgeExample",
    "LabeledSolution",
    "pairwise_examples",
    "pairwise_examples_from_pairs",
    "pointwise_example",
    "pointwise_examples_from_labels",
    "read_labeled_solutions",
    "shuffled",
    "solution_rationale",
    "step_rationales",
    "stepwise_example",
    "task_judge_examples",
    "to_demonstrations",
]

KINDS = ("pointwise", "pairwise", "stepwise")


@dataclasses.dataclass(frozen=True)
class JudgeExample:
    """One SFT example for a judge.

    Attributes:
      prompt: the judge's user turn (a `formats` template, rendered).
      target: the reply to imitate (verdict, or rationale then verdict).
      kind: "pointwise" | "pairwise" | "stepwise".
      label: the exact verdict word ("Yes"/"No", "A"/"B"; stepwise: "Yes" when
        every step is correct).
      fields: provenance (uid, problem text, the judged solution(s), rationale flag).
    """

    prompt: str
    target: str
    kind: str
    label: str
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)


def to_demonstrations(examples: Sequence[JudgeExample]) -> list[Demonstration]:
    """`Demonstration(prompt, response=target)` records, what SFT reads (`write_jsonl` them)."""
    return [
        Demonstration(
            e.prompt, e.target, {**e.fields, "judge_kind": e.kind, "judge_label": e.label}
        )
        for e in examples
    ]


# ---------------------------------------------------------------- rationales


def _graded_lines(completion: str, grade: Grade) -> list[str]:
    lines, _ = split_lines(completion)
    return lines[: grade.num_steps]


def _step_note(problem: Problem, lines: list[str], k: int) -> str:
    """Why line k is the first error: "Step k+1 is wrong: <line> should be <reference>."."""
    if k >= len(lines):
        return f"Step {k + 1} is missing."
    line = lines[k].strip()
    if k < len(problem.steps) and problem.steps[k] != line:
        return f"Step {k + 1} is wrong: {line} should be {problem.steps[k]}."
    return f"Step {k + 1} is wrong: {line}."


def solution_rationale(problem: Problem, completion: str, grade: Grade) -> str:
    """One-line rationale from the grade: the first wrong step, or that all are right.

    A correct outcome after a wrong step (a "miracle step") says both.
    """
    if grade.first_error is None:
        return "All steps are correct."
    note = _step_note(problem, _graded_lines(completion, grade), grade.first_error)
    if grade.correct:
        return f"{note} The final answer is still right."
    return note


def step_rationales(problem: Problem, completion: str, grade: Grade) -> list[str]:
    """One note per graded line for a stepwise rationale target."""
    lines = _graded_lines(completion, grade)
    notes = []
    for k, line in enumerate(lines):
        if grade.step_correct[k]:
            notes.append(f"{line.strip()} is right.")
        elif k == grade.first_error:
            notes.append(_step_note(problem, lines, k))
        else:
            notes.append(f"{line.strip()} follows a wrong step.")
    return notes


# ---------------------------------------------------------------- from tasks


def pointwise_example(
    task: Task, problem: Problem, completion: str, *, rationale: bool = False
) -> JudgeExample:
    """Is `completion` correct? Target `grade.correct` (the outcome), with rationale if asked."""
    grade = task.grade(problem, completion)
    note = solution_rationale(problem, completion, grade) if rationale else None
    return JudgeExample(
        prompt=pointwise_prompt(problem.prompt, completion, rationale=rationale),
        target=pointwise_target(grade.correct, rationale=note),
        kind="pointwise",
        label="Yes" if grade.correct else "No",
        fields={"uid": problem.uid, "problem": problem.prompt, "solution": completion},
    )


def stepwise_example(
    task: Task, problem: Problem, completion: str, *, rationale: bool = False
) -> JudgeExample:
    """Per-line labels `grade.step_correct` of the graded lines (through the first `A:` line)."""
    grade = task.grade(problem, completion)
    if grade.num_steps == 0:
        raise ValueError(f"{problem.uid}: an empty completion has no steps to label")
    notes = step_rationales(problem, completion, grade) if rationale else None
    all_right = all(grade.step_correct)
    return JudgeExample(
        prompt=stepwise_prompt(problem.prompt, completion, rationale=rationale),
        target=stepwise_target(grade.step_correct, rationales=notes),
        kind="stepwise",
        label="Yes" if all_right else "No",
        fields={
            "uid": problem.uid,
            "problem": problem.prompt,
            "solution": completion,
            "first_error": grade.first_error,
        },
    )


def pairwise_examples(
    task: Task, problem: Problem, good: str, bad: str, *, rationale: bool = False
) -> list[JudgeExample]:
    """Both orders of (correct `good`, wrong `bad`): targets "A" then "B"."""
    g, b = task.grade(problem, good), task.grade(problem, bad)
    if not g.correct or b.correct:
        raise ValueError(
            f"{problem.uid}: pairwise examples need a correct and a wrong solution "
            f"(grader: good={g.correct}, bad={b.correct})"
        )
    note = solution_rationale(problem, bad, b)
    out = []
    for a_is_good in (True, False):
        a, bb = (good, bad) if a_is_good else (bad, good)
        wrong_slot = "B" if a_is_good else "A"
        text = f"Solution {wrong_slot}: {note}" if rationale else None
        out.append(
            JudgeExample(
                prompt=pairwise_prompt(problem.prompt, a, bb, rationale=rationale),
                target=pairwise_target(a_is_good, rationale=text),
                kind="pairwise",
                label="A" if a_is_good else "B",
                fields={"uid": problem.uid, "problem": problem.prompt, "a": a, "b": bb},
            )
        )
    return out


def task_judge_examples(
    task: Task,
    *,
    start: int = 0,
    num: int,
    kinds: Sequence[str] = KINDS,
    rationale: bool = False,
    error_rate: float = 0.5,
    split: str = "train",
    seed: int = 0,
) -> list[JudgeExample]:
    """Judge examples for problems `start .. start + num - 1` of a procedural task.

    Pointwise and stepwise examples judge the task's demonstration of each
    problem (one propagated error with probability `error_rate`,
    `generators.demonstrations`); pairwise examples put the reference
    solution against the wrong solution of `generators.preference_pairs`, in
    both orders (so "A" and "B" are equally frequent targets).
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown judge kinds {sorted(unknown)}; kinds: {KINDS}")
    out: list[JudgeExample] = []
    if "pointwise" in kinds or "stepwise" in kinds:
        demos = demonstrations(
            task, start=start, num=num, split=split, seed=seed, error_rate=error_rate
        )
        for problem, completion in demos:
            if "pointwise" in kinds:
                out.append(pointwise_example(task, problem, completion, rationale=rationale))
            if "stepwise" in kinds:
                out.append(stepwise_example(task, problem, completion, rationale=rationale))
    if "pairwise" in kinds:
        pairs = preference_pairs(task, start=start, num=num, split=split, seed=seed)
        problems = task.problems(start, num, split=split, seed=seed)
        for problem, pair in zip(problems, pairs):
            out.extend(
                pairwise_examples(task, problem, pair.chosen, pair.rejected, rationale=rationale)
            )
    return out


# ---------------------------------------------------------------- from JSONL


@dataclasses.dataclass(frozen=True)
class LabeledSolution(_Record):
    """A solution with a correctness label: `{"problem", "solution", "label"}`.

    `label` is true/false or 0/1; any other key is kept in `fields`.
    """

    problem: str
    solution: str
    label: bool
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("problem", "solution", "label")
    OPTIONAL: ClassVar = ()

    def __post_init__(self):
        _string(self.problem, "problem", allow_empty=False)
        _string(self.solution, "solution")
        label = self.label
        if isinstance(label, bool):
            return
        if isinstance(label, int) and label in (0, 1):
            object.__setattr__(self, "label", bool(label))
            return
        raise DataFormatError(f"label must be true/false or 0/1, got {label!r}")


def read_labeled_solutions(path: str | os.PathLike) -> list[LabeledSolution]:
    """`{"problem", "solution", "label"}` rows; a bad row raises DataFormatError at file:line."""
    return read_jsonl(path, LabeledSolution)


def pointwise_examples_from_labels(records: Sequence[LabeledSolution]) -> list[JudgeExample]:
    """Pointwise examples without rationale (a label says nothing about why)."""
    return [
        JudgeExample(
            prompt=pointwise_prompt(r.problem, r.solution),
            target=pointwise_target(r.label),
            kind="pointwise",
            label="Yes" if r.label else "No",
            fields={**r.fields, "problem": r.problem, "solution": r.solution},
        )
        for r in records
    ]


def pairwise_examples_from_pairs(pairs: Sequence[PreferencePair]) -> list[JudgeExample]:
    """Both orders of each preference pair, without rationale; ties are skipped.

    Read the file with `read_jsonl(path, PreferencePair)`.
    """
    out = []
    for pair in pairs:
        if pair.tie:
            continue
        for a_is_chosen in (True, False):
            a, b = (pair.chosen, pair.rejected) if a_is_chosen else (pair.rejected, pair.chosen)
            out.append(
                JudgeExample(
                    prompt=pairwise_prompt(pair.prompt, a, b),
                    target=pairwise_target(a_is_chosen),
                    kind="pairwise",
                    label="A" if a_is_chosen else "B",
                    fields={**pair.fields, "problem": pair.prompt, "a": a, "b": b},
                )
            )
    return out


def shuffled(examples: Sequence[JudgeExample], *, seed: int) -> list[JudgeExample]:
    """`examples` in a seeded random order (pairwise orders are generated adjacent)."""
    order = np.random.default_rng([seed, 0x1D6E]).permutation(len(examples))
    return [examples[i] for i in order]
