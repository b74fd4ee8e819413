"""Preference pairs from the policy's own graded samples (data.pairs_from = "policy")."""

import os
import sys

import jax
import numpy as np
import pytest

from configs import dpo_arithmetic, rm_arithmetic
from rewardjax import models
from rewardjax.data.tasks import make_task
from rewardjax.tokenizers import load_tokenizer
from rewardjax.training import offline
from rewardjax.training.kinds.data import policy_pairs, train_pairs
from rewardjax.training.rollout import EvalResult

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _offline_fixtures as fx


def _graded(task, problems, texts):
    correct = np.array([[task.grade(p, t).correct for t in row] for p, row in zip(problems, texts)])
    n = correct.shape[1]
    shape = correct.shape
    return EvalResult(
        correct=correct.astype(np.float32),
        answers=[[None] * n for _ in problems],
        lengths=np.ones(shape, np.int32),
        truncated=np.zeros(shape, bool),
        texts=texts,
    )


def test_one_pair_per_problem_with_both_outcomes():
    task = make_task("arithmetic_chain", **fx.TASK)
    problems = task.problems(0, 3, split="train", seed=0)
    rng = np.random.default_rng(0)
    wrong = [[task.demonstration(p, rng, error_rate=1.0) for _ in range(3)] for p in problems]
    texts = [
        [
            problems[0].reference_completion,
            wrong[0][0],
            wrong[0][1],
            problems[0].reference_completion,
        ],
        [problems[1].reference_completion] * 4,  # all correct: no pair
        wrong[2] + [wrong[2][0]],  # all wrong: no pair
    ]
    candidates = _graded(task, problems, texts)
    pairs = policy_pairs(problems, candidates, seed=0)
    assert len(pairs) == 1
    (pair,) = pairs
    assert pair.prompt == problems[0].prompt
    assert task.grade(problems[0], pair.chosen).correct
    assert not task.grade(problems[0], pair.rejected).correct
    assert pair.rejected in (wrong[0][0], wrong[0][1])
    assert pair.fields["pass_rate"] == 0.5
    # The draw among the incorrect samples follows the seed.
    drawn = {policy_pairs(problems, candidates, seed=s)[0].rejected for s in range(20)}
    assert drawn == {wrong[0][0], wrong[0][1]}


def test_unknown_source_and_a_policy_that_never_solves_are_named():
    task = make_task("arithmetic_chain", **fx.TASK)
    c = fx.offline_config(rm_arithmetic, "runlocal=True", pairs_from="prompts")
    with pytest.raises(ValueError, match=r"data.pairs_from='prompts'; known: task, policy"):
        train_pairs(c.data, task, seed=0, model_config=None, params=None, tokenizer=None)
    # A random tiny model never writes a correct solution: no pair, and the error says why.
    c = fx.offline_config(rm_arithmetic, "runlocal=True", pairs_from="policy", num_train=8)
    tokenizer = load_tokenizer("char")
    config = models.preset("tiny", vocab_size=tokenizer.vocab_size)
    params = models.init_params(config, jax.random.key(0))
    with pytest.raises(ValueError, match=r"none of 8 problems got both a correct and an incorrect"):
        train_pairs(c.data, task, seed=0, model_config=config, params=params, tokenizer=tokenizer)


@pytest.mark.parametrize("module", [rm_arithmetic, dpo_arithmetic])
@pytest.mark.slow
def test_trainers_learn_from_their_start_policys_samples(
    module, tmp_path_factory, worker_id, tmp_path
):
    sft_hf = fx.shared_sft(tmp_path_factory, worker_id)
    c = fx.offline_config(
        module, f"runlocal=True,model_path={sft_hf}", pairs_from="policy", num_train=64
    )
    c.data.policy_samples = 8
    c.batch_size = 8
    c.steps = c.optim.total_steps = 2
    trainer = offline.OfflineTrainer(c, str(tmp_path / module.__name__))
    # The pairs are the SFT policy's own samples, labelled by the task's checker.
    task = trainer.task
    config, params = models.load_hf(sft_hf)
    pairs = train_pairs(
        c.data, task, seed=c.seed, model_config=config, params=params, tokenizer=trainer.tokenizer
    )
    problems = {p.prompt: p for p in task.problems(0, 64, split="train", seed=c.seed)}
    assert 8 <= len(pairs) <= 64
    for pair in pairs:
        assert task.grade(problems[pair.prompt], pair.chosen).correct
        assert not task.grade(problems[pair.prompt], pair.rejected).correct
    assert trainer.data.num_rows == len(pairs)
    last = trainer.run()
    assert np.isfinite(last["train/loss"])
