r"""Expand a config's `sweep(add)` into runs, run them, and tabulate the results.

  python -m experiments.sweep --config configs/grpo_arithmetic.py:model_path=/tmp/sft/hf \
      --workdir /tmp/sweep --parallel 2 --metric eval/pass@1

Each `add(**overrides)` call is one run: keys are config paths ("loss.kwargs.
clip_high", "seed"); the special key `arg` is merged into the config argument (the
text after ":"): its keys win, the command line's others (model_path=…) stay. Runs with the same overrides apart from `seed` form a group.
`--group=base` (repeatable) runs only the named groups, e.g. the seeds of the
unmodified config.

The report reads each run's final metric (higher is better) and gives, per
group, over its seeds, each with a 95% stratified-bootstrap interval (rliable,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice"):

  mean, median
  IQM             interquartile mean: the 25%-trimmed mean of the seeds' scores
  optimality gap  mean(max(γ − score, 0)); γ is `--gamma` (1.0: an accuracy's maximum)

then P(row > column) for every pair of groups: the probability that a seed of
one group scores above a seed of the other, ties counting ½. Outputs:
results.json (per group `mean`, `ci_low`, `ci_high`, `num_seeds`, and
`median`, `iqm`, `optimality_gap` as {estimate, ci_low, ci_high};
`probability_of_improvement` {row: {column: …}}; `performance_profile`),
results.md (both tables, also printed), curves.png (the metric's mean curve
per group) and performance_profiles.png (the fraction of seeds scoring above τ
per group, with 95% bands).
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

from configs import common
from rewardjax.evaluation import curves

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
_GAMMA = flags.DEFINE_float(
    "gamma",
    1.0,
    "Optimality-gap threshold γ: gap = mean(max(γ − score, 0)); 1.0 is an accuracy's maximum.",
)
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
    arg = common.merge_args(arg, overrides.pop("arg", ""))
    config = f"{path}:{arg}" if arg else path
    cmd = [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={workdir}"]
    for key, value in overrides.items():
        cmd.append(f"--config.{key}={value}")
    return cmd


def read_curve(run_dir: str, metric: str) -> tuple[list[int], list[float]]:
    """The metric's curve from metrics.jsonl, else its one value from summary.json (a.b path)."""
    steps, values = curves.curve(curves.read_rows(run_dir), metric)
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


def _runs(values: list[float]) -> np.ndarray:
    return np.reshape(np.asarray(values, np.float64), (-1, 1))  # [R, 1]: seeds × one task


def _median_over_runs(batch: np.ndarray) -> np.ndarray:  # [C, R, 1] → [C]
    return np.median(batch, axis=(-2, -1))


def summarize(
    groups: dict[str, list[float]], reps: int, *, gamma: float = 1.0, seed: int = 0
) -> dict[str, dict]:
    """Mean, median, IQM and optimality gap over seeds per group, with 95% bootstrap CIs.

    Each group is one method on one task, its values one final score per seed
    (the [R, 1] matrix of rliable). The median is over the seeds: rliable's is
    over task means, which on one task is the mean.

    Args:
      groups: {group: final scores of its seeds}; empty groups are left out.
      reps: bootstrap replicates.
      gamma: optimality-gap threshold γ.
      seed: bootstrap seed.

    Returns:
      {group: {mean, ci_low, ci_high, num_seeds,
               median | iqm | optimality_gap: {estimate, ci_low, ci_high}}}.
    """
    from rewardjax.evaluation.aggregates import (
        mean_ci_over_seeds,
        rliable_aggregates,
        stratified_bootstrap_ci,
    )

    table = mean_ci_over_seeds(groups, reps=reps)
    for name, row in table.items():
        scores = _runs(groups[name])
        aggregates = rliable_aggregates(scores, reps=reps, gamma=gamma, seed=seed)
        low, high = stratified_bootstrap_ci(scores, _median_over_runs, reps=reps, seed=seed)
        row["median"] = {
            "estimate": float(np.median(scores)),
            "ci_low": float(low),
            "ci_high": float(high),
        }
        row["iqm"] = aggregates["iqm"]
        row["optimality_gap"] = aggregates["optimality_gap"]
    return table


def improvement_table(
    groups: dict[str, list[float]], reps: int, *, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """P(A > B) with a 95% bootstrap CI for every ordered pair of non-empty groups.

      P(A > B) = (1/(n_A·n_B)) Σ_{a,b} (1[x_a > y_b] + ½·1[x_a = y_b])

    over the final scores of A's and B's seeds (rliable's probability of
    improvement on one task); the bootstrap resamples each group's seeds.

    Returns:
      {A: {B: {estimate, ci_low, ci_high}}} for every A ≠ B.
    """
    from rewardjax.evaluation.aggregates import probability_of_improvement

    scores = {name: _runs(values) for name, values in groups.items() if len(values)}
    return {
        a: {
            b: probability_of_improvement(x, y, reps=reps, seed=seed)
            for b, y in scores.items()
            if b != a
        }
        for a, x in scores.items()
    }


def score_profiles(
    groups: dict[str, list[float]], reps: int, *, num_taus: int = 101, seed: int = 0
) -> dict:
    """Score distribution per group: the fraction of seeds scoring above τ, with 95% bands.

    rliable's `create_performance_profile` (score distribution, percentile
    bootstrap). The τ grid spans the scores of all groups, padded by 5% on each
    side, so that every curve runs from 1 down to 0.

    Returns:
      {"taus": [K], "groups": {group: {"profile", "ci_low", "ci_high"}: [K] each}}, as lists.
    """
    from rewardjax.evaluation.aggregates import performance_profile

    scores = {name: _runs(values) for name, values in groups.items() if len(values)}
    if not scores:
        return {"taus": [], "groups": {}}
    every = np.concatenate(list(scores.values()))
    low, high = float(every.min()), float(every.max())
    pad = 0.05 * ((high - low) or max(abs(high), 1.0))
    taus = np.linspace(low - pad, high + pad, num_taus)
    profiles = {}
    for name, runs in scores.items():
        result = performance_profile(runs, taus, reps=reps, seed=seed)
        profiles[name] = {key: result[key].tolist() for key in ("profile", "ci_low", "ci_high")}
    return {"taus": taus.tolist(), "groups": profiles}


def _interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.4f} [{value['ci_low']:.4f}, {value['ci_high']:.4f}]"


def markdown_tables(
    table: dict[str, dict], improvement: dict[str, dict], metric: str, gamma: float
) -> list[str]:
    """The aggregates table (its first four columns as before) and the P(row > column) table."""
    lines = [
        f"| group | seeds | {metric} mean | 95% CI | median | 95% CI | IQM | 95% CI "
        f"| optimality gap (γ={gamma:g}) | 95% CI |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        cells = [name, str(row["num_seeds"]), f"{row['mean']:.4f}"]
        cells.append(f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]")
        for key in ("median", "iqm", "optimality_gap"):
            value = row[key]
            cells += [
                f"{value['estimate']:.4f}",
                f"[{value['ci_low']:.4f}, {value['ci_high']:.4f}]",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    names = list(improvement)
    lines += [
        "",
        f"P(row > column): probability that a seed of the row's group scores a higher {metric} "
        "than a seed of the column's (ties ½), with 95% CI.",
        "",
        "| P(row > column) | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for a in names:
        cells = ["—" if b == a else _interval(improvement[a][b]) for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def plot(
    path: str, group_curves: dict[str, list[tuple[list[int], list[float]]]], metric: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, runs in group_curves.items():
        mean = curves.mean_curve(runs)
        if mean is None:
            continue
        ax.plot(*mean, marker="o" if len(mean[1]) == 1 else None, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_profiles(path: str, profiles: dict, metric: str) -> None:
    """Performance profiles of `score_profiles`: one curve per group, its 95% band shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    taus = profiles["taus"]
    for name, curve in profiles["groups"].items():
        (line,) = ax.plot(taus, curve["profile"], label=name)
        ax.fill_between(taus, curve["ci_low"], curve["ci_high"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel(f"{metric} (τ)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if profiles["groups"]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(
    jobs: list[tuple[dict, str]],
    *,
    workdir: str,
    config: str,
    metric: str,
    reps: int,
    gamma: float = 1.0,
    failed: list[str] | None = None,
) -> dict:
    """Tabulates the runs' final `metric`: writes results.json, results.md and both figures.

    Args:
      jobs: (overrides, run directory) per run, as `sweep(add)` listed them.
      workdir: where the outputs go.
      config: the --config value, recorded in results.json.
      metric: a metrics.jsonl key, or a summary.json path (a.b).
      reps: bootstrap replicates.
      gamma: optimality-gap threshold γ.
      failed: run directories whose run failed.

    Returns:
      The contents of results.json; the tables are also printed.
    """
    groups: dict[str, list[float]] = {}
    curves: dict[str, list] = {}
    for overrides, run_dir in jobs:
        steps, values = read_curve(run_dir, metric)
        name = group_name(overrides)
        curves.setdefault(name, []).append((steps, values))
        if values:
            groups.setdefault(name, []).append(values[-1])
    table = summarize(groups, reps, gamma=gamma)
    improvement = improvement_table(groups, reps)
    profiles = score_profiles(groups, reps)
    out = {
        "config": config,
        "metric": metric,
        "groups": table,
        "failed": list(failed or []),
        "gamma": gamma,
        "probability_of_improvement": improvement,
        "performance_profile": profiles,
    }
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(out, f, indent=2)
    lines = markdown_tables(table, improvement, metric, gamma)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(os.path.join(workdir, "curves.png"), curves, metric)
    plot_profiles(os.path.join(workdir, "performance_profiles.png"), profiles, metric)
    print("\n".join(lines))
    return out


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
    report(
        jobs,
        workdir=_WORKDIR.value,
        config=_CONFIG.value,
        metric=_METRIC.value,
        reps=_REPS.value,
        gamma=_GAMMA.value,
        failed=failed,
    )
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


if __name__ == "__main__":
    app.run(main)
