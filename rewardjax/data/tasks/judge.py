"""Judging a procedural task's solutions, as a task: the trainers train generative judges with it.

A judge problem shows a problem of the inner task and a solution (pointwise:
"is it correct?") or two (pairwise: "which is correct?"), written by the
inner task's own demonstrations with a propagated wrong step at `error_rate`;
its answer is the verdict the inner grader gives. So

  python -m experiments.train --config configs/judge_arithmetic.py:stage=sft ...
  python -m experiments.train --config configs/judge_arithmetic.py:stage=rl ...

are SFT on judge demonstrations (the verdict, or a rationale naming the first
wrong step then the verdict) and GRPO with the judge as the policy, rewarded
by verdict correctness under the strict format of `rewardjax.judges.formats`
(a reply that does not parse is wrong; `Grade.well_formed` is False) — the
RM-R1 / J1 recipe on verifiable data.

Splits follow the inner task: judge problem i of a split judges inner problem
i of that split, so held-out judge problems hold only held-out problems.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from rewardjax.data.tasks.base import SPLITS, Grade, Problem, Task, _stable_int
from rewardjax.registry import TASKS

KINDS = ("pointwise", "pairwise", "stepwise")


@TASKS.register("judge")
class JudgeTask(Task):
    """Verdicts on solutions of an inner procedural task.

    Args:
      task: the inner task's registry name.
      task_kwargs: its constructor kwargs.
      kind: "pointwise" (verdict Yes/No), "pairwise" (verdict A/B, the
        correct solution in either slot with probability 1/2) or "stepwise" (a
        "Step k: correct|wrong" line per solution line, ThinkPRM / GenPRM; the
        reply is right when every label is).
      rationale: targets write a rationale (the first wrong step) before a
        `Verdict:` line.
      error_rate: pointwise and stepwise: share of solutions with a wrong step.
      master_keys: pointwise: share of solutions replaced by a "master key" answer
        (`rewardjax.judges.robustness`: an empty answer, ":", "Let's solve this
        step by step.", a bare answer line, ...), verdict No: the augmentation
        of "One Token to Fool LLM-as-a-Judge".
    """

    name = "judge"
    # Not a step-graded task: a reply is a verdict, not work lines and an
    # "A:" line; its split follows the inner task's hash, not its own.
    line_format = False
    step_graded = False

    def __init__(
        self,
        *,
        task: str = "arithmetic_chain",
        task_kwargs: Mapping[str, Any] | None = None,
        kind: str = "pointwise",
        rationale: bool = False,
        error_rate: float = 0.5,
        master_keys: float = 0.0,
    ):
        self.inner = TASKS.get(task)(**dict(task_kwargs or {}))
        super().__init__(test_fraction=self.inner.test_fraction)
        if kind not in KINDS:
            raise ValueError(f"judge kind={kind!r}; known: {', '.join(KINDS)}")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"judge error_rate={error_rate} must be in [0, 1]")
        if not 0.0 <= master_keys <= 1.0 or (master_keys and kind != "pointwise"):
            raise ValueError(
                f"judge master_keys={master_keys} must be in [0, 1], and > 0 only for pointwise"
            )
        self.master_keys = float(master_keys)
        self.inner_name, self.inner_kwargs = task, dict(task_kwargs or {})
        self.kind, self.rationale, self.error_rate = kind, bool(rationale), float(error_rate)

    def difficulty(self) -> dict[str, Any]:
        return dict(
            task=self.inner_name,
            kind=self.kind,
            rationale=self.rationale,
            error_rate=self.error_rate,
            master_keys=self.master_keys,
            **self.inner.difficulty(),
        )

    # ------------------------------------------------------------ problems

    def problem(self, index: int, *, split: str = "train", seed: int = 0) -> Problem:
        inner = self.inner.problem(index, split=split, seed=seed)
        salt = _stable_int(f"judge|{sorted(self.difficulty().items())}")
        rng = np.random.default_rng([salt, seed, SPLITS.index(split), index])
        if self.kind == "stepwise":
            solution = self.inner.demonstration(inner, rng, error_rate=self.error_rate)
            return self._stepwise(inner, solution)
        if self.kind == "pointwise":
            solution = self.inner.demonstration(inner, rng, error_rate=self.error_rate)
            if self.master_keys and rng.random() < self.master_keys:
                from rewardjax.judges.robustness import master_keys

                keys = sorted(master_keys(inner).values())
                solution = keys[int(rng.integers(len(keys)))]
            return self._pointwise(inner, solution)
        wrong = self.inner.demonstration(inner, rng, error_rate=1.0)
        good_first = bool(rng.integers(2))
        return self._pairwise(inner, inner.reference_completion, wrong, good_first)

    def _pointwise(self, inner: Problem, solution: str) -> Problem:
        # rewardjax.judges reads rewardjax.data: imported when first used, not at import.
        from rewardjax.judges import formats
        from rewardjax.judges.data import solution_rationale

        grade = self.inner.grade(inner, solution)
        note = solution_rationale(inner, solution, grade) if self.rationale else None
        target = formats.pointwise_target(grade.correct, rationale=note)
        return Problem(
            prompt=formats.pointwise_prompt(inner.prompt, solution, rationale=self.rationale),
            answer=formats.POINTWISE_WORDS[0] if grade.correct else formats.POINTWISE_WORDS[1],
            steps=target.split("\n"),
            uid=f"judge|{inner.uid}|{solution}",
            fields=dict(inner=inner.fields, solution=solution),
        )

    def _stepwise(self, inner: Problem, solution: str) -> Problem:
        from rewardjax.judges import formats
        from rewardjax.judges.data import step_rationales

        grade = self.inner.grade(inner, solution)
        labels = [bool(x) for x in grade.step_correct]
        notes = step_rationales(inner, solution, grade) if self.rationale else None
        return Problem(
            prompt=formats.stepwise_prompt(inner.prompt, solution, rationale=self.rationale),
            answer=formats.POINTWISE_WORDS[0] if all(labels) else formats.POINTWISE_WORDS[1],
            steps=formats.stepwise_target(labels, rationales=notes).split("\n"),
            uid=f"judge|{inner.uid}|{solution}",
            fields=dict(inner=inner.fields, solution=solution, labels=labels),
        )

    def _pairwise(self, inner: Problem, good: str, bad: str, good_first: bool) -> Problem:
        from rewardjax.judges import formats
        from rewardjax.judges.data import solution_rationale

        a, b = (good, bad) if good_first else (bad, good)
        note = None
        if self.rationale:
            slot = "B" if good_first else "A"
            note = f"Solution {slot}: " + solution_rationale(
                inner, bad, self.inner.grade(inner, bad)
            )
        target = formats.pairwise_target(good_first, rationale=note)
        return Problem(
            prompt=formats.pairwise_prompt(inner.prompt, a, b, rationale=self.rationale),
            answer=formats.PAIRWISE_WORDS[0] if good_first else formats.PAIRWISE_WORDS[1],
            steps=target.split("\n"),
            uid=f"judge|{inner.uid}|{a}|{b}",
            fields=dict(inner=inner.fields, good=good, bad=bad, good_first=good_first),
        )

    def from_fields(self, fields: Mapping[str, Any]) -> Problem:
        inner = self.inner.from_fields(fields["inner"])
        if self.kind == "pointwise":
            return self._pointwise(inner, fields["solution"])
        if self.kind == "stepwise":
            return self._stepwise(inner, fields["solution"])
        return self._pairwise(inner, fields["good"], fields["bad"], bool(fields["good_first"]))

    # The judge draws problems through `problem`; these serve the abstract interface.
    def _sample(self, rng):
        raise NotImplementedError("JudgeTask.problem draws judge problems from the inner task")

    def canonical_key(self, content) -> str:
        raise NotImplementedError("JudgeTask problems are keyed by their inner problem")

    def _build(self, content) -> Problem:
        raise NotImplementedError("JudgeTask.problem builds judge problems")

    # ------------------------------------------------------------ solutions

    def demonstration(
        self, problem: Problem, rng: np.random.Generator, *, error_rate: float = 0.0
    ) -> str:
        """The judge's target reply (`error_rate` > 0: the opposite verdict at that rate).

        Stepwise: with `error_rate`, one step label flipped.
        """
        from rewardjax.judges import formats

        if self.kind == "stepwise":
            if not (error_rate and rng.random() < error_rate):
                return problem.reference_completion
            lines = list(problem.steps)
            word, other = formats.STEP_WORDS
            marks = [
                i
                for i, line in enumerate(lines)
                if re.fullmatch(rf"Step \d+: ({word}|{other})", line)
            ]
            i = marks[int(rng.integers(len(marks)))]
            head, _, label = lines[i].rpartition(": ")
            lines[i] = f"{head}: {other if label == word else word}"
            return "\n".join(lines)

        target = problem.reference_completion
        if error_rate and rng.random() < error_rate:
            words = formats.POINTWISE_WORDS if self.kind == "pointwise" else formats.PAIRWISE_WORDS
            other = words[1] if problem.answer == words[0] else words[0]
            lines = target.split("\n")
            last = lines[-1]
            lines[-1] = last[: len(last) - len(problem.answer)] + other
            target = "\n".join(lines)
        return target

    def grade(self, problem: Problem, completion: str) -> Grade:
        """Correct: the reply parses strictly and its verdict is the problem's.

        Stepwise: every step label right (the first-error index then is too).
        """
        from rewardjax.judges import formats

        if self.kind == "stepwise":
            labels = problem.fields["labels"]
            verdict = formats.parse_stepwise(
                completion, rationale=self.rationale, num_steps=len(labels)
            )
            right = verdict.ok and list(verdict.step_labels) == list(labels)
            return Grade(
                correct=right,
                answer=None if verdict.first_error is None else str(verdict.first_error),
                step_correct=[],
                step_valid=[],
                first_error=None,
                num_steps=0,
                well_formed=verdict.ok,
                num_reference_steps=0,
            )
        parse = formats.parse_pointwise if self.kind == "pointwise" else formats.parse_pairwise
        verdict = parse(completion, rationale=self.rationale)
        return Grade(
            correct=verdict.ok and verdict.value == problem.answer,
            answer=verdict.value,
            step_correct=[],
            step_valid=[],
            first_error=None,
            num_steps=0,
            well_formed=verdict.ok,
            num_reference_steps=0,
        )
