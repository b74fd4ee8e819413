"""Offline datasets built from procedural tasks, with labels exact by construction.

  pairs = preference_pairs(task, num=1000, split="train", seed=0)
  ranked = ranked_lists(task, num=200, num_responses=4)
  steps = step_labels(task, num=1000, error_rate=0.5)
  rated = ratings(task, num=1000, error_rate=0.5)

Every record is a pure function of (task, split, seed, index): record i uses
problem i and a generator seeded by (seed, i), so datasets are reproducible
and `start` continues one where another stopped. Labels come from the task's
grader (see `rewardjax.data.tasks.base`), never from the generator's intent.

  python -m rewardjax.data.generators --task=countdown --format=step_labels \\
      --num=5000 --out=/tmp/countdown_steps.jsonl
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

from rewardjax.data.formats import (
    PreferencePair,
    RankedList,
    Ratings,
    StepLabels,
    write_jsonl,
)
from rewardjax.data.tasks.base import Grade, Problem, Task

__all__ = [
    "demonstrations",
    "example_rng",
    "preference_pairs",
    "ranked_lists",
    "ratings",
    "score_of",
    "step_labels",
    "step_labels_from_grade",
]

# Distinct streams for the different generators, so that e.g. the rejected
# response of pair i is not the demonstration SFT saw for problem i.
_STREAMS = {"demonstration": 0, "pair": 1, "ranked": 2, "steps": 3, "ratings": 4}


def example_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """The generator for record `index` of one stream ("demonstration", "pair", ...)."""
    return np.random.default_rng([seed, index, _STREAMS[stream], 0x5EED])


def _problems(
    task: Task, start: int, num: int, split: str, seed: int
) -> Iterator[tuple[int, Problem]]:
    for i in range(start, start + num):
        yield i, task.problem(i, split=split, seed=seed)


def demonstrations(
    task: Task,
    *,
    start: int = 0,
    num: int,
    split: str = "train",
    seed: int = 0,
    error_rate: float = 0.0,
) -> list[tuple[Problem, str]]:
    """(problem, completion) pairs for SFT; completion i is wrong with prob. `error_rate`."""
    return [
        (p, task.demonstration(p, example_rng(seed, i, "demonstration"), error_rate=error_rate))
        for i, p in _problems(task, start, num, split, seed)
    ]


def score_of(grade: Grade) -> float:
    """Share of the reference lines a completion gets right before its first error.

    1.0 for a complete, correct solution; k / S when the first error is at line
    k of S. A later mistake scores higher, which ranks partial solutions.
    """
    if grade.first_error is None:
        return 1.0
    return grade.first_error / grade.num_reference_steps


def preference_pairs(
    task: Task,
    *,
    start: int = 0,
    num: int,
    split: str = "train",
    seed: int = 0,
) -> list[PreferencePair]:
    """Pairs (reference solution ≻ a solution with one propagated error).

    `margin` = score(chosen) − score(rejected) (see `score_of`): larger when
    the rejected solution goes wrong earlier.
    """
    out = []
    for i, p in _problems(task, start, num, split, seed):
        chosen = p.reference_completion
        rejected = task.demonstration(p, example_rng(seed, i, "pair"), error_rate=1.0)
        good, bad = task.grade(p, chosen), task.grade(p, rejected)
        if not good.correct or bad.correct:
            raise AssertionError(f"{task}: labels disagree with the grader on problem {p.uid}")
        out.append(
            PreferencePair(
                prompt=p.prompt,
                chosen=chosen,
                rejected=rejected,
                margin=score_of(good) - score_of(bad),
                fields={"uid": p.uid, "answer": p.answer},
            )
        )
    return out


def ranked_lists(
    task: Task,
    *,
    start: int = 0,
    num: int,
    num_responses: int = 4,
    split: str = "train",
    seed: int = 0,
    max_draws: int = 64,
) -> list[RankedList]:
    """Lists of distinct responses (the reference plus erroneous ones), scored by `score_of`.

    Problems that cannot produce `num_responses` distinct responses in
    `max_draws` demonstrations are skipped, so fewer than `num` lists may return.
    """
    if num_responses < 2:
        raise ValueError(f"num_responses must be >= 2, got {num_responses}")
    out = []
    for i, p in _problems(task, start, num, split, seed):
        rng = example_rng(seed, i, "ranked")
        responses = [p.reference_completion]
        for _ in range(max_draws):
            if len(responses) == num_responses:
                break
            candidate = task.demonstration(p, rng, error_rate=1.0)
            if candidate not in responses:
                responses.append(candidate)
        if len(responses) < num_responses:
            continue
        order = rng.permutation(num_responses)  # the reference is not always first
        responses = [responses[k] for k in order]
        scores = [score_of(task.grade(p, r)) for r in responses]
        out.append(
            RankedList(
                prompt=p.prompt,
                responses=responses,
                scores=scores,
                fields={"uid": p.uid, "answer": p.answer},
            )
        )
    return out


def step_labels_from_grade(problem: Problem, completion: str, grade: Grade) -> StepLabels:
    """A StepLabels record for one graded completion: hard labels = `step_correct`.

    The steps are the graded lines (through the first answer line).
    """
    lines = completion.strip().split("\n")[: grade.num_steps] if grade.num_steps else []
    if not lines:
        raise ValueError(f"{problem.uid}: an empty completion has no steps to label")
    return StepLabels(
        prompt=problem.prompt,
        steps=lines,
        labels=[1.0 if c else 0.0 for c in grade.step_correct],
        first_error=grade.first_error,
        correct=grade.correct,
        fields={"uid": problem.uid, "answer": problem.answer},
    )


def step_labels(
    task: Task,
    *,
    start: int = 0,
    num: int,
    error_rate: float = 0.5,
    split: str = "train",
    seed: int = 0,
) -> list[StepLabels]:
    """Demonstrations (wrong with probability `error_rate`) labelled by the step checker."""
    out = []
    for i, p in _problems(task, start, num, split, seed):
        completion = task.demonstration(p, example_rng(seed, i, "steps"), error_rate=error_rate)
        out.append(step_labels_from_grade(p, completion, task.grade(p, completion)))
    return out


# Attributes of generated ratings: the grader's outcome, the share of the
# reference lines right before the first error, and the length in hundreds of
# characters (a rating that says nothing about correctness).
RATING_ATTRIBUTES = ("correctness", "progress", "length")


def ratings(
    task: Task,
    *,
    start: int = 0,
    num: int,
    error_rate: float = 0.5,
    split: str = "train",
    seed: int = 0,
) -> list[Ratings]:
    """Demonstrations (wrong with probability `error_rate`) rated on RATING_ATTRIBUTES.

    correctness: 1.0 if the grader accepts the answer, else 0.0; progress:
    `score_of` the grade; length: len(response) / 100.
    """
    out = []
    for i, p in _problems(task, start, num, split, seed):
        response = task.demonstration(p, example_rng(seed, i, "ratings"), error_rate=error_rate)
        grade = task.grade(p, response)
        out.append(
            Ratings(
                prompt=p.prompt,
                response=response,
                ratings={
                    "correctness": float(grade.correct),
                    "progress": score_of(grade),
                    "length": len(response) / 100.0,
                },
                fields={"uid": p.uid, "answer": p.answer},
            )
        )
    return out


_GENERATORS = {
    "preference_pairs": preference_pairs,
    "ranked_lists": ranked_lists,
    "ratings": ratings,
    "step_labels": step_labels,
}


def main(argv: list[str] | None = None) -> None:
    from rewardjax.data.tasks import make_task

    parser = argparse.ArgumentParser(description="Write a procedural offline dataset as JSONL.")
    parser.add_argument("--task", required=True, help="TASKS key, e.g. arithmetic_chain")
    parser.add_argument("--format", required=True, choices=sorted(_GENERATORS))
    parser.add_argument("--num", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    records = _GENERATORS[args.format](
        make_task(args.task), num=args.num, split=args.split, seed=args.seed
    )
    n = write_jsonl(args.out, records)
    print(f"wrote {n} {args.format} records to {args.out}")


if __name__ == "__main__":
    main()
