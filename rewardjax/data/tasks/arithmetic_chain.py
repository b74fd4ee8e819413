"""Multi-step arithmetic chains, evaluated left to right, one operation per line.

  prompt      "Q: 7+5-3+8\\n"
  completion  "7+5=12\\n12-3=9\\n9+8=17\\nA: 17"

Work line k must be `<state>{op_k}{term_k}=<value>`: it starts from the value
the previous line wrote (the first term for k = 0), applies the k-th operator
and term of the prompt, and states the right result. It is correct when it
also starts from the true running value, i.e. every earlier line is correct.
The answer line is valid when it repeats the last written value and correct
when that value is the gold answer; the outcome is the answer alone.
"""

from __future__ import annotations

import re
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

STEP_RE = re.compile(rf"^\s*({NUMBER})\s*([+\-*])\s*({NUMBER})\s*=\s*({NUMBER})\s*$")


def apply_op(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


@TASKS.register("arithmetic_chain")
class ArithmeticChain(Task):
    """Left-to-right chains `a0 op1 a1 ... op_n a_n`, one operation per line.

    Args:
      num_steps: operations per chain, an int or an inclusive (min, max) range.
      min_operand, max_operand: inclusive operand range.
      ops: operators to draw from, a subset of "+-*".
      allow_negative: allow negative running values; when False a "-" is
        given a term no larger than the running value.
      test_fraction: share of canonical problems in the test split.
    """

    name = "arithmetic_chain"

    def __init__(
        self,
        *,
        num_steps: int | tuple[int, int] = 3,
        min_operand: int = 1,
        max_operand: int = 9,
        ops: str = "+-",
        allow_negative: bool = False,
        test_fraction: float = 0.1,
    ):
        super().__init__(test_fraction=test_fraction)
        lo, hi = (
            (num_steps, num_steps) if isinstance(num_steps, int | np.integer) else tuple(num_steps)
        )
        if not 1 <= lo <= hi:
            raise ValueError(f"num_steps must be >= 1 (or a range lo <= hi), got {num_steps}")
        if not 0 <= min_operand <= max_operand:
            raise ValueError(
                f"need 0 <= min_operand <= max_operand, got {min_operand}, {max_operand}"
            )
        if not ops or set(ops) - set("+-*"):
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
        if not allow_negative and set(ops) == {"-"}:
            raise ValueError("ops='-' alone needs allow_negative=True")
        self.steps_range = (int(lo), int(hi))
        self.min_operand, self.max_operand = int(min_operand), int(max_operand)
        self.ops = ops
        self.allow_negative = allow_negative

    def difficulty(self) -> dict[str, Any]:
        return dict(
            num_steps=self.steps_range,
            min_operand=self.min_operand,
            max_operand=self.max_operand,
            ops=self.ops,
            allow_negative=self.allow_negative,
        )

    def _sample(self, rng: np.random.Generator) -> tuple[tuple[int, ...], str]:
        n = int(rng.integers(self.steps_range[0], self.steps_range[1] + 1))
        lo, hi = self.min_operand, self.max_operand
        terms = [int(rng.integers(lo, hi + 1))]
        ops = []
        value = terms[0]
        for _ in range(n):
            op = self.ops[int(rng.integers(len(self.ops)))]
            if op == "-" and not self.allow_negative:
                if value < lo:
                    others = self.ops.replace("-", "")
                    op = others[int(rng.integers(len(others)))]
                    term = int(rng.integers(lo, hi + 1))
                else:
                    term = int(rng.integers(lo, min(hi, value) + 1))
            else:
                term = int(rng.integers(lo, hi + 1))
            value = apply_op(value, op, term)
            terms.append(term)
            ops.append(op)
        return tuple(terms), "".join(ops)

    def canonical_key(self, content: tuple[tuple[int, ...], str]) -> str:
        return _expression(*content)

    def _build(self, content: tuple[tuple[int, ...], str]) -> Problem:
        terms, ops = content
        expression = _expression(terms, ops)
        steps, value = [], terms[0]
        for op, term in zip(ops, terms[1:]):
            new = apply_op(value, op, term)
            steps.append(f"{value}{op}{term}={new}")
            value = new
        steps.append(f"A: {value}")
        return Problem(
            prompt=f"Q: {expression}\n",
            answer=str(value),
            steps=steps,
            uid=f"{self.name}:{expression}",
            fields={"terms": list(terms), "ops": ops},
        )

    def from_fields(self, fields: Mapping[str, Any]) -> Problem:
        terms, ops = tuple(int(t) for t in fields["terms"]), str(fields["ops"])
        if len(terms) != len(ops) + 1:
            raise ValueError(f"{self.name}: {len(terms)} terms do not fit {len(ops)} operators")
        return self._build((terms, ops))

    def demonstration(
        self, problem: Problem, rng: np.random.Generator, *, error_rate: float = 0.0
    ) -> str:
        terms, ops = problem.fields["terms"], problem.fields["ops"]
        error_step = pick_error_step(rng, len(ops), error_rate)
        low = None if self.allow_negative else 0
        lines, value = [], terms[0]
        for k, (op, term) in enumerate(zip(ops, terms[1:])):
            new = apply_op(value, op, term)
            if k == error_step:
                new = wrong_value(rng, new, low=low)
            lines.append(f"{value}{op}{term}={new}")
            value = new
        lines.append(f"A: {value}")
        return "\n".join(lines)

    def grade(self, problem: Problem, completion: str) -> Grade:
        terms, ops = problem.fields["terms"], problem.fields["ops"]
        n = len(ops)
        lines, tail_clean = split_lines(completion)
        valid, parsed = [], []
        previous: int | None = terms[0]  # value the next work line must start from
        for k, line in enumerate(lines):
            m = STEP_RE.match(line)
            answer = parse_answer(line)
            parsed.append(m is not None or answer is not None)
            if k < n and m is not None:
                a, op, b, value = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
                ok = a == previous and op == ops[k] and b == terms[k + 1]
                valid.append(ok and value == apply_op(a, op, b))
                previous = value
            elif k == n and answer is not None:
                valid.append(previous is not None and answer == previous)
            else:
                valid.append(False)
                previous = None
        # Given every earlier line correct, a valid line starts from the true running
        # value, so valid lines are on the solution path.
        answer_value = parse_answer(lines[-1]) if lines else None
        return finish_grade(
            valid=valid,
            on_path=valid,
            parsed=parsed,
            lines=lines,
            tail_clean=tail_clean,
            num_reference_steps=n + 1,
            correct_outcome=answer_value is not None and str(answer_value) == problem.answer,
        )


def _expression(terms: tuple[int, ...], ops: str) -> str:
    out = [str(terms[0])]
    for op, term in zip(ops, terms[1:]):
        out.append(f"{op}{term}")
    return "".join(out)
