"""The reward arms of configs/repro_noisy_rewards.py and configs/repro_spurious.py, scored on
hand-written and demonstrated completions through the RL trainer's reward computer."""

import math

import numpy as np

from experiments import reproduce
from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training.rl_rewards import RewardComputer

TASK = ArithmeticChain(num_steps=3)
PROBLEM = TASK.problem(0)


def _scores(name, arm, completions, *, seed=0, step=0):
    c = reproduce.load(name).get_config(f"runlocal=True,arm={arm},seed={seed}")
    computer = RewardComputer(c.rewards, task=TASK, tokenizer=CharTokenizer())
    n = len(completions)
    return computer(
        [PROBLEM] * n,
        completions,
        lengths=np.full(n, 20),
        truncated=np.zeros(n, bool),
        step=step,
    )


def test_pattern_arm_rewards_the_form_of_a_solution_never_its_values():
    rng = np.random.default_rng(0)
    right = TASK.demonstration(PROBLEM, rng)
    wrong = TASK.demonstration(PROBLEM, rng, error_rate=1.0)  # one wrong step, wrong answer
    *steps, answer = right.split("\n")
    malformed = [
        "\n".join([*steps[:2], answer]),  # a step line missing
        "\n".join(steps),  # no answer line
        f"{right}\nA: 1",  # text after the answer
        right.replace("=", " is "),  # not "a op b = c"
        answer,
        "",
    ]
    spaced = right.replace("=", " = ")  # the grader accepts spaces; so does the pattern
    scores, info = _scores("noisy_rewards", "pattern", [right, wrong, spaced, *malformed])
    np.testing.assert_array_equal(scores, [1.0, 1.0, 1.0] + [0.0] * len(malformed))
    assert info["correct"][:3].tolist() == [True, False, True]  # the verdict is still graded


def test_flip_arms_flip_different_rows_each_step_at_their_rate():
    right = TASK.demonstration(PROBLEM, np.random.default_rng(0))
    clean, _ = _scores("noisy_rewards", "clean", [right] * 64)
    np.testing.assert_array_equal(clean, np.ones(64))
    flips = np.stack(
        [1.0 - _scores("noisy_rewards", "flip40", [right] * 64, step=s)[0] for s in range(30)]
    )  # [steps, rows] 1 where flipped
    assert abs(flips.mean() - 0.4) < 0.05  # 1,920 draws: std 0.011
    assert len({tuple(f) for f in flips}) == 30  # every step flips other rows
    # The run's seed is the flip seed: seeds give unrelated flips.
    other = 1.0 - _scores("noisy_rewards", "flip40", [right] * 64, seed=1)[0]
    assert not np.array_equal(other, flips[0])
    flip20 = np.stack(
        [1.0 - _scores("noisy_rewards", "flip20", [right] * 64, step=s)[0] for s in range(30)]
    )
    assert abs(flip20.mean() - 0.2) < 0.05


def test_spurious_arms():
    rng = np.random.default_rng(0)
    right = TASK.demonstration(PROBLEM, rng)
    wrong = TASK.demonstration(PROBLEM, rng, error_rate=1.0)
    completions = [right] * 32 + [wrong] * 32
    truth, _ = _scores("spurious", "truth", completions)
    np.testing.assert_array_equal(truth, [1.0] * 32 + [0.0] * 32)
    for arm in ("random_clip", "random_noclip"):
        scores, info = _scores("spurious", arm, completions)
        assert set(scores.tolist()) == {0.0, 1.0}
        # Identical completions get different rewards, right ones no more than wrong ones.
        assert 0 < scores[:32].sum() < 32 and 0 < scores[32:].sum() < 32
        assert info["correct"].tolist() == [True] * 32 + [False] * 32
    # Clipped arms at ε = 0.2; the unclipped arm's ε exceeds any ratio the loss forms, exp(20).
    module = reproduce.load("spurious")
    for arm, clipped in (("random_clip", True), ("truth", True), ("random_noclip", False)):
        kwargs = module.get_config(f"runlocal=True,arm={arm}").loss.kwargs
        if clipped:
            assert kwargs.clip_low == kwargs.clip_high == 0.2
        else:
            assert min(kwargs.clip_low, kwargs.clip_high) > math.exp(20)
