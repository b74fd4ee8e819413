r"""Expand a config's `sweep(add)` into runs, run them, and tabulate the results.

  python -m experiments.sweep --config configs/grpo_arithmetic.py:model_path=/tmp/sft/hf \
      --workdir /tmp/sweep --parallel 2 --metric eval/pass@1

Each `add(**overrides)` call is one run: keys are config paths ("loss.kwargs.
clip_high", "seed"); the special key `arg` replaces the config argument (the
text after ":"). Runs with the same overrides apart from `seed` form a group;
the table reports each group's mean final metric with a 95% stratified
bootstrap interval over seeds (rliable), and `curves.png` plots the metric's
mean curve per group. Outputs: results.json, results.md, curves.png.
`--group=base` (repeatable) runs only the named groups, e.g. the seeds of the
unmodified config.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

_CONFIG = flags.DEFINE_string("config", None, "Config file, optionally with :arg.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory holding one sub-directory per run.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at a time.")
_METRIC = flags.DEFINE_string(
    "metric", "reward/mean", "Metric to tabulate: a metrics.jsonl key, or summary.json path (a.b)."
)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only list the runs.")
_GROUPS = flags.DEFINE_multi_string(
    "group", [], "Run only this group (its name in the table, e.g. base); repeatable; none: all."
)
_REPS = flags.DEFINE_integer("reps", 2000, "Bootstrap repetitions.")
flags.mark_flags_as_required(["config", "workdir"])


def load_sweep(config_spec: str) -> tuple[str, str, list[dict]]:
    """(config file, its argument, the list of override dicts from its sweep(add))."""
    path, _, arg = config_spec.partition(":")
    spec = importlib.util.spec_from_file_location("sweep_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.getcwd())
    spec.loader.exec_module(module)
    if not hasattr(module, "sweep"):
        raise ValueError(f"{path} defines no sweep(add)")
    runs: list[dict] = []
    module.sweep(lambda **kw: runs.append(kw))
    if not runs:
        raise ValueError(f"{path}: sweep(add) added no runs")
    return path, arg, runs


def run_name(overrides: dict) -> str:
    parts = [f"{k}={v}" for k, v in sorted(overrides.items())]
    name = ",".join(parts) or "base"
    return name.replace("/", "_").replace(" ", "")


def group_name(overrides: dict) -> str:
    return run_name({k: v for k, v in overrides.items() if k != "seed"})


def select_groups(runs: list[dict], groups: list[str]) -> list[dict]:
    """The runs of the named groups (all runs when `groups` is empty)."""
    if not groups:
        return runs
    known = sorted({group_name(o) for o in runs})
    unknown = sorted(set(groups) - set(known))
    if unknown:
        raise ValueError(
            f"--group: unknown {', '.join(unknown)}; this sweep has {', '.join(known)}"
        )
    return [o for o in runs if group_name(o) in groups]


def command(path: str, arg: str, overrides: dict, workdir: str) -> list[str]:
    overrides = dict(overrides)
    arg = overrides.pop("arg", arg)
    config = f"{path}:{arg}" if arg else path
    cmd = [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={workdir}"]
    for key, value in overrides.items():
        cmd.append(f"--config.{key}={value}")
    return cmd


def read_curve(run_dir: str, metric: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if metric in record and isinstance(record[metric], int | float):
                    steps.append(record["step"])
                    values.append(float(record[metric]))
    if not values:
        summary = os.path.join(run_dir, "summary.json")
        if os.path.exists(summary):
            with open(summary) as f:
                node = json.load(f)
            for key in metric.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, int | float):
                steps, values = [0], [float(node)]
    return steps, values


def summarize(groups: dict[str, list[float]], reps: int) -> dict[str, dict[str, float]]:
    """Mean and 95% stratified-bootstrap CI per group (rliable; runs = seeds, one task)."""
    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    return mean_ci_over_seeds(groups, reps=reps)


def plot(path: str, curves: dict[str, list[tuple[list[int], list[float]]]], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, runs in curves.items():
        runs = [r for r in runs if r[1]]
        if not runs:
            continue
        length = min(len(r[1]) for r in runs)
        steps = runs[0][0][:length]
        values = np.mean([r[1][:length] for r in runs], axis=0)
        ax.plot(steps, values, marker="o" if length == 1 else None, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    path, arg, runs = load_sweep(_CONFIG.value)
    runs = select_groups(runs, _GROUPS.value)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    jobs = [(o, os.path.join(_WORKDIR.value, run_name(o))) for o in runs]
    for overrides, run_dir in jobs:
        print(" ".join(command(path, arg, overrides, run_dir)))
    if _DRY_RUN.value:
        return
    pending, running, failed = list(jobs), [], []
    while pending or running:
        while pending and len(running) < _PARALLEL.value:
            overrides, run_dir = pending.pop(0)
            os.makedirs(run_dir, exist_ok=True)
            log = open(os.path.join(run_dir, "log.txt"), "w")
            proc = subprocess.Popen(
                command(path, arg, overrides, run_dir), stdout=log, stderr=subprocess.STDOUT
            )
            running.append((proc, overrides, run_dir, log))
        time.sleep(1.0)
        for item in list(running):
            proc, overrides, run_dir, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(f"[{status}] {run_dir}")
                if proc.returncode:
                    failed.append(run_dir)
    groups: dict[str, list[float]] = {}
    curves: dict[str, list] = {}
    for overrides, run_dir in jobs:
        steps, values = read_curve(run_dir, _METRIC.value)
        name = group_name(overrides)
        curves.setdefault(name, []).append((steps, values))
        if values:
            groups.setdefault(name, []).append(values[-1])
    table = summarize(groups, _REPS.value)
    out = {"config": _CONFIG.value, "metric": _METRIC.value, "groups": table, "failed": failed}
    with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
        json.dump(out, f, indent=2)
    lines = [f"| group | seeds | {_METRIC.value} mean | 95% CI |", "|---|---|---|---|"]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['num_seeds']} | {row['mean']:.4f} | [{row['ci_low']:.4f}, {row['ci_high']:.4f}] |"
        )
    with open(os.path.join(_WORKDIR.value, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(os.path.join(_WORKDIR.value, "curves.png"), curves, _METRIC.value)
    print("\n".join(lines))
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


if __name__ == "__main__":
    app.run(main)
