"""configs/rl_variants.py's reward=, gate= and shaping= options, scored on hand-written completions."""

import numpy as np
import pytest

from configs import rl_variants
from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain
from rewardjax.data.tasks.base import Problem
from rewardjax.rewards import shaping
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training.rl_rewards import RewardComputer

PROBLEM = Problem(
    prompt="Q: 1+2+4\n",
    answer="7",
    steps=["1+2=3", "3+4=7", "A: 7"],
    uid="t",
    fields={"terms": [1, 2, 4], "ops": "++"},
)
RIGHT, WRONG = "1+2=3\n3+4=7\nA: 7", "1+2=3\n3+4=8\nA: 8"
THINK_RIGHT, THINK_WRONG = "<think>1+2=3\n3+4=7</think>\nA: 7", "<think>1+2=3\n3+4=8</think>\nA: 8"


def _scores(arg, completions, step=0):
    c = rl_variants.get_config(f"runlocal=True,{arg}")
    computer = RewardComputer(
        c.rewards, task=ArithmeticChain(num_steps=2), tokenizer=CharTokenizer()
    )
    n = len(completions)
    scores, info = computer(
        [PROBLEM] * n,  # one prompt: one group
        completions,
        lengths=np.full(n, 20),
        truncated=np.zeros(n, bool),
        step=step,
    )
    return scores, info


@pytest.mark.parametrize("name", ["math_verify_equiv", "exact_match"])
def test_answer_rewards_read_the_answer_line(name):
    scores, _ = _scores(f"reward={name}", [RIGHT, WRONG, THINK_RIGHT])
    np.testing.assert_array_equal(scores, [1.0, 0.0, 1.0])


def test_format_think_rewards_the_tags_not_the_answer():
    scores, info = _scores("reward=format_think", [THINK_RIGHT, RIGHT, THINK_WRONG, WRONG])
    np.testing.assert_array_equal(scores, [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(info["correct"], [True, True, False, False])


def test_correctness_gated_length_reads_the_task_verdict():
    # Half the group is right (ρ = 0.5 ≥ threshold 0.5): the length term applies,
    # so the scores are not the plain 0/1 verdicts.
    scores, _ = _scores("reward=correctness_gated_length", [RIGHT, RIGHT, WRONG, WRONG])
    assert scores[0] >= scores[2] and scores[1] >= scores[3]
    all_wrong, _ = _scores("reward=correctness_gated_length", [WRONG] * 4)
    np.testing.assert_array_equal(all_wrong, [0.0] * 4)


def test_gate_counts_the_other_sources_only_on_correct_answers():
    c = rl_variants.get_config("runlocal=True,reward=task_correct+format_think,gate=task_correct")
    assert c.rewards.sources.format_think.gate == "task_correct"
    assert "gate" not in c.rewards.sources.task_correct
    scores, _ = _scores(
        "reward=task_correct+format_think,gate=task_correct",
        [THINK_RIGHT, RIGHT, THINK_WRONG, WRONG],
    )
    # task_correct + 1[correct]·format_think: the wrong answer's format bonus is gated off.
    np.testing.assert_array_equal(scores, [2.0, 1.0, 0.0, 0.0])


def test_reward_clip_keeps_the_sum_of_sources_in_range():
    # Majority answer 7 (right): verdict + agreement = 2 on the right rows, clipped to 1.
    scores, _ = _scores(
        "reward=task_correct+majority_vote_reward,shaping=reward_clip",
        [RIGHT, RIGHT, RIGHT, WRONG],
    )
    np.testing.assert_array_equal(scores, [1.0, 1.0, 1.0, 0.0])


def test_logsigmoid_transform_is_relative_to_the_group_median():
    scores, _ = _scores("shaping=logsigmoid_transform", [RIGHT, RIGHT, WRONG, WRONG])
    # median 0.5: log σ(±0.5)
    log_sigmoid = lambda x: -np.log1p(np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(scores, [log_sigmoid(0.5)] * 2 + [log_sigmoid(-0.5)] * 2, rtol=1e-5)


def test_reward_ensemble_agg_averages_the_sources():
    c = rl_variants.get_config(
        "runlocal=True,reward=math_verify_equiv+exact_match,shaping=reward_ensemble_agg"
    )
    (step,) = c.rewards.shaping
    assert sorted(step["keys"]) == ["exact_match", "math_verify_equiv"]
    # Without the step the sum of both would be 2 on the right answer.
    scores, _ = _scores(
        "reward=math_verify_equiv+exact_match,shaping=reward_ensemble_agg", [RIGHT, WRONG]
    )
    np.testing.assert_array_equal(scores, [1.0, 0.0])


def test_reward_noise_flip_flips_about_p_of_the_rewards():
    completions = [RIGHT, WRONG] * 200
    clean = np.tile([1.0, 0.0], 200)
    scores, info = _scores("shaping=reward_noise_flip", completions, step=3)
    flipped = scores != clean
    np.testing.assert_array_equal(scores[flipped], 1.0 - clean[flipped])
    assert 0.05 < flipped.mean() < 0.15  # p = 0.1 of 400 rows
    assert info["stats"]["shaping/0_reward_noise_flip/flip_frac"] == pytest.approx(flipped.mean())


def test_shaping_steps_are_steps_of_the_trainer():
    assert set(rl_variants.SHAPING_STEPS) <= set(shaping._STEPS)
    c = rl_variants.get_config("runlocal=True,shaping=reward_noise_flip+reward_clip")
    assert [s["name"] for s in c.rewards.shaping] == ["reward_noise_flip", "reward_clip"]


@pytest.mark.parametrize(
    "arg, message",
    [
        ("reward=nope", "'nope' unknown"),
        ("reward=task_correct+nope", "'nope' unknown"),
        ("shaping=reward_clip+nope", "'nope' unknown"),
        ("gate=task_correct", "two or more reward sources"),
        ("reward=task_correct+format_think,gate=exact_match", "two or more reward sources"),
    ],
)
def test_unknown_options_fail_naming_themselves(arg, message):
    with pytest.raises(ValueError, match=message):
        rl_variants.get_config(f"runlocal=True,{arg}")
