"""The procedural coding task: graded by running the program in the sandbox."""

import numpy as np
import pytest

from rewardjax.data.tasks import make_task

pytestmark = pytest.mark.xdist_group(name="sandbox")


def test_reference_passes_wrong_and_garbage_fail():
    task = make_task("code_functions", max_constant=5, num_tests=3)
    rng = np.random.default_rng(0)
    for i in range(5):
        p = task.problem(i)
        assert p.prompt.endswith("def f(x):\n    return ")
        assert task.grade(p, p.answer).correct
        wrong = task.demonstration(p, rng, error_rate=1.0)
        assert wrong != p.answer
        g = task.grade(p, wrong)
        assert not g.correct and g.first_error == 0
    p = task.problem(0)
    for garbage in ("", "(", "__import__('os').system('true')", "x +"):
        assert not task.grade(p, garbage).correct
    # Only the first line is the body: a later line cannot rescue a wrong one.
    assert task.grade(p, p.answer + "\nprint(1)").correct


def test_tests_are_computed_from_the_expression():
    p = make_task("code_functions").problem(3)
    expr = p.fields["expression"]
    for x, test in enumerate(p.fields["tests"], start=1):
        assert test == f"assert f({x}) == {eval(expr, {'x': x})}"
