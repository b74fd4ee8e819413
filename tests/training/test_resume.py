"""Runs survive: SIGKILL at three points (one mid-save) then resume gives bitwise-identical params.

Also the non-finite guard at trainer level: NaN rewards skip updates, K in a
row stop the run with a checkpoint of the last good state.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import grpo_arithmetic
from rewardjax.training import rl
from rewardjax.training.checkpoint import Checkpointer, ResumeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 7
OVERRIDES = [
    f"--config.steps={STEPS}",
    "--config.checkpoint.every=2",
    "--config.log.samples_every=0",
]


def _train(workdir, fault=None):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env.pop("REWARDJAX_FAULT", None)
    if fault:
        env["REWARDJAX_FAULT"] = fault
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=configs/grpo_arithmetic.py:runlocal=True",
        f"--workdir={workdir}",
        *OVERRIDES,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _final_params(workdir):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = STEPS
    template = rl.RLTrainer(c, str(workdir) + "_template")._checkpoint_state()
    step, state, meta = Checkpointer(str(workdir)).restore_latest(template)
    return step, jax.tree.map(np.asarray, state["train"].params), state["rng"], meta


def test_sigkill_at_three_points_then_resume_is_bitwise_identical(tmp_path):
    clean = tmp_path / "clean"
    result = _train(clean)
    assert result.returncode == 0, result.stderr[-2000:]

    killed = tmp_path / "killed"
    for fault in ("after_step=3", "during_save=4", "after_step=6"):
        result = _train(killed, fault)
        assert result.returncode == -9, f"{fault}: rc={result.returncode}\n{result.stderr[-2000:]}"
    result = _train(killed)
    assert result.returncode == 0, result.stderr[-2000:]

    step_a, params_a, rng_a, meta_a = _final_params(clean)
    step_b, params_b, rng_b, meta_b = _final_params(killed)
    assert step_a == step_b == STEPS
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rng_a, rng_b)
    assert meta_a["source"] == meta_b["source"]
    # The resumed run's log has each step once.
    steps = [json.loads(line)["step"] for line in open(killed / "metrics.jsonl")]
    assert steps == list(range(1, STEPS + 1))


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 4
    c.checkpoint.every = 2
    c.checkpoint.async_save = False
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    trainer.run()
    assert Checkpointer(str(tmp_path)).steps() == [2, 4]
    state_dir = tmp_path / "checkpoints" / "4" / "state"
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\0garbage")
    resumed = rl.RLTrainer(c, str(tmp_path))
    assert resumed.step == 2


def test_incompatible_model_on_resume_is_a_clear_error(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 1
    c.checkpoint.async_save = False
    rl.RLTrainer(c, str(tmp_path)).run()
    c.model.overrides = {"hidden_size": 32, "intermediate_size": 64}
    with pytest.raises(
        ResumeError, match=r"model.hidden_size was 64 in the checkpoint and is 32 now"
    ):
        rl.RLTrainer(c, str(tmp_path))


def test_nan_rewards_skip_updates_then_stop_with_last_good_checkpoint(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 10
    c.checkpoint.every = 0
    c.checkpoint.async_save = False
    # Every reward is NaN: the fallback itself is NaN, so advantages and the
    # loss are non-finite and every update must be skipped.
    c.rewards.fallback = float("nan")
    c.rewards.sources = {"test_always_nan": dict(weight=1.0, kwargs={})}
    c.updates.max_consecutive_skips = 3
    c.lock()
    from rewardjax.registry import REWARDS
    from rewardjax.rewards.base import register_reward

    if "test_always_nan" not in REWARDS:
        register_reward("test_always_nan")(lambda p, comps, f, **kw: [float("nan")] * len(comps))
    trainer = rl.RLTrainer(c, str(tmp_path))
    initial = jax.tree.map(np.asarray, trainer.state.params)
    with pytest.raises(FloatingPointError, match="3 consecutive updates had a non-finite loss"):
        trainer.run()
    assert trainer.step == 3
    assert int(trainer.state.skipped) == 3
    for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(trainer.state.params)):
        np.testing.assert_array_equal(a, b)
    step, state, _ = Checkpointer(str(tmp_path)).restore_latest(trainer._checkpoint_state())
    assert step == 3
    for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(state["train"].params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["train/skipped_total"] for r in records] == [1.0, 2.0, 3.0]
