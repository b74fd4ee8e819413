"""`python -m experiments.train` reports bad command lines in one line, with the full key path."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train(*args, workdir):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env.pop("REWARDJAX_FAULT", None)
    cmd = [sys.executable, "-m", "experiments.train", f"--workdir={workdir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_mistyped_key_is_one_line_with_full_path_and_suggestion(tmp_path):
    result = _train(
        "--config=configs/sft_arithmetic.py:runlocal=True",
        "--config.optim.learnin_rate=1e-3",
        workdir=tmp_path / "w",
    )
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        "error: --config.optim.learnin_rate: the config has no key optim.learnin_rate; "
        "did you mean --config.optim.learning_rate?"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def test_out_of_range_value_is_one_line_and_writes_nothing(tmp_path):
    result = _train(
        "--config=configs/grpo_arithmetic.py:runlocal=True",
        "--config.rollout.prompts_per_step=0",
        workdir=tmp_path / "w",
    )
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [
        "error: config rollout.prompts_per_step=0 is out of range: it must be an integer ≥ 1"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def test_other_libraries_info_lines_are_quiet_by_default(tmp_path):
    result = _train(
        "--config=configs/sft_arithmetic.py:runlocal=True",
        "--config.steps=2",
        "--config.export_hf=False",
        workdir=tmp_path / "w",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "w" / "checkpoints" / "2").is_dir()  # Orbax did save (and said nothing)
    orbax_lines = [line for line in result.stderr.splitlines() if "orbax" in line.lower()]
    info_lines = [line for line in result.stderr.splitlines() if line.startswith("I")]
    assert orbax_lines == [] and all("checkpoint_manager" not in line for line in info_lines)


def test_the_filter_keeps_own_info_and_every_warning():
    import logging

    from rewardjax.training import launch

    keep = launch._OwnInfoOnly().filter

    def record(level, path):
        return logging.LogRecord("absl", level, path, 1, "x", None, None)

    assert keep(record(logging.INFO, launch.__file__))
    assert not keep(record(logging.INFO, "/site-packages/orbax/checkpoint/checkpoint_manager.py"))
    assert keep(record(logging.WARNING, "/site-packages/orbax/checkpoint/checkpoint_manager.py"))
