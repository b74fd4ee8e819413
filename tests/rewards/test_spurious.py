"""rewardjax.rewards.spurious: a random reward that carries no information about the completion."""

import numpy as np
import pytest

from rewardjax.rewards import compute_rewards, random_reward, reward_info

RIGHT, WRONG = "7+5=12\nA: 12", "7+5=13\nA: 13"


def run(prompts, completions, **kw):
    return np.asarray(random_reward(prompts, completions, [{}] * len(completions), **kw))


def test_random_reward_is_deterministic_given_seed_and_rows():
    prompts = [f"Q: {i}\n" for i in range(64)]
    completions = [RIGHT] * 64
    first = run(prompts, completions, seed=3)
    assert set(first.tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(run(prompts, completions, seed=3), first)
    # Another seed, or another batch (the next step's rollouts), draws afresh;
    # each of these holds with probability 1 − 2^−64.
    assert not np.array_equal(run(prompts, completions, seed=4), first)
    changed = [*completions[:-1], WRONG]
    assert not np.array_equal(run(prompts, changed, seed=3), first)
    # Rows are not scored one by one: identical rows in a batch get independent draws.
    same = run(["Q: 1\n"] * 64, [RIGHT] * 64, seed=3)
    assert 0 < same.sum() < 64


def test_random_reward_rate_is_p_and_the_same_for_every_completion():
    # 400 steps of 16 rows, half right and half wrong, the same texts in every step.
    right, wrong = [], []
    for step in range(400):
        prompts = [f"Q: {step}+{i}\n" for i in range(8)] * 2
        r = run(prompts, [RIGHT] * 8 + [WRONG] * 8, p=0.3, seed=0)
        right += r[:8].tolist()
        wrong += r[8:].tolist()
    # 3,200 draws each: std of the rate ≈ 0.0081; a reward that tracked the text
    # would put one rate near 0 or 1.
    assert abs(np.mean(right) - 0.3) < 0.03
    assert abs(np.mean(wrong) - 0.3) < 0.03
    # One fixed row, the same prompt and completion in every step, is rewarded
    # at rate p too, not always or never.
    fixed = [run(["Q: 1\n", f"Q: {s}\n"], [RIGHT, RIGHT], seed=0)[0] for s in range(400)]
    assert abs(np.mean(fixed) - 0.5) < 0.08  # 400 draws: std 0.025


def test_random_reward_edges():
    prompts, completions = ["q"] * 10, [RIGHT] * 10
    np.testing.assert_array_equal(run(prompts, completions, p=0.0), np.zeros(10))
    np.testing.assert_array_equal(run(prompts, completions, p=1.0), np.ones(10))
    assert run([], [], p=0.5).shape == (0,)
    with pytest.raises(ValueError, match="p must be in"):
        run(prompts, completions, p=1.5)


def test_the_pool_scores_the_batch_in_one_call():
    # Scored row by row, identical rows would get identical rewards (a function
    # of the text), which the policy could learn to earn.
    assert not reward_info("random_reward").per_sample
    prompts, completions = ["Q: 1\n"] * 64, [RIGHT] * 64
    spec = {"name": "random_reward", "kwargs": {"p": 0.5, "seed": 5}}
    scores, stats = compute_rewards([spec], prompts, completions)
    np.testing.assert_array_equal(scores, run(prompts, completions, p=0.5, seed=5))
    assert 0 < scores.sum() < 64
    assert stats["fallbacks"]["random_reward"]["exception"] == 0
