"""Countdown: combine all the given numbers into the target, one operation per line.

  prompt      "Q: 3 5 7 -> 22\\n"
  completion  "3*5=15\\n15+7=22\\nA: 22"

Rules (as in the Countdown numbers game): each line takes two numbers still
available (given, or written by an earlier line), applies an operator from
the task's set, and makes their result available instead; every number is
used exactly once, so a solution of n numbers has n − 1 work lines; results
must be non-negative integers (division only when exact).

Work line k is valid when its operands are available after the completion's
own earlier lines and its arithmetic follows the rules; it is correct when,
in addition, every earlier line is correct and the target can still be
reached from the numbers now available (an exhaustive search), so a legal
move into a dead end is the first error. The answer line is valid when it
states the one remaining number and correct when that number is the target.
The outcome is the derivation: `correct` iff every line is correct and the
solution is complete.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from rewardjax.data.tasks.base import (
    NUMBER,
    Grade,
    Problem,
    Task,
    finish_grade,
    parse_answer,
    pick_error_step,
    split_lines,
    wrong_value,
)
from rewardjax.registry import TASKS

STEP_RE = re.compile(rf"^\s*({NUMBER})\s*([+\-*/])\s*({NUMBER})\s*=\s*({NUMBER})\s*$")


def legal_result(a: int, op: str, b: int) -> int | None:
    """a op b under the game's rules, or None when the move is illegal."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a >= b else None
    if op == "*":
        return a * b
    if op == "/":
        return a // b if b != 0 and a % b == 0 else None
    return None


def _raw_result(a: int, op: str, b: int) -> int:
    """What a careless solver writes: plain arithmetic, floor division."""
    if op == "/":
        return a // b if b else 0
    return {"+": a + b, "-": a - b, "*": a * b}[op]


@functools.lru_cache(maxsize=1 << 16)
def reachable(numbers: tuple[int, ...], target: int, ops: str) -> bool:
    """Whether `numbers` (sorted) combine, all of them, into `target` under `ops`."""
    if len(numbers) == 1:
        return numbers[0] == target
    n = len(numbers)
    for i in range(n):
        for j in range(n):
            if i == j or (numbers[i] == numbers[j] and i > j):
                continue
            rest = [numbers[k] for k in range(n) if k not in (i, j)]
            for op in ops:
                if op in "+*" and i > j:
                    continue  # commutative: each unordered pair once
                c = legal_result(numbers[i], op, numbers[j])
                if c is not None and reachable(tuple(sorted([*rest, c])), target, ops):
                    return True
    return False


@TASKS.register("countdown")
class Countdown(Task):
    """Reach a target from `num_numbers` numbers with + − × (÷), all numbers used once.

    Args:
      num_numbers: numbers given (n − 1 work lines).
      min_number, max_number: inclusive range of the given numbers.
      ops: operators, a subset of "+-*/".
      max_target: largest target generated (None: no limit).
      test_fraction: share of canonical problems in the test split.
    """

    name = "countdown"

    def __init__(
        self,
        *,
        num_numbers: int = 3,
        min_number: int = 1,
        max_number: int = 9,
        ops: str = "+-*",
        max_target: int | None = None,
        test_fraction: float = 0.1,
    ):
        super().__init__(test_fraction=test_fraction)
        if not 2 <= num_numbers <= 6:
            raise ValueError(f"num_numbers must be in [2, 6], got {num_numbers}")
        if not 1 <= min_number <= max_number:
            raise ValueError(f"need 1 <= min_number <= max_number, got {min_number}, {max_number}")
        if not ops or set(ops) - set("+-*/"):
            raise ValueError(f"ops must be a non-empty subset of '+-*/', got {ops!r}")
        self.num_numbers = int(num_numbers)
        self.min_number, self.max_number = int(min_number), int(max_number)
        self.ops = "".join(sorted(set(ops), key="+-*/".index))
        self.max_target = max_target

    def difficulty(self) -> dict[str, Any]:
        return dict(
            num_numbers=self.num_numbers,
            min_number=self.min_number,
            max_number=self.max_number,
            ops=self.ops,
            max_target=self.max_target,
        )

    def _sample(self, rng: np.random.Generator):
        while True:
            numbers = [
                int(x) for x in rng.integers(self.min_number, self.max_number + 1, self.num_numbers)
            ]
            state, plan = list(numbers), []
            while len(state) > 1:
                i, j = (int(x) for x in rng.choice(len(state), size=2, replace=False))
                a, b = state[i], state[j]
                # Moves that would make a zero or need a fraction are redrawn.
                choices = [
                    op
                    for op in self.ops
                    if (op != "-" or a != b) and (op != "/" or (max(a, b) % min(a, b) == 0))
                ]
                if not choices:
                    choices = ["+"] if "+" in self.ops else list(self.ops)
                op = choices[int(rng.integers(len(choices)))]
                if op in "-/" and a < b:
                    i, j, a, b = j, i, b, a
                c = legal_result(a, op, b)
                if c is None:
                    break
                plan.append((i, j, op))
                state = [x for k, x in enumerate(state) if k not in (i, j)] + [c]
            if len(state) == 1 and state[0] >= 1:
                if self.max_target is None or state[0] <= self.max_target:
                    return tuple(numbers), state[0], tuple(plan)

    def canonical_key(self, content) -> str:
        numbers, target, _ = content
        return f"{' '.join(map(str, sorted(numbers)))}->{target}"

    def _build(self, content) -> Problem:
        numbers, target, plan = content
        steps, state = [], list(numbers)
        for i, j, op in plan:
            a, b = state[i], state[j]
            c = legal_result(a, op, b)
            steps.append(f"{a}{op}{b}={c}")
            state = [x for k, x in enumerate(state) if k not in (i, j)] + [c]
        steps.append(f"A: {target}")
        return Problem(
            prompt=f"Q: {' '.join(map(str, numbers))} -> {target}\n",
            answer=str(target),
            steps=steps,
            uid=f"{self.name}:{self.canonical_key(content)}",
            fields={
                "numbers": list(numbers),
                "target": target,
                "plan": [[i, j, op] for i, j, op in plan],
            },
        )

    def from_fields(self, fields: Mapping[str, Any]) -> Problem:
        numbers = tuple(int(x) for x in fields["numbers"])
        plan = tuple((int(i), int(j), str(op)) for i, j, op in fields["plan"])
        return self._build((numbers, int(fields["target"]), plan))

    def demonstration(
        self, problem: Problem, rng: np.random.Generator, *, error_rate: float = 0.0
    ) -> str:
        plan = problem.fields["plan"]
        error_step = pick_error_step(rng, len(plan), error_rate)
        lines, state = [], list(problem.fields["numbers"])
        for k, (i, j, op) in enumerate(plan):
            a, b = state[i], state[j]
            c = _raw_result(a, op, b)
            if k == error_step:
                c = wrong_value(rng, c, low=0)
            lines.append(f"{a}{op}{b}={c}")
            state = [x for m, x in enumerate(state) if m not in (i, j)] + [c]
        lines.append(f"A: {state[0]}")
        return "\n".join(lines)

    def grade(self, problem: Problem, completion: str) -> Grade:
        numbers = problem.fields["numbers"]
        target = int(problem.fields["target"])
        n_work = len(numbers) - 1
        lines, tail_clean = split_lines(completion)
        valid, on_path, parsed = [], [], []
        state: Counter | None = Counter(numbers)  # numbers available to the next line
        for k, line in enumerate(lines):
            m = STEP_RE.match(line)
            answer = parse_answer(line)
            parsed.append(m is not None or answer is not None)
            if k < n_work and m is not None and state is not None:
                a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
                need = Counter([a, b])
                available = op in self.ops and all(state[x] >= cnt for x, cnt in need.items())
                ok = available and legal_result(a, op, b) == c
                valid.append(ok)
                if available:
                    state = state - need
                    state[c] += 1
                    on_path.append(
                        ok and reachable(tuple(sorted(state.elements())), target, self.ops)
                    )
                else:
                    state = None
                    on_path.append(False)
            elif k == n_work and answer is not None and state is not None:
                remaining = list(state.elements())
                ok = len(remaining) == 1 and answer == remaining[0]
                valid.append(ok)
                on_path.append(ok and answer == target)
            else:
                valid.append(False)
                on_path.append(False)
                state = None
        return finish_grade(
            valid=valid,
            on_path=on_path,
            parsed=parsed,
            lines=lines,
            tail_clean=tail_clean,
            num_reference_steps=n_work + 1,
            correct_outcome=None,
        )
