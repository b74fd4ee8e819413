"""A frozen generative judge as an RL reward source: P(Yes) per rollout, votes, and its cost."""

import jax
import ml_collections
import numpy as np
import pytest

from rewardjax import models
from rewardjax.data.tasks import ArithmeticChain
from rewardjax.judges import formats, scoring
from rewardjax.registry import MODEL_REWARDS
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training.rl_rewards import RewardComputer

TOK = CharTokenizer()
PROMPTS = ["Q: 1+2\n", "Q: 7+5-3\n", "Q: 4+4\n"]
COMPLETIONS = ["1+2=3\nA: 3", "7+5=12\n12-3=8\nA: 8", "A: 8"]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    params = models.init_params(config, jax.random.key(3))
    path = str(tmp_path_factory.mktemp("judge"))
    models.save_hf(path, config, params)
    return path, config, params


def test_p_yes_source_scores_each_rollout_with_its_own_judge_prompt(judge_dir):
    path, config, params = judge_dir
    # batch_size 2: three rows run as two padded chunks and keep their order.
    source = MODEL_REWARDS.get("generative_judge_reward")(
        path=path, batch_size=2, policy_tokenizer=TOK
    )
    scores, token_rewards, stats = source(PROMPTS, COMPLETIONS)
    expected = [
        scoring.p_yes(config, params, TOK, [formats.pointwise_prompt(p, c)])[0]
        for p, c in zip(PROMPTS, COMPLETIONS)
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert token_rewards is None and len(set(np.round(scores, 6))) == 3
    assert stats["seconds"] > 0
    assert stats["judge_prompt_tokens"] == sum(
        len(TOK.encode_prompt(formats.pointwise_prompt(p, c))) for p, c in zip(PROMPTS, COMPLETIONS)
    )


def test_vote_source_scores_parsed_votes_and_counts_failures(judge_dir, monkeypatch):
    path, _, _ = judge_dir
    yes, no = formats.parse_pointwise("Yes"), formats.parse_pointwise("No")
    bad = formats.parse_pointwise("maybe")
    table = {0: [yes, no, yes, bad], 1: [no, no, no, no], 2: [bad, bad, bad, bad]}

    def fake_sample(config, params, tok, prompts, *, num_samples, **kw):
        assert num_samples == 4
        return [
            table[COMPLETIONS.index(p.split("Solution:\n")[1].split("\nIs")[0])] for p in prompts
        ]

    monkeypatch.setattr(scoring, "sample_verdicts", fake_sample)
    source = MODEL_REWARDS.get("generative_judge_reward")(
        path=path, mode="vote", num_samples=4, on_failure="zero", policy_tokenizer=TOK
    )
    scores, _, stats = source(PROMPTS, COMPLETIONS)
    # mean vote, a failure counted as No: [2/4, 0, 0].
    np.testing.assert_allclose(scores, [0.5, 0.0, 0.0])
    assert stats["parse_failure_frac"] == pytest.approx(5 / 12)


def test_p_yes_mode_refuses_a_rationale_judge(judge_dir):
    with pytest.raises(ValueError, match="rationale"):
        MODEL_REWARDS.get("generative_judge_reward")(
            path=judge_dir[0], rationale=True, policy_tokenizer=TOK
        )


def test_the_reward_computer_takes_the_judge_as_a_weighted_source(judge_dir):
    path, config, params = judge_dir
    cfg = ml_collections.ConfigDict(
        dict(
            sources={
                "task_correct": dict(weight=1.0, kwargs={}),
                "generative_judge_reward": dict(weight=0.5, kwargs=dict(path=path)),
            },
            fallback=0.0,
            num_workers=0,
            timeout_s=10.0,
        )
    )
    task = ArithmeticChain(num_steps=2)
    problems = task.problems(0, 2)
    completions = [problems[0].reference_completion, "A: 999"]
    computer = RewardComputer(cfg, task=task, tokenizer=TOK)
    scores, info = computer(
        problems, completions, lengths=np.array([20, 4]), truncated=np.zeros(2, bool)
    )
    judged = scoring.p_yes(
        config,
        params,
        TOK,
        [formats.pointwise_prompt(p.prompt, c) for p, c in zip(problems, completions)],
    )
    np.testing.assert_allclose(scores, [1.0 + 0.5 * judged[0], 0.5 * judged[1]], rtol=1e-5)
    assert "generative_judge_reward/seconds" in info["stats"]
