"""Column addition with carries, one column per line, least significant first.

  prompt      "Q: 478+356\\n"
  completion  "8+6+0=14\\n7+5+1=13\\n4+3+1=8\\nA: 834"

Work line k is `<digit of x>+<digit of y>+<carry>=<column sum>` for column k
(units first); the carry is the tens digit of the sum the previous line wrote
(0 for the first column). It is valid when the digits are column k's, the
carry follows from the previous written line and the sum is right; correct
when, in addition, every earlier line is correct. The answer line is valid
when it assembles the written column sums (the last line's carry followed by
each column's units digit) and correct when that is the gold sum; the outcome
is the answer alone.
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

STEP_RE = re.compile(rf"^\s*({NUMBER})\s*\+\s*({NUMBER})\s*\+\s*({NUMBER})\s*=\s*({NUMBER})\s*$")


def _digits(x: int, n: int) -> list[int]:
    """The n decimal digits of x, units first."""
    return [(x // 10**k) % 10 for k in range(n)]


@TASKS.register("long_addition")
class LongAddition(Task):
    """Sum of two `num_digits`-digit numbers, written column by column.

    Args:
      num_digits: digits per operand (leading digit non-zero), an int or an
        inclusive (min, max) range; both operands have the same length.
      test_fraction: share of canonical problems in the test split.
    """

    name = "long_addition"

    def __init__(self, *, num_digits: int | tuple[int, int] = 3, test_fraction: float = 0.1):
        super().__init__(test_fraction=test_fraction)
        lo, hi = (
            (num_digits, num_digits)
            if isinstance(num_digits, int | np.integer)
            else tuple(num_digits)
        )
        if not 1 <= lo <= hi <= 15:
            raise ValueError(
                f"num_digits must be in [1, 15] (or a range lo <= hi), got {num_digits}"
            )
        self.digits_range = (int(lo), int(hi))

    def difficulty(self) -> dict[str, Any]:
        return dict(num_digits=self.digits_range)

    def _sample(self, rng: np.random.Generator) -> tuple[int, int]:
        n = int(rng.integers(self.digits_range[0], self.digits_range[1] + 1))
        low = 10 ** (n - 1) if n > 1 else 0
        return int(rng.integers(low, 10**n)), int(rng.integers(low, 10**n))

    def canonical_key(self, content: tuple[int, int]) -> str:
        x, y = sorted(content)
        return f"{x}+{y}"

    def _build(self, content: tuple[int, int]) -> Problem:
        x, y = content
        n = len(str(max(x, y)))
        steps, carry = [], 0
        for a, b in zip(_digits(x, n), _digits(y, n)):
            s = a + b + carry
            steps.append(f"{a}+{b}+{carry}={s}")
            carry = s // 10
        steps.append(f"A: {x + y}")
        return Problem(
            prompt=f"Q: {x}+{y}\n",
            answer=str(x + y),
            steps=steps,
            uid=f"{self.name}:{self.canonical_key(content)}",
            fields={"operands": [x, y]},
        )

    def from_fields(self, fields: Mapping[str, Any]) -> Problem:
        x, y = (int(v) for v in fields["operands"])
        return self._build((x, y))

    def demonstration(
        self, problem: Problem, rng: np.random.Generator, *, error_rate: float = 0.0
    ) -> str:
        x, y = problem.fields["operands"]
        n = len(str(max(x, y)))
        error_step = pick_error_step(rng, n, error_rate)
        lines, carry, total = [], 0, 0
        for k, (a, b) in enumerate(zip(_digits(x, n), _digits(y, n))):
            s = a + b + carry
            if k == error_step:
                s = wrong_value(rng, s, low=0, high=19)
            lines.append(f"{a}+{b}+{carry}={s}")
            total += (s % 10) * 10**k
            carry = s // 10
        lines.append(f"A: {total + carry * 10**n}")
        return "\n".join(lines)

    def grade(self, problem: Problem, completion: str) -> Grade:
        x, y = problem.fields["operands"]
        n = len(str(max(x, y)))
        dx, dy = _digits(x, n), _digits(y, n)
        lines, tail_clean = split_lines(completion)
        valid, parsed = [], []
        carry: int | None = 0  # carry the next work line must use
        total = 0  # the number the written column sums assemble to
        for k, line in enumerate(lines):
            m = STEP_RE.match(line)
            answer = parse_answer(line)
            parsed.append(m is not None or answer is not None)
            if k < n and m is not None and carry is not None:
                a, b, c, s = (int(m.group(i)) for i in range(1, 5))
                valid.append(a == dx[k] and b == dy[k] and c == carry and s == a + b + c)
                if s >= 0:
                    total += (s % 10) * 10**k
                    carry = s // 10
                else:
                    carry = None
            elif k == n and answer is not None and carry is not None:
                valid.append(answer == total + carry * 10**n)
            else:
                valid.append(False)
                carry = None
        # Given every earlier line correct, a valid line uses the true carry and
        # column, so valid lines are on the solution path.
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
