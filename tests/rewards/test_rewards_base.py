"""rewardjax.rewards.base: RewardFunctionPool / compute_rewards, pools, timeouts, fallbacks."""

import os
import sys
import time

import numpy as np
import pytest

from rewardjax.registry import REWARDS
from rewardjax.rewards import RewardFunctionPool, RewardSpec, compute_rewards, reward_info

# The misbehaving rewards live in a module that worker processes can import by
# name (they inherit sys.path); importing it registers the testonly_* keys.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _reward_fixtures  # noqa: F401

NAN = np.nan


def test_weighted_components_and_metrics():
    completions = ["<think>a</think> Paris.", "paris", "<think>x</think> Rome"]
    fields = [{"answer": "paris"}] * 3
    specs = [
        {"name": "exact_match", "weight": 1.0, "kwargs": {"extract": "none"}, "key": "em"},
        {"name": "format_think", "weight": 0.5},
    ]
    scores, stats = compute_rewards(specs, ["q"] * 3, completions, fields)
    # em: "<think>a</think> paris" ≠ "paris" → 0; "paris" → 1; Rome → 0. format: 1, 0, 1.
    np.testing.assert_allclose(scores, [0.5, 1.0, 0.5])
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(stats["components"]["em"], [0, 1, 0])
    np.testing.assert_array_equal(stats["components"]["format_think"], [1, 0, 1])
    assert stats["metrics"]["rewards/em/mean"] == pytest.approx(1 / 3)
    assert stats["metrics"]["rewards/total/mean"] == pytest.approx(2 / 3)
    assert stats["valid"].all()


def test_exceptions_and_nonfinite_get_the_fallback_with_a_counted_reason():
    completions = ["ab", "boom", "nan", "inf", "none", "abc"]
    with RewardFunctionPool([{"name": "testonly_misbehave", "fallback": -1.0}]) as rc:
        scores, stats = rc(["q"] * 6, completions)
    # "none" is unscorable (NaN, not a fallback); the others fall back to −1.
    np.testing.assert_allclose(scores, [2, -1, -1, -1, NAN, 3])
    assert stats["fallbacks"]["testonly_misbehave"] == {
        "exception": 1,
        "timeout": 0,
        "nonfinite": 2,
    }
    assert "RuntimeError: grader bug" in stats["errors"]["testonly_misbehave"]
    np.testing.assert_array_equal(stats["valid"], [1, 1, 1, 1, 0, 1])
    assert stats["metrics"]["rewards/testonly_misbehave/fallback_frac"] == pytest.approx(3 / 6)
    assert stats["metrics"]["rewards/testonly_misbehave/unscorable_frac"] == pytest.approx(1 / 6)


def test_wrong_output_length_is_an_exception():
    scores, stats = compute_rewards([{"name": "testonly_wrong_length"}], ["q"], ["a"])
    assert scores[0] == 0.0 and stats["fallbacks"]["testonly_wrong_length"]["exception"] == 1


def test_thread_pool_timeout_and_overlap():
    completions = ["slow", "a", "bb", "slow"]
    spec = {
        "name": "testonly_misbehave",
        "executor": "thread",
        "timeout_s": 0.3,
        "fallback": 0.5,
        "kwargs": {"sleep_s": 3.0},
    }
    with RewardFunctionPool([spec], max_workers=4) as rc:
        start = time.monotonic()
        scores, stats = rc(["q"] * 4, completions)
        elapsed = time.monotonic() - start
        np.testing.assert_allclose(scores, [0.5, 1, 2, 0.5])
        assert stats["fallbacks"]["testonly_misbehave"]["timeout"] == 2
        assert elapsed < 1.5
        # Stuck threads are abandoned: the next batch runs on fresh threads.
        scores, _ = rc(["q"] * 2, ["abc", "d"])
        np.testing.assert_allclose(scores, [3, 1])


def test_slow_graders_overlap_on_the_thread_pool():
    spec = {"name": "testonly_misbehave", "executor": "thread", "kwargs": {"sleep_s": 0.4}}
    with RewardFunctionPool([spec], max_workers=8) as rc:
        start = time.monotonic()
        scores, _ = rc(["q"] * 8, ["slow"] * 8)
        # 8 × 0.4 s sequentially = 3.2 s; overlapped ≈ 0.4 s.
        assert time.monotonic() - start < 1.6
    np.testing.assert_allclose(scores, [4.0] * 8)


def test_process_pool_scores_and_times_out():
    completions = [r"\boxed{\frac{1}{2}}", r"\boxed{3}", "slow"]
    fields = [{"answer": "0.5"}] * 3
    specs = [
        {"name": "math_verify_equiv", "executor": "process"},
        {
            "name": "testonly_misbehave",
            "executor": "process",
            "timeout_s": 0.5,
            "weight": 0.0,
            "kwargs": {"sleep_s": 30.0},
        },
    ]
    with RewardFunctionPool(specs, max_processes=2) as rc:
        start = time.monotonic()
        scores, stats = rc(["q"] * 3, completions, fields)
        assert time.monotonic() - start < 30
    np.testing.assert_allclose(stats["components"]["math_verify_equiv"], [1, 0, 0])
    np.testing.assert_allclose(stats["components"]["testonly_misbehave"], [19, 9, 0])
    assert stats["fallbacks"]["testonly_misbehave"]["timeout"] == 1
    np.testing.assert_allclose(scores, [1, 0, 0])


def test_group_ids_reach_group_rewards_and_step_scores_are_returned():
    completions = [
        r"\boxed{1}",
        r"\boxed{1}",
        r"\boxed{2}",
        r"\boxed{5}",
        r"\boxed{6}",
        r"\boxed{6}",
    ]
    prompts = ["p0"] * 3 + ["p1"] * 3
    specs = [{"name": "majority_vote_reward"}, {"name": "testonly_steps", "weight": 0.0}]
    scores, stats = compute_rewards(specs, prompts, completions)
    np.testing.assert_allclose(scores, [1, 1, 0, 0, 1, 1])
    assert stats["diagnostics"]["testonly_steps"]["group"] == [0, 0, 0, 1, 1, 1]
    assert stats["step_scores"]["testonly_steps"][2] == [0.5, 0.5, 0.5]
    # Explicit group ids override prompt identity: one group of six, majority 1 vs 6 tied → first.
    scores, _ = compute_rewards(specs, prompts, completions, group_ids=[0] * 6)
    np.testing.assert_allclose(scores, [1, 1, 0, 0, 0, 0])


def test_gate_in_spec_and_shaping_pipeline():
    completions = ["<think>a</think> paris", "<think>a</think> rome"]
    fields = [{"answer": "paris"}] * 2
    specs = [
        {"name": "exact_match", "kwargs": {"extract": "none"}, "key": "em"},
        {"name": "format_think", "weight": 0.5, "gate": "em"},
    ]
    scores, _ = compute_rewards(specs, ["q"] * 2, ["paris", "rome"], fields)
    np.testing.assert_allclose(scores, [1.0, 0.0])
    scores, stats = compute_rewards(
        [{"name": "format_think"}],
        ["q"] * 2,
        completions,
        fields,
        shaping=[{"name": "reward_noise_flip", "p": 1.0, "seed": 0}],
        step=3,
    )
    np.testing.assert_allclose(scores, [0.0, 0.0])
    assert stats["shaping"]["0_reward_noise_flip/flip_frac"] == 1.0


def test_spec_validation_names_the_culprit():
    with pytest.raises(KeyError, match="unknown reward function 'nope'"):
        RewardFunctionPool([{"name": "nope"}])
    with pytest.raises(ValueError, match="unknown keys"):
        RewardFunctionPool([{"name": "format_think", "wieght": 1}])
    with pytest.raises(ValueError, match="on device"):
        RewardFunctionPool([{"name": "ref_answer_logprob"}])
    with pytest.raises(ValueError, match="duplicate"):
        RewardFunctionPool([{"name": "format_think"}, {"name": "format_think"}])
    with pytest.raises(ValueError, match="gate"):
        RewardFunctionPool([{"name": "format_think", "gate": "acc"}])
    with pytest.raises(ValueError, match="executor"):
        RewardFunctionPool([{"name": "format_think", "executor": "gpu"}])
    with pytest.raises(KeyError, match="reward shaping"):
        RewardFunctionPool([{"name": "format_think"}], shaping=[{"name": "nope"}])
    with pytest.raises(ValueError, match="completions"):
        compute_rewards([{"name": "format_think"}], ["q"], ["a", "b"])
    assert RewardSpec.from_config({"name": "format_think"}).component == "format_think"


def test_every_text_reward_runs_on_a_generic_batch():
    fields = {
        "answer": "4",
        "correct": 1,
        "completion_length": 12,
        "tests": [{"input": "", "output": "4"}],
        "style": "stdio",
    }
    completions = [
        "<think>2+2</think> <answer>4</answer> <confidence>0.9</confidence>",
        "```python\nprint(4)\n```",
    ]
    names = [
        n for n in REWARDS.names() if not reward_info(n).device and not n.startswith("testonly_")
    ]
    for name in names:
        out = REWARDS.get(name)(["q"] * 2, completions, [dict(fields, group_id=0)] * 2)
        scores = getattr(out, "scores", out)
        assert len(scores) == 2, name
        assert all(s is None or np.isfinite(s) for s in scores), name
