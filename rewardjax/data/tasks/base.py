"""Procedural verifiable tasks: problems, demonstrations and a step-level grader.

A task turns an integer into a problem, deterministically:

  task = TASKS.get("arithmetic_chain")(num_steps=3)
  p = task.problem(17, split="train", seed=0)
  p.prompt      # "Q: 7+5-3+8\\n"
  p.steps       # ["7+5=12", "12-3=9", "9+8=17", "A: 17"]  (reference lines)
  task.grade(p, "7+5=12\\n12-3=8\\n8+8=16\\nA: 16").first_error   # 1

so a data iterator's whole state is an integer, and a resumed run sees the
same problems as one that never stopped.

**Completions.** A completion is a sequence of lines (the model emits EOS
after the last one). The reference solution has S lines: S − 1 work lines,
one operation each, then the answer line `A: <value>`; it is
`"\\n".join(problem.steps)`.

**Step grading** (the ground truth for process rewards and PRMs). Line k of
a completion is compared with the role of reference line k:

- `step_valid[k]`: line k is well formed, is the kind of line expected at
  position k (work line or answer line), its arithmetic is right, and it
  follows from the completion's *own* previous lines (it uses the value the
  previous line wrote, or the operands still available). A step that is right
  locally but builds on an earlier mistake is valid.
- `step_correct[k]`: `step_valid[k]`, every earlier line is correct, and the
  line keeps the solution on a path to the right answer (for the answer
  line: its value is the gold answer). Equivalently: the line continues from
  the previous *correct* state, so after the first error every later line
  is incorrect. Labels are therefore monotone: [1, 1, 0, 0].
- `first_error`: the index of the first incorrect line; when every written
  line is correct but the completion stops early, the index of the first
  missing line (`num_steps`); None only for a complete, correct solution.
- `correct` (the outcome): the final answer is right. For tasks whose answer
  is a single number, that is the answer line's value, so a wrong step
  followed by a lucky answer is `correct` with a `first_error` (a "miracle
  step"); countdown's answer is the derivation itself, so there `correct`
  also needs every line correct.
- `answer`: the value on the first `A:` line (canonical form), else None.
  Lines after it are not graded.
- `well_formed`: every graded line parses, an answer line exists, and
  nothing but whitespace follows it.

Graders accept any string: garbage lines are invalid steps, never exceptions.

**Splits.** Each canonical problem (e.g. countdown numbers sorted) belongs to
`train` or `test` by a hash of its content, independent of seed, index and
difficulty; `problem(index, split=...)` draws candidates until one falls in the
requested split. The splits therefore never share a problem.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

SPLITS = ("train", "test")
# Attempts before giving up on finding a problem of the requested split: with
# test_fraction = 0.1 the chance of needing more is 0.9**10000.
_MAX_ATTEMPTS = 10_000

# Numbers are bounded so that garbage like "9" * 10**5 costs nothing to parse.
NUMBER = r"-?\d{1,15}"
ANSWER_RE = re.compile(rf"^\s*A\s*:\s*({NUMBER})\s*$")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem.

    Attributes:
      prompt: text given to the model, ending in a newline.
      answer: the gold final answer in canonical form.
      steps: reference solution lines, the answer line (`A: <answer>`) last.
        Empty for problems read from a dataset without reference solutions.
      uid: stable id of the canonical problem (equal problems share it).
      fields: JSON-serialisable data the grader needs besides the prompt.
    """

    prompt: str
    answer: str
    steps: list[str]
    uid: str
    fields: dict[str, Any]

    @property
    def reference_completion(self) -> str:
        """The reference solution, one step per line, without EOS."""
        return "\n".join(self.steps)


@dataclasses.dataclass(frozen=True)
class Grade:
    """The grader's verdict on one completion; see the module docstring.

    Attributes:
      correct: the outcome (final answer) is right.
      answer: the value on the first `A:` line, canonical, or None.
      step_correct: [S'] per graded line, continues the correct solution.
      step_valid: [S'] per graded line, locally right given the completion's
        own previous lines.
      first_error: index of the first incorrect (or first missing) line, or None.
      num_steps: S', the number of graded lines (up to the first answer line).
      well_formed: the completion follows the line format exactly.
      num_reference_steps: S, lines in the reference solution.
    """

    correct: bool
    answer: str | None
    step_correct: list[bool]
    step_valid: list[bool]
    first_error: int | None
    num_steps: int
    well_formed: bool
    num_reference_steps: int

    @property
    def reward(self) -> float:
        """1.0 for a correct outcome, else 0.0."""
        return 1.0 if self.correct else 0.0


def split_of(task_name: str, key: str, test_fraction: float) -> str:
    """The split ("train" or "test") a canonical problem belongs to."""
    digest = hashlib.blake2b(f"{task_name}|{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return "test" if u < test_fraction else "train"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def split_lines(completion: str) -> tuple[list[str], bool]:
    """Lines to grade (through the first answer line) and whether nothing follows it."""
    text = completion.strip()
    if not text:
        return [], False
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if ANSWER_RE.match(line):
            rest = lines[i + 1 :]
            return lines[: i + 1], not any(r.strip() for r in rest)
    return lines, False


def parse_answer(line: str) -> int | None:
    m = ANSWER_RE.match(line)
    return None if m is None else int(m.group(1))


def finish_grade(
    *,
    valid: list[bool],
    on_path: list[bool],
    parsed: list[bool],
    lines: list[str],
    tail_clean: bool,
    num_reference_steps: int,
    correct_outcome: bool | None,
) -> Grade:
    """Assembles a Grade from per-line verdicts.

    Args:
      valid: per line, locally valid.
      on_path: per line, valid and on a path to the gold answer given that
        every earlier line was correct.
      parsed: per line, the line parses as a work line or an answer line.
      lines: the graded lines.
      tail_clean: nothing but whitespace follows the answer line.
      num_reference_steps: S.
      correct_outcome: the outcome verdict; None means "every line correct and
        the solution complete" (tasks whose answer is the derivation).
    """
    correct: list[bool] = []
    ok = True
    for v in on_path:
        ok = ok and v
        correct.append(ok)
    first_error = next((i for i, c in enumerate(correct) if not c), None)
    complete = len(lines) == num_reference_steps
    if first_error is None and not complete:
        first_error = len(lines)
    answer_value = parse_answer(lines[-1]) if lines else None
    answer = None if answer_value is None else str(answer_value)
    if correct_outcome is None:
        correct_outcome = first_error is None
    well_formed = answer is not None and all(parsed) and tail_clean
    return Grade(
        correct=bool(correct_outcome),
        answer=answer,
        step_correct=correct,
        step_valid=list(valid),
        first_error=first_error,
        num_steps=len(lines),
        well_formed=well_formed,
        num_reference_steps=num_reference_steps,
    )


class Task(abc.ABC):
    """A procedural, verifiable task; subclasses define sampling and checking.

    Subclasses implement `_sample(rng) -> content`, `canonical_key(content)`,
    `_build(content) -> Problem`, `from_fields(fields) -> Problem`,
    `demonstration` and `grade`.
    """

    name: ClassVar[str]

    def __init__(self, *, test_fraction: float = 0.1):
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = test_fraction

    # ------------------------------------------------------------ problems

    @abc.abstractmethod
    def _sample(self, rng: np.random.Generator) -> Any:
        """A random problem content (e.g. terms and operators)."""

    @abc.abstractmethod
    def canonical_key(self, content: Any) -> str:
        """A string equal for problems that are the same up to presentation."""

    @abc.abstractmethod
    def _build(self, content: Any) -> Problem:
        """The Problem for `content`."""

    @abc.abstractmethod
    def from_fields(self, fields: Mapping[str, Any]) -> Problem:
        """Rebuilds a Problem from its `fields` (e.g. columns passed to a reward)."""

    def difficulty(self) -> dict[str, Any]:
        """The constructor's difficulty keywords (recorded in configs and logs)."""
        return {}

    def problem(self, index: int, *, split: str = "train", seed: int = 0) -> Problem:
        """The `index`-th problem of `split` for `seed`: a pure function of its arguments."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if index < 0:
            raise ValueError(f"problem index must be >= 0, got {index}")
        salt = _stable_int(f"{self.name}|{sorted(self.difficulty().items())}")
        split_code = SPLITS.index(split)
        for attempt in range(_MAX_ATTEMPTS):
            rng = np.random.default_rng([salt, seed, split_code, index, attempt])
            content = self._sample(rng)
            if split_of(self.name, self.canonical_key(content), self.test_fraction) == split:
                return self._build(content)
        raise RuntimeError(
            f"{self.name}{self.difficulty()}: found no {split} problem in {_MAX_ATTEMPTS} "
            "draws; the problem space is too small for this split"
        )

    def problems(
        self, start: int, count: int, *, split: str = "train", seed: int = 0
    ) -> list[Problem]:
        """Problems `start .. start + count - 1` of `split`."""
        return [self.problem(i, split=split, seed=seed) for i in range(start, start + count)]

    # ------------------------------------------------------------ solutions

    @abc.abstractmethod
    def demonstration(
        self, problem: Problem, rng: np.random.Generator, *, error_rate: float = 0.0
    ) -> str:
        """A solution in the reference format; with probability `error_rate` it
        contains one wrong step, placed uniformly among the work lines, whose
        wrong value propagates through the later lines to a wrong answer."""

    @abc.abstractmethod
    def grade(self, problem: Problem, completion: str) -> Grade:
        """Grades the outcome and every line of `completion` (text before EOS)."""

    # ------------------------------------------------------------ rewards

    def reward(
        self, prompts: Sequence[str], completions: Sequence[str], **fields: Sequence[Any]
    ) -> list[float]:
        """Outcome reward in {0, 1}, in the reward-function interface.

        `fn(prompts, completions, **fields) -> list[float]`: `fields` are
        per-row columns, as produced by `problem_columns(problems)`; the
        problem's own fields (e.g. `terms`, `ops`) must be among them; `answer`,
        `uid` and other extra columns are ignored.
        """
        return [g.reward for g in self.grade_batch(prompts, completions, **fields)]

    def grade_batch(
        self, prompts: Sequence[str], completions: Sequence[str], **fields: Sequence[Any]
    ) -> list[Grade]:
        """`grade` over per-row columns (see `reward`)."""
        if len(prompts) != len(completions):
            raise ValueError(
                f"{len(prompts)} prompts but {len(completions)} completions; pass one "
                "prompt per completion (repeat each prompt G times)"
            )
        grades = []
        for i, completion in enumerate(completions):
            row = {k: v[i] for k, v in fields.items()}
            grades.append(self.grade(self.from_fields(row), completion))
        return grades

    def __repr__(self) -> str:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.difficulty().items())
        return f"{type(self).__name__}({kwargs})"


def problem_columns(problems: Sequence[Problem]) -> dict[str, list[Any]]:
    """Per-row columns for a reward function: `answer`, `uid` and every field."""
    columns: dict[str, list[Any]] = {"answer": [p.answer for p in problems]}
    columns["uid"] = [p.uid for p in problems]
    keys: list[str] = []
    for p in problems:
        keys.extend(k for k in p.fields if k not in keys)
    for k in keys:
        if k in columns:
            raise ValueError(f"problem field {k!r} clashes with a column of the same name")
        columns[k] = [p.fields.get(k) for p in problems]
    return columns


def pick_error_step(rng: np.random.Generator, num_work_steps: int, error_rate: float) -> int | None:
    """The work line a demonstration gets wrong, or None (probability 1 − error_rate)."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    if num_work_steps == 0 or rng.random() >= error_rate:
        return None
    return int(rng.integers(num_work_steps))


def wrong_value(
    rng: np.random.Generator, value: int, *, low: int | None = 0, high: int | None = None
) -> int:
    """`value` shifted by ±1..3: different from it, within [low, high] where given."""
    candidates = [
        value + d
        for d in (-3, -2, -1, 1, 2, 3)
        if (low is None or value + d >= low) and (high is None or value + d <= high)
    ]
    return int(candidates[int(rng.integers(len(candidates)))])
