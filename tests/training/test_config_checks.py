"""Out-of-range config values fail at start, naming the key and the allowed range."""

import math

import pytest

from configs import dpo_arithmetic, grpo_arithmetic, sft_arithmetic
from rewardjax.training import offline, rl
from rewardjax.training.config_checks import RANGES, ConfigError, check_ranges


@pytest.mark.parametrize(
    "module, key, value, allowed",
    [
        (dpo_arithmetic, "batch_size", 0, "an integer ≥ 1"),
        (grpo_arithmetic, "rollout.group_size", 0, "an integer ≥ 1"),
        (grpo_arithmetic, "rollout.prompts_per_step", 0, "an integer ≥ 1"),
        (grpo_arithmetic, "rollout.temperature", 0.0, "a number in (0.0, ∞)"),
        (grpo_arithmetic, "rollout.top_p", 1.5, "a number in (0.0, 1.0]"),
        (grpo_arithmetic, "kl.coef", -0.1, "a number in [0.0, ∞)"),
        (grpo_arithmetic, "loss.kwargs.clip_high", float("nan"), "a number in [0.0, ∞)"),
        (sft_arithmetic, "optim.learning_rate", -1e-3, "a number in [0.0, ∞)"),
        (sft_arithmetic, "checkpoint.keep", 0, "an integer ≥ 1"),
        (sft_arithmetic, "data.completion_length", 0, "an integer ≥ 1"),
    ],
)
def test_out_of_range_value_names_key_and_range(module, key, value, allowed, tmp_path):
    c = module.get_config("runlocal=True")
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    trainer_cls = rl.RLTrainer if c.trainer == "rl" else offline.OfflineTrainer
    with pytest.raises(ConfigError) as raised:
        trainer_cls(c, str(tmp_path / "w"))
    assert str(raised.value) == f"config {key}={value!r} is out of range: it must be {allowed}"
    assert not (tmp_path / "w").exists()  # nothing was created before the check


def test_every_shipped_config_is_in_range():
    for module in (dpo_arithmetic, grpo_arithmetic, sft_arithmetic):
        for arg in (None, "runlocal=True"):
            check_ranges(module.get_config(arg))


def test_ranges_accept_their_bounds_and_refuse_beyond():
    int_ok, _ = RANGES["rollout.group_size"]
    assert int_ok(1) and not int_ok(0) and not int_ok(True) and not int_ok(2.0)
    top_p_ok, _ = RANGES["rollout.top_p"]
    assert top_p_ok(1.0) and top_p_ok(1e-9) and not top_p_ok(0.0) and not top_p_ok(math.inf)
    greedy_ok, _ = RANGES["eval.temperature"]
    assert greedy_ok(0.0) and not greedy_ok(-1e-9)


def test_a_failing_relaunch_leaves_the_workdirs_record_as_it_was(tmp_path):
    c = sft_arithmetic.get_config("runlocal=True")
    c.steps = 1
    c.export_hf = False
    c.checkpoint.async_save = False
    offline.OfflineTrainer(c, str(tmp_path)).run()
    before = (tmp_path / "config.json").read_text()
    c.batch_size = 0
    with pytest.raises(ConfigError):
        offline.OfflineTrainer(c, str(tmp_path))
    assert (tmp_path / "config.json").read_text() == before
