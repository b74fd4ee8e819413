"""experiments/sweep.py expands sweep(add), runs the points, and tabulates CIs over seeds."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """
from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=True)
    c = common.sft_base(runlocal=arg.runlocal)
    c.steps = 2
    c.export_hf = False
    return c


def sweep(add):
    for lr in (1e-3, 3e-3):
        for seed in range(2):
            add(**{"optim.learning_rate": lr, "seed": seed})
"""


def test_sweep_runs_points_and_writes_table(tmp_path):
    config = tmp_path / "tiny_sweep.py"
    config.write_text(CONFIG)
    workdir = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    cmd = [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--config={config}",
        f"--workdir={workdir}",
        "--parallel=2",
        "--metric=train/loss",
        "--reps=200",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in workdir.iterdir() if p.is_dir())
    assert len(runs) == 4 and all("seed=" in r for r in runs)
    results = json.loads((workdir / "results.json").read_text())
    groups = results["groups"]
    assert set(groups) == {"optim.learning_rate=0.001", "optim.learning_rate=0.003"}
    for row in groups.values():
        assert row["num_seeds"] == 2
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        # The mean is that of the two runs' final losses.
        assert row["mean"] > 0
    finals = []
    for run in runs:
        if "learning_rate=0.001" in run:
            lines = (workdir / run / "metrics.jsonl").read_text().splitlines()
            finals.append(json.loads(lines[-1])["train/loss"])
    assert abs(groups["optim.learning_rate=0.001"]["mean"] - sum(finals) / 2) < 1e-6
    assert (workdir / "curves.png").stat().st_size > 0
    assert "| group |" in (workdir / "results.md").read_text()


def test_dry_run_lists_commands(tmp_path):
    config = tmp_path / "tiny_sweep.py"
    config.write_text(CONFIG)
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--config={config}",
        f"--workdir={tmp_path}/w",
        "--dry_run",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "experiments.train" in line]
    assert len(lines) == 4
    assert any(
        "--config.optim.learning_rate=0.003" in line and "--config.seed=1" in line for line in lines
    )


def test_group_flag_selects_runs(tmp_path):
    config = tmp_path / "tiny_sweep.py"
    config.write_text(CONFIG)
    env = dict(os.environ, PYTHONPATH=ROOT)
    base = [sys.executable, "-m", "experiments.sweep", f"--config={config}", "--dry_run"]

    def listed(*flags):
        cmd = [*base, f"--workdir={tmp_path}/w", *flags]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    result = listed("--group=optim.learning_rate=0.003")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "experiments.train" in line]
    assert len(lines) == 2 and all("learning_rate=0.003" in line for line in lines)
    bad = listed("--group=nope")
    assert bad.returncode != 0 and "unknown nope" in bad.stderr
