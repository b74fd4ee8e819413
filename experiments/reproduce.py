r"""Reproduce a seed paper's finding: its sweep over seeds, the interval, the figure, a verdict.

  python -m experiments.reproduce clip_higher --workdir /tmp/repro_clip
  python -m experiments.reproduce clip_higher --workdir /tmp/r --runlocal   # tiny, seconds
  python -m experiments.reproduce --list

A reproduction is a config file `configs/repro_<name>.py` with three parts:

  get_config(arg)   one run: the arm (`arg` key `arm`), `runlocal`, and the
                    stages' models (`model_path`: the start)
  sweep(add)        the runs: add(arg="arm=...", seed=s) for each arm × seed
  REPRODUCTION      what is claimed and how it is judged (`Claim` fields)

The command trains the claim's stages (by default the shared SFT start; once
per workdir; `--start DIR` uses an HF directory as the start instead, and
later stages train from it), runs every run of the sweep in this
process (a run whose metrics already reach its last step is reused, so an
interrupted reproduction resumes), reads each run's `measures` (the last
evaluation's `eval/*` values and the curves' summaries below), pairs the
compared arm with its baseline by seed, and takes rliable's 95% interval of
the mean paired difference (`mean_ci_over_seeds`). The verdict follows from
that interval alone:

  direction +1 / −1 (the claim: arm − baseline is positive / negative)
    not reproduced  the interval lies within ±margin (a margin says how
                    small an effect counts as none), or on the other side of 0
    reproduced      otherwise, if it lies on the claimed side of 0
    inconclusive    otherwise
  direction 0 (the claim: no difference beyond ±margin)
    reproduced      the interval lies within ±margin
    not reproduced  it lies wholly outside
    inconclusive    otherwise

Outputs in the workdir: result.json (the JSON line printed last),
`<name>.png` (the claim's curves, mean over seeds per arm) and runs/<run>/.
`--figure_dir docs/figures` also writes the figure there.

Measures of a run (all from its metrics.jsonl):
  eval/<key>        the last evaluation's value (pass@k, lengths, ...)
  <curve>/first, <curve>/last   the mean over the first and the last quarter
                    of a curve's logged values (e.g. rollout/entropy/last)
  <curve>/max       its largest value
A claim's `measure(rows, run)` may add its own.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from configs import common
from rewardjax.evaluation import curves
from rewardjax.evaluation.reproduction import Claim, measures, verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------------ the registry


def known() -> list[str]:
    """Names of the reproductions: configs/repro_<name>.py."""
    paths = glob.glob(os.path.join(ROOT, "configs", "repro_*.py"))
    return sorted(os.path.basename(p)[len("repro_") : -len(".py")] for p in paths)


def load(name: str):
    """The config module of reproduction `name` (with get_config, sweep, REPRODUCTION)."""
    path = os.path.join(ROOT, "configs", f"repro_{name}.py")
    if not os.path.exists(path):
        raise ValueError(f"unknown reproduction {name!r}; known: {', '.join(known())}")
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    module = _module_from(path)
    for attr in ("get_config", "sweep", "REPRODUCTION"):
        if not hasattr(module, attr):
            raise ValueError(f"configs/repro_{name}.py defines no {attr}")
    return module


def set_path(config, key: str, value) -> None:
    """config.<dotted key> = value (a mistyped key fails, naming itself)."""
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    if leaf not in node:
        raise KeyError(f"config has no key {key!r}")
    node[leaf] = value


def runs_of(module, seeds: Sequence[int] | None) -> list[dict]:
    """The sweep's add() calls, kept to `seeds` when given: [{arg, seed, ...}]."""
    runs: list[dict] = []
    module.sweep(lambda **kw: runs.append(kw))
    if not runs:
        raise ValueError(f"{module.__name__}: sweep(add) added no runs")
    if seeds is not None:
        runs = [r for r in runs if r.get("seed", 0) in seeds]
    return runs


def arm_of(run: dict) -> str:
    return common.arg_items(run.get("arg", "")).get("arm", "base")


def run_name(run: dict) -> str:
    return f"{arm_of(run)}_seed{run.get('seed', 0)}"


# ------------------------------------------------------------------ running


def _flat(node, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_same_config(config, run_dir: str) -> None:
    """Refuses to reuse `run_dir` when the config it was trained with differs from `config`.

    A finished run or stage is reused by name; one trained under other
    overrides (an edited Claim, another --start) would otherwise pass for
    this config's result. The trainer keeps its resolved config in
    run_dir/config.json.
    """
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = _flat(json.load(f))
    wanted = _flat(json.loads(json.dumps(config.to_dict(), default=str)))
    changed = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    if changed:
        shown = "; ".join(f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}" for k in changed[:6])
        raise ValueError(
            f"{run_dir} was trained with another config ({len(changed)} keys differ: {shown}). "
            "Delete it to retrain, or use another --workdir."
        )


def train(config, run_dir: str) -> list[dict]:
    """Trains `config` in `run_dir` unless its metrics already reach config.steps; its rows.

    A run dir trained under another config is an error (`check_same_config`).
    """
    from rewardjax.training.launch import train_and_evaluate

    check_same_config(config, run_dir)
    rows = curves.read_rows(run_dir)
    if not rows or rows[-1].get("step", 0) < config.steps:
        train_and_evaluate(config, run_dir)
        rows = curves.read_rows(run_dir)
    return rows


def train_stages(
    claim: Claim, workdir: str, runlocal: bool, start: str = ""
) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """Trains the claim's stages once each (workdir/<stage>).

    `start`, if given, is used as the stage passed as `model_path` instead of
    training it; later stages still train from it.

    Returns:
      ({run config argument: hf directory}, {stage: its last eval/* values}
      for stages with `evaluate`).
    """
    paths: dict[str, str] = {}
    args: dict[str, str] = {}
    evals: dict[str, dict[str, float]] = {}
    for stage in claim.stages:
        if start and stage.arg == "model_path":
            paths[stage.name] = args[stage.arg] = start
            continue
        path, _, arg = stage.config.partition(":")
        module = _module_from(os.path.join(ROOT, path))
        inputs = ",".join(f"{k}={paths[v]}" for k, v in stage.inputs.items())
        config = module.get_config(common.merge_args(arg, f"runlocal={runlocal},{inputs}"))
        for key, value in stage.overrides.items():
            set_path(config, key, value)
        if runlocal:
            config.steps = config.optim.total_steps = 4
            config.optim.warmup_steps = 1
        # An evaluated stage (e.g. a reward model's held-out accuracy) evaluates once, at its end.
        config.eval.every = config.steps if stage.evaluate else 0
        run_dir = os.path.join(workdir, stage.name)
        hf = os.path.join(run_dir, "hf")
        check_same_config(config, run_dir)
        rows = curves.read_rows(run_dir)
        if not os.path.exists(os.path.join(hf, "config.json")):
            rows = train(config, run_dir)
        if stage.evaluate:
            evals[stage.name] = {
                k: v for k, v in measures(rows, ()).items() if k.startswith("eval/")
            }
        paths[stage.name] = args[stage.arg] = hf
    return args, evals


def _module_from(path: str):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plot(
    path: str,
    name: str,
    arm_curves: dict[str, dict[str, list]],
    keys: Sequence[str],
    found: dict[str, dict[int, dict[str, float]]],
) -> None:
    """One panel per curve key: each arm's mean over seeds against the step (or k)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        if key == "pass@k":  # the last evaluation's pass@k against k, mean over seeds
            for arm, runs in found.items():
                ks = sorted(
                    int(k.split("@")[1])
                    for k in next(iter(runs.values()))
                    if k.startswith("eval/pass@")
                )
                ax.plot(
                    ks,
                    [np.mean([m[f"eval/pass@{k}"] for m in runs.values()]) for k in ks],
                    marker="o",
                    label=arm,
                )
            ax.set_xscale("log", base=2)
            ax.set_xlabel("k")
            ax.set_title("held-out pass@k", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            continue
        for arm, runs in arm_curves.items():
            mean = curves.mean_curve(runs[key])
            if mean is None:
                continue
            steps, values = mean
            if (
                len(values) == 1
            ):  # an arm measured once (e.g. the unchanged start): a reference line
                ax.axhline(values[0], linestyle="--", color="gray", label=arm)
            else:
                ax.plot(steps, values, marker="o" if len(values) < 8 else None, label=arm)
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(name, width=int(12 * 4.5 * len(keys))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reproduce(
    name: str,
    workdir: str,
    *,
    runlocal: bool = False,
    seeds: Sequence[int] | None = None,
    start: str = "",
    figure_dir: str = "",
) -> dict[str, Any]:
    """Runs reproduction `name` in `workdir`; returns (and writes as result.json) its JSON line."""
    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    module = load(name)
    claim: Claim = module.REPRODUCTION
    began = time.time()
    os.makedirs(workdir, exist_ok=True)
    stage_args, stage_evals = train_stages(claim, workdir, runlocal, start)
    runs = runs_of(module, seeds)
    arms = sorted({arm_of(r) for r in runs})
    missing = sorted(set(claim.compare) - set(arms))
    if missing:
        raise ValueError(f"{name}: compared arms {missing} are not in its sweep ({arms})")
    found: dict[str, dict[int, dict[str, float]]] = {}
    figure: dict[str, dict[str, list]] = {}
    for run in runs:
        given = ",".join(f"{k}={v}" for k, v in {"runlocal": runlocal, **stage_args}.items())
        arg = common.merge_args(run.get("arg", ""), given)
        config = module.get_config(arg)
        for key, value in run.items():
            if key != "arg":
                set_path(config, key, value)
        run_dir = os.path.join(workdir, "runs", run_name(run))
        rows = train(config, run_dir)
        values = measures(rows, claim.curves)
        if claim.measure is not None:
            values.update(claim.measure(rows, run_dir))
        arm, seed = arm_of(run), run.get("seed", 0)
        found.setdefault(arm, {})[seed] = values
        for key in claim.curves:
            if key != "pass@k":
                figure.setdefault(arm, {}).setdefault(key, []).append(curves.curve(rows, key))
    arm, base = claim.compare
    paired = sorted(set(found[arm]) & set(found[base]))
    if claim.metric not in found[arm][paired[0]]:
        raise KeyError(
            f"{name}: runs have no measure {claim.metric!r}; "
            f"they have {', '.join(sorted(found[arm][paired[0]]))}"
        )
    diffs = [found[arm][s][claim.metric] - found[base][s][claim.metric] for s in paired]
    per_arm = {a: [found[a][s][claim.metric] for s in paired if s in found[a]] for a in arms}
    table = mean_ci_over_seeds({"diff": diffs, **per_arm}, reps=2000)
    ci = [table["diff"]["ci_low"], table["diff"]["ci_high"]]
    png = os.path.join(workdir, f"{name}.png")
    plot(png, f"{name}: {claim.paper}", figure, claim.curves, found)
    if figure_dir:
        os.makedirs(figure_dir, exist_ok=True)
        shutil.copy(png, os.path.join(figure_dir, f"{name}.png"))
    metric = claim.metric.replace("/", "_").replace("@", "_at_")
    extra = claim.summary(found) if claim.summary is not None else {}
    line: dict[str, Any] = {
        "bench": "reproduction",
        "name": name,
        "seeds": paired,
        "metric": claim.metric,
        "compare": list(claim.compare),
        f"{metric}_diff": _round(table["diff"]["mean"]),
        f"{metric}_diff_per_seed": [_round(d) for d in diffs],
        f"{metric}_diff_ci95": [_round(x) for x in ci],
        **{f"{a}_{metric}": _round(table[a]["mean"]) for a in arms if a in table},
        **{f"{a}_{metric}_per_seed": [_round(x) for x in v] for a, v in per_arm.items()},
        **extra,
        **({"stages": stage_evals} if stage_evals else {}),
        "verdict": verdict(ci, claim.direction, claim.margin),
        "direction": claim.direction,
        "margin": claim.margin,
        "paper_value": claim.paper_value,
        "runlocal": runlocal,
        "wall_s": round(time.time() - began, 1),
        "figure": png,
    }
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump(line, f)
    with open(os.path.join(workdir, "measures.json"), "w") as f:
        json.dump(found, f, indent=1)
    return line


def _round(x: float) -> float:
    return round(float(x), 4)


def define_flags() -> None:
    """The command's flags, defined only when it runs as a program (tests import the module
    beside experiments.sweep, whose flags share names)."""
    flags.DEFINE_string("workdir", None, "Directory of the reproduction's runs.")
    flags.DEFINE_bool("runlocal", False, "Tiny sizes: checks that it runs, not the claim.")
    flags.DEFINE_list("seeds", [], "Seeds to run (default: the sweep's).")
    flags.DEFINE_string(
        "start", "", "An HF directory to use as the SFT start instead of training one."
    )
    flags.DEFINE_string("figure_dir", "", "Also write the figure here.")
    flags.DEFINE_bool("list", False, "List the reproductions and their claims.")


def main(argv):
    f = flags.FLAGS
    if f.list:
        for name in known():
            claim = load(name).REPRODUCTION
            print(f"{name:<18} {claim.paper}: {claim.claim}")
        return
    if len(argv) != 2:
        raise app.UsageError(f"usage: reproduce NAME --workdir W; known: {', '.join(known())}")
    if not f.workdir:
        raise app.UsageError("--workdir is required")
    from rewardjax.training.launch import quiet_third_party_info

    quiet_third_party_info()
    line = reproduce(
        argv[1],
        f.workdir,
        runlocal=f.runlocal,
        seeds=[int(s) for s in f.seeds] or None,
        start=f.start,
        figure_dir=f.figure_dir,
    )
    print(json.dumps(line))


if __name__ == "__main__":
    define_flags()
    app.run(main)
