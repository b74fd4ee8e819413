"""Runs survive: SIGKILL at three points (one mid-save) then resume gives bitwise-identical params.

Both loops (RL and offline) run under the same shell, so both are killed and
resumed here, each with a run whose weights move. Also the non-finite guard at
trainer level: NaN rewards skip updates, K in a row stop the run with a
checkpoint of the last good state.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import grpo_arithmetic, sft_arithmetic
from rewardjax.training import offline, rl
from rewardjax.training.checkpoint import Checkpointer, ResumeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 7
# GRPO: a dense shaping reward so that the untrained runlocal policy gets reward
# variance within its groups (with the task reward alone every sample scores 0,
# the gradients are exactly 0 and a resume test would compare frozen weights).
MOVING_RL_REWARDS = {
    "task_correct": {"weight": 1.0, "kwargs": {}},
    "dapo_overlong_penalty": {"weight": 1.0, "kwargs": {"max_length": 32, "cache_length": 31}},
}
LOOPS = {
    "rl": (
        "configs/grpo_arithmetic.py:runlocal=True",
        [
            f"--config.rewards.sources={json.dumps(MOVING_RL_REWARDS)}",
            "--config.log.samples_every=0",
        ],
    ),
    "offline": ("configs/sft_arithmetic.py:runlocal=True", []),
}


def _train(loop, workdir, fault=None):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env.pop("REWARDJAX_FAULT", None)
    if fault:
        env["REWARDJAX_FAULT"] = fault
    config, overrides = LOOPS[loop]
    cmd = [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={workdir}"]
    cmd += [*overrides, f"--config.steps={STEPS}", "--config.checkpoint.every=2"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _template(loop, workdir):
    if loop == "rl":
        c = grpo_arithmetic.get_config("runlocal=True")
        trainer = rl.RLTrainer(c, str(workdir) + "_template")
    else:
        c = sft_arithmetic.get_config("runlocal=True")
        trainer = offline.OfflineTrainer(c, str(workdir) + "_template")
    return {"train": trainer.state}


def _params_at(workdir, template, step):
    state, meta = Checkpointer(str(workdir)).restore_step(step, template)
    return jax.tree.map(np.asarray, state["train"].params), meta


@pytest.mark.parametrize("loop", list(LOOPS))
@pytest.mark.slow
def test_sigkill_at_three_points_then_resume_is_bitwise_identical(loop, tmp_path):
    clean = tmp_path / "clean"
    result = _train(loop, clean)
    assert result.returncode == 0, result.stderr[-2000:]

    killed = tmp_path / "killed"
    for fault in ("after_step=3", "during_save=4", "after_step=6"):
        result = _train(loop, killed, fault)
        assert result.returncode == -9, f"{fault}: rc={result.returncode}\n{result.stderr[-2000:]}"
    result = _train(loop, killed)
    assert result.returncode == 0, result.stderr[-2000:]

    template = _template(loop, tmp_path / "t")
    assert Checkpointer(str(clean)).steps()[-1] == STEPS
    early, _ = _params_at(clean, template, STEPS - 1)  # keep=2: steps 6 and 7 remain
    params_a, meta_a = _params_at(clean, template, STEPS)
    params_b, meta_b = _params_at(killed, template, STEPS)
    # The weights moved between checkpoints: equality after a resume means something.
    moved = [
        not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(early), jax.tree.leaves(params_a))
    ]
    assert all(moved), "some parameters never changed in the last step"
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    assert meta_a["rng"] == meta_b["rng"]
    data_key = "source" if loop == "rl" else "data"
    assert meta_a[data_key] == meta_b[data_key]
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
    c.max_consecutive_skips = 3
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
    step, state, _ = Checkpointer(str(tmp_path)).restore_latest({"train": trainer.state})
    assert step == 3
    for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(state["train"].params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["train/skipped_total"] for r in records] == [1.0, 2.0, 3.0]
