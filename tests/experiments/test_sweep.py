"""experiments/sweep.py expands sweep(add), runs the points, and tabulates CIs over seeds."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

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


@pytest.mark.slow
def test_sweep_runs_points_and_writes_table(tmp_path):
    config = tmp_path / "tiny_sweep.py"
    config.write_text(CONFIG)
    workdir = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    # Its two runs go side by side: neither reads the suite's compilation
    # cache, which another process could be writing in place (conftest.py).
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
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


# The report, in process, on faked run directories: two groups of five seeds.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sweep = importlib.import_module("experiments.sweep")

METRIC = "eval/pass@1"
GROUP_A, GROUP_B = "loss.clip_high=0.2", "loss.clip_high=0.28"
FINALS = {
    0.2: [0.1, 0.2, 0.3, 0.4, 0.9],  # group A
    0.28: [0.5, 0.6, 0.7, 0.8, 0.9],  # group B
}


def fake_report(workdir, gamma=1.0):
    """Writes one run directory per seed, as experiments.train would, and reports on them."""
    jobs = []
    for clip_high, finals in FINALS.items():
        for seed, final in enumerate(finals):
            overrides = {"loss.clip_high": clip_high, "seed": seed}
            run_dir = workdir / sweep.run_name(overrides)
            run_dir.mkdir(parents=True)
            records = [{"step": 0, METRIC: 0.0}, {"step": 10, METRIC: final}]
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            jobs.append((overrides, str(run_dir)))
    return sweep.report(
        jobs, workdir=str(workdir), config="fake.py", metric=METRIC, reps=200, gamma=gamma
    )


@pytest.mark.parametrize(
    "gamma, gap_a, gap_b",
    [
        # max(1 − x, 0): A .9 .8 .7 .6 .1 → 3.1 / 5; B .5 .4 .3 .2 .1 → 1.5 / 5
        (1.0, 0.62, 0.30),
        # max(.5 − x, 0): A .4 .3 .2 .1 0 → 1.0 / 5; B all 0
        (0.5, 0.20, 0.0),
    ],
)
def test_report_iqm_median_and_optimality_gap(tmp_path, gamma, gap_a, gap_b):
    out = fake_report(tmp_path, gamma=gamma)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["gamma"] == gamma
    groups = on_disk["groups"]
    a, b = groups[GROUP_A], groups[GROUP_B]
    # The original keys stay: mean and its interval, number of seeds.
    assert a["num_seeds"] == 5 and a["mean"] == pytest.approx(0.38)
    assert a["ci_low"] <= a["mean"] <= a["ci_high"]
    # IQM of 5 scores trims one from each end: A mean(.2, .3, .4), B mean(.6, .7, .8).
    assert a["iqm"]["estimate"] == pytest.approx(0.3)
    assert b["iqm"]["estimate"] == pytest.approx(0.7)
    assert a["median"]["estimate"] == pytest.approx(0.3)
    assert b["median"]["estimate"] == pytest.approx(0.7)
    assert a["optimality_gap"]["estimate"] == pytest.approx(gap_a)
    assert b["optimality_gap"]["estimate"] == pytest.approx(gap_b)
    for row in groups.values():
        for key in ("median", "iqm", "optimality_gap"):
            assert row[key]["ci_low"] <= row[key]["estimate"] <= row[key]["ci_high"], key
    assert out["groups"] == groups
    md = (tmp_path / "results.md").read_text()
    assert md.startswith(f"| group | seeds | {METRIC} mean | 95% CI | median | 95% CI | IQM |")
    assert f"optimality gap (γ={gamma:g})" in md


def test_report_probability_of_improvement_counts_pairs(tmp_path, capsys):
    out = fake_report(tmp_path)
    table = json.loads((tmp_path / "results.json").read_text())["probability_of_improvement"]
    assert table == out["probability_of_improvement"]
    # Of the 25 (a, b) pairs, a > b only for a = .9 against .5 .6 .7 .8, and .9 = .9 counts ½.
    a_over_b, b_over_a = table[GROUP_A][GROUP_B], table[GROUP_B][GROUP_A]
    assert a_over_b["estimate"] == pytest.approx(4.5 / 25)
    assert b_over_a["estimate"] == pytest.approx(20.5 / 25)
    assert a_over_b["ci_low"] <= a_over_b["estimate"] <= a_over_b["ci_high"]
    assert GROUP_A not in table[GROUP_A]
    printed = capsys.readouterr().out
    row = f"| {GROUP_A} | — | 0.1800 [{a_over_b['ci_low']:.4f}, {a_over_b['ci_high']:.4f}] |"
    assert f"| P(row > column) | {GROUP_A} | {GROUP_B} |" in printed
    assert row in printed
    assert row in (tmp_path / "results.md").read_text()


def test_report_writes_performance_profiles(tmp_path):
    out = fake_report(tmp_path)
    assert (tmp_path / "performance_profiles.png").stat().st_size > 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    profile = json.loads((tmp_path / "results.json").read_text())["performance_profile"]
    assert profile == out["performance_profile"]
    taus = np.array(profile["taus"])
    assert np.all(np.diff(taus) > 0) and taus[0] < 0.1 and taus[-1] > 0.9
    for clip_high, group in ((0.2, GROUP_A), (0.28, GROUP_B)):
        curve = profile["groups"][group]
        # The fraction of the group's five seeds scoring above each τ.
        expected = [np.mean(np.array(FINALS[clip_high]) > tau) for tau in taus]
        np.testing.assert_allclose(curve["profile"], expected)
        assert curve["profile"][0] == 1.0 and curve["profile"][-1] == 0.0
        assert np.all(np.array(curve["ci_low"]) <= np.array(curve["profile"]) + 1e-12)
        assert np.all(np.array(curve["profile"]) <= np.array(curve["ci_high"]) + 1e-12)


def test_a_sweep_arg_merges_into_the_command_line_arg():
    # A sweep over curriculum= keeps the command line's model_path; its own keys win.
    base = "model_path=/sft/hf,runlocal=True"
    cmd = sweep.command("c.py", base, {"arg": "curriculum=drive,runlocal=False", "seed": 1}, "/w")
    assert "--config=c.py:model_path=/sft/hf,runlocal=False,curriculum=drive" in cmd
    assert "--config.seed=1" in cmd and "--workdir=/w" in cmd
    assert "--config=c.py:model_path=/sft/hf,runlocal=True" in sweep.command("c.py", base, {}, "/w")
    assert "--config=c.py:x=1" in sweep.command("c.py", "", {"arg": "x=1"}, "/w")
