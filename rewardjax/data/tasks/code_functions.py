"""Procedural coding task: complete a one-line Python function from its spec and tests.

  Q: f(x) = x*3+2
  def f(x):
      return            ← the prompt ends here; the completion is "x*3+2"

Graded by running the program (prompt's function header + completion) on
assert-style test cases in the sandbox (`rewardjax.rewards.sandbox`), so it
exercises the code-execution reward end to end with nothing to download. The
dataset fields (`tests`, `style`, `entry_point`, `prefix`) are those of the
`code_tests_sandbox` reward. A problem has one step (the expression line).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rewardjax.data.tasks.base import Grade, Problem, Task
from rewardjax.registry import TASKS

_OPS = ("+", "-", "*")


@TASKS.register("code_functions")
class CodeFunctions(Task):
    """Linear integer functions f(x) = x <op> a <op> b, checked on `num_tests` inputs.

    Args:
      max_constant: constants a, b are drawn from 1..max_constant.
      num_tests: assert cases per problem.
      test_fraction: share of canonical problems in the test split.
    """

    name = "code_functions"
    # One expression line, no work lines and no "A:" answer line.
    line_format = False

    def __init__(self, *, max_constant: int = 9, num_tests: int = 3, test_fraction: float = 0.1):
        super().__init__(test_fraction=test_fraction)
        if max_constant < 1 or num_tests < 1:
            raise ValueError(f"max_constant={max_constant} and num_tests={num_tests} must be >= 1")
        self.max_constant = max_constant
        self.num_tests = num_tests

    def difficulty(self) -> dict[str, Any]:
        return {"max_constant": self.max_constant, "num_tests": self.num_tests}

    def _sample(self, rng: np.random.Generator) -> str:
        a, b = rng.integers(1, self.max_constant + 1, size=2)
        op1, op2 = rng.choice(_OPS, size=2)
        return f"x{op1}{a}{op2}{b}"

    def canonical_key(self, content: str) -> str:
        return content

    def _build(self, expression: str) -> Problem:
        header = "def f(x):\n    return "
        prompt = f"Q: f(x) = {expression}\n{header}"
        tests = [
            f"assert f({x}) == {eval(expression, {'x': x})}" for x in range(1, self.num_tests + 1)
        ]
        fields = dict(
            expression=expression,
            tests=tests,
            style="function",
            entry_point="f",
            prefix=header,
        )
        return Problem(
            prompt=prompt,
            answer=expression,
            steps=[expression],
            uid=f"{self.name}:{expression}",
            fields=fields,
        )

    def from_fields(self, fields: Mapping[str, Any]) -> Problem:
        return self._build(str(fields["expression"]))

    def demonstration(
        self, problem: Problem, rng: np.random.Generator, *, error_rate: float = 0.0
    ) -> str:
        if rng.random() < error_rate:
            expression = problem.fields["expression"]
            for op in _OPS:
                if op in expression[1:]:
                    wrong = _OPS[(_OPS.index(op) + 1) % len(_OPS)]
                    return expression.replace(op, wrong, 1)
        return problem.fields["expression"]

    def grade(self, problem: Problem, completion: str) -> Grade:
        from rewardjax.rewards.code import run_function_tests

        line = completion.strip().split("\n")[0] if completion.strip() else ""
        passed: list[bool] = [False] * len(problem.fields["tests"])
        if line:
            passed, _ = run_function_tests(
                problem.fields["prefix"] + line,
                problem.fields["tests"],
                entry_point="f",
                case_timeout_s=2.0,
                sample_timeout_s=10.0,
                memory_mb=512,
            )
        correct = all(passed)
        return Grade(
            correct=correct,
            answer=line or None,
            step_correct=[correct],
            step_valid=[correct],
            first_error=None if correct else 0,
            num_steps=1,
            well_formed=bool(line),
            num_reference_steps=1,
        )
