"""PAV progress rewards: prover prefix values → α·(V_s − V_{s−1}) at step-end tokens."""

import jax
import numpy as np
import pytest

from configs import grpo_arithmetic_pav
from rewardjax import models
from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain
from rewardjax.data.tasks.base import Problem
from rewardjax.scoring.sources import _ProgressSource
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import rl

TOK = CharTokenizer()
TASK = ArithmeticChain(num_steps=2, max_operand=9)


def _problem():
    return Problem(
        prompt="Q: 1+2+4\n",
        answer="7",
        steps=["1+2=3", "3+4=7", "A: 7"],
        uid="t",
        fields={"terms": [1, 2, 4], "ops": "++"},
    )


class ScriptedProver:
    """Rollouts looked up by the text after the prompt ("" for the prompt alone)."""

    tokenizer = TOK

    def __init__(self, script):
        self.script = script

    def check_lengths(self, prompts, where, prefixes=None):
        pass

    def continuations(self, prompts, *, k, rng, prefixes=None):
        prefixes = [""] * len(prompts) if prefixes is None else prefixes
        return [self.script[x][:k] for x in prefixes]


def _encode(completions, width=32):
    tokens = np.zeros((len(completions), width), np.int32)
    lengths = np.zeros(len(completions), np.int32)
    for i, c in enumerate(completions):
        ids = [*TOK.encode(c), TOK.eos_id]
        tokens[i, : len(ids)] = ids
        lengths[i] = len(ids)
    return tokens, lengths


def test_progress_by_hand_sums_to_outcome_minus_prompt_value():
    right, wrong = "1+2=3\n3+4=7\nA: 7", "1+2=4\n4+4=8\nA: 8"
    script = {
        "": ["1+2=3\n3+4=7\nA: 7", "1+2=3\n3+4=8\nA: 8"],  # V(prompt) = 1/2
        "1+2=3\n": ["3+4=7\nA: 7", "3+4=7\nA: 7"],  # 1
        "1+2=3\n3+4=7\n": ["A: 7", "A: 9"],  # 1/2
        "1+2=4\n": ["4+4=8\nA: 8", "4+4=8\nA: 8"],  # 0
        "1+2=4\n4+4=8\n": ["A: 8", "A: 7"],  # 1/2 (a lucky answer)
    }
    source = _ProgressSource(
        ScriptedProver(script),
        task=TASK,
        k=2,
        coef=0.5,
        separator="\n",
        max_steps=8,
        placement="sparse",
        seed=0,
    )
    tokens, lengths = _encode([right, wrong])
    problem = _problem()
    _, token_rewards, stats = source(
        [problem.prompt] * 2,
        [right, wrong],
        tokens=tokens,
        lengths=lengths,
        problems=[problem, problem],
    )
    # Values per step (last: the solution's own grade): right [1, ½, 1], wrong [0, ½, 0].
    expected = {
        0: [0.5 * (1 - 0.5), 0.5 * (0.5 - 1), 0.5 * (1 - 0.5)],
        1: [0.5 * (0 - 0.5), 0.5 * (0.5 - 0), 0.5 * (0 - 0.5)],
    }
    for row, rewards in expected.items():
        ends = [5, 11, int(lengths[row]) - 1]  # the two "\n" tokens, then the EOS
        np.testing.assert_allclose(token_rewards[row, ends], rewards, atol=1e-6)
        others = np.delete(token_rewards[row], ends)
        assert np.all(others == 0)
    # Σ progress = α·(outcome − V(prompt)).
    np.testing.assert_allclose(token_rewards.sum(1), [0.5 * (1 - 0.5), 0.5 * (0 - 0.5)], atol=1e-6)
    assert stats["prover_rollouts"] == 2 * 4 + 2  # four rolled-out prefixes, one prompt
    assert stats["steps_per_solution"] == 3


def test_bad_settings_are_errors():
    prover = ScriptedProver({})
    kw = dict(task=TASK, coef=0.5, separator="\n", max_steps=4, placement="sparse", seed=0)
    with pytest.raises(ValueError, match="k=0"):
        _ProgressSource(prover, **{**kw, "k": 0})
    with pytest.raises(ValueError, match="needs the run's task"):
        _ProgressSource(prover, **{**kw, "task": None, "k": 2})


def test_pav_config_runs_rl_steps_with_progress_rewards(tmp_path):
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    params = models.init_params(config, jax.random.key(0), ("lm",))
    start = str(tmp_path / "start")
    models.save_hf(start, config, jax.tree.map(np.asarray, params))
    c = grpo_arithmetic_pav.get_config(f"runlocal=True,model_path={start},k=2")
    c.steps = 2
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, _, metrics = trainer.collect()
    # A random prover never succeeds, so the values (and progress) are 0 here; the
    # arithmetic is checked by hand above. This checks the wiring into the loop.
    assert batch["token_rewards"].shape == batch["tokens"].shape
    assert metrics["reward/pav_progress_reward/prover_rollouts"] >= 2 * c.rollout.prompts_per_step
    out = trainer.run()
    assert trainer.step == 2 and np.isfinite(out["train/loss"])
