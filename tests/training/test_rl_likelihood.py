"""Likelihood rewards in the RL loop: the reference answer teacher-forced after the sampled reasoning."""

import jax
import numpy as np
import pytest

from configs import grpo_arithmetic_likelihood
from rewardjax import models
from rewardjax.rewards.likelihood import forced_answer_inputs
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import rl

TOK = CharTokenizer()


def test_forced_answer_inputs_by_hand():
    out = forced_answer_inputs(TOK, ["1+2=3\nA: 4", "1+2=3"], ["3", "3"], answer_prefix="A: ")
    first = [*TOK.encode("1+2=3\nA: "), *TOK.encode("3"), TOK.eos_id]
    second = [*TOK.encode("1+2=3\nA: "), *TOK.encode("3"), TOK.eos_id]  # no answer line: one added
    np.testing.assert_array_equal(out["tokens"][0, : len(first)], first)
    np.testing.assert_array_equal(out["tokens"][1, : len(second)], second)
    np.testing.assert_array_equal(out["answer_mask"][0], [0.0] * 9 + [1.0, 0.0])
    np.testing.assert_array_equal(out["mask"][0], [1.0] * 11)
    base = forced_answer_inputs(TOK, ["anything"], ["12"], answer_prefix="A: ", reasoning=False)
    np.testing.assert_array_equal(
        base["tokens"][0], [*TOK.encode("A: "), *TOK.encode("12"), TOK.eos_id]
    )
    np.testing.assert_array_equal(base["answer_mask"][0], [0, 0, 0, 1, 1, 0])
    with pytest.raises(ValueError, match="reference answer"):
        forced_answer_inputs(TOK, ["x"], [""], answer_prefix="A: ")


def _logprobs_by_hand(params, config, prompt, forced):
    """log π of each forced token after the prompt, from the full logits (float64)."""
    model = models.build(config)
    ids = np.array([[*prompt, *forced]], np.int32)
    logits = np.asarray(model.apply({"params": params}, ids), np.float64)[0]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
    logp -= logits.max(-1, keepdims=True)
    return np.array([logp[len(prompt) - 1 + i, t] for i, t in enumerate(forced)])


@pytest.mark.parametrize("reward", ["ref_answer_logprob", "rlpr_prob_reward"])
@pytest.mark.slow
def test_likelihood_rewards_equal_the_policy_probability_of_the_answer(tmp_path, reward):
    c = grpo_arithmetic_likelihood.get_config(f"runlocal=True,reward={reward},verifier_weight=0")
    c.steps = 1
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, problems, metrics = trainer.collect()
    params = jax.tree.map(np.asarray, trainer.state.params["policy"])
    g = c.rollout.group_size
    for row in (0, g + 1):
        problem = problems[row // g]
        text = TOK.decode(batch["tokens"][row, : batch["lengths"][row]].tolist())
        cut = text.rfind("A: ")
        head = text[:cut] if cut >= 0 else text.rstrip() + "\n"
        lead, answer = TOK.encode(head + "A: "), TOK.encode(problem.answer)
        prompt = TOK.encode(problem.prompt)
        lp = _logprobs_by_hand(params, trainer.model_config, prompt, [*lead, *answer])
        answer_lp = lp[len(lead) :]
        if reward == "ref_answer_logprob":
            expected = answer_lp.mean()  # length_normalize=True
        else:
            base = _logprobs_by_hand(
                params, trainer.model_config, prompt, [*TOK.encode("A: "), *answer]
            )[3:]
            expected = np.clip(np.exp(answer_lp).mean() - np.exp(base).mean(), 0.0, 1.0)
        np.testing.assert_allclose(batch["rewards"][row], expected, rtol=2e-4, atol=1e-5)
    assert f"reward/{reward}/mean" in metrics
    trainer.run()
    assert trainer.step == 1


def test_likelihood_source_kwargs_are_checked(tmp_path):
    c = grpo_arithmetic_likelihood.get_config("runlocal=True")
    c.rewards.sources.ref_answer_logprob.kwargs.length_normalise = True
    with pytest.raises(
        ValueError, match=r"rewards.sources.ref_answer_logprob.kwargs.*length_normalise"
    ):
        rl.RLTrainer(c, str(tmp_path / "rl"))
