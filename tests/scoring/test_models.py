"""Reward models as scorers: read positions, implicit-PRM rewards, ensembles, loading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import models
from rewardjax.models.transformer import ScalarHead
from rewardjax.scoring.models import (
    ImplicitProcessRewardModel,
    OutcomeRewardModel,
    ProcessRewardModel,
    RewardModelEnsemble,
)
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


def _tiny(heads, seed=0):
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    return config, models.init_params(config, jax.random.key(seed), heads)


def _export(tmp_path, name, heads, seed=0):
    config, params = _tiny(heads, seed)
    path = str(tmp_path / name)
    models.save_hf(path, config, jax.tree.map(np.asarray, params))
    return path


def _encode(text):
    return [*TOK.encode(text), TOK.eos_id]


def test_orm_reads_the_eos_position_and_ignores_padding():
    config, params = _tiny(("lm", "reward"))
    orm = OutcomeRewardModel(config, params, TOK, batch_size=2)
    prompts = ["Q: 1+2\n", "Q: 3+4+5\n", "Q: 9\n"]
    completions = ["1+2=3\nA: 3", "3+4=7\n7+5=12\nA: 12", "A: 9"]
    batched = orm.scores(prompts, completions)
    # Each row alone (no padding at all), read at its last token, the EOS.
    model = models.build(config)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        seq = jnp.array([TOK.encode(p) + _encode(c)])
        hidden = model.apply({"params": params}, seq, method="hidden_states")
        direct = ScalarHead(config).apply({"params": params["reward_head"]}, hidden)[0, -1]
        np.testing.assert_allclose(batched[i], direct, rtol=1e-4, atol=1e-5)


def test_prm_reads_each_step_end():
    config, params = _tiny(("lm", "prm"))
    prm = ProcessRewardModel(config, params, TOK, batch_size=4)
    prompt, steps = "Q: 1+2+4\n", ["1+2=3", "3+4=7", "A: 7"]
    (logits,) = prm.step_logits([prompt], [steps])
    seq = TOK.encode(prompt) + _encode("\n".join(steps))
    hidden = models.build(config).apply(
        {"params": params}, jnp.array([seq]), method="hidden_states"
    )
    head = ScalarHead(config).apply({"params": params["prm_head"]}, hidden)[0]
    # Step ends in the full sequence: the two "\n" and the EOS.
    offset = len(TOK.encode(prompt))
    ends = [offset + 5, offset + 11, len(seq) - 1]
    np.testing.assert_allclose(logits, np.asarray(head)[ends], rtol=1e-4, atol=1e-5)
    (probs,) = prm.step_scores([prompt], [steps])
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-6)


def test_implicit_prm_with_psi_equal_ref_gives_zero_rewards():
    config, params = _tiny(("lm",))
    iprm = ImplicitProcessRewardModel(config, params, params, TOK, beta=0.05, batch_size=2)
    (rewards,) = iprm.step_rewards(["Q: 1+2\n"], [["1+2=3", "A: 3"]])
    np.testing.assert_allclose(rewards, [0.0, 0.0], atol=1e-6)
    (scores,) = iprm.step_scores(["Q: 1+2\n"], [["1+2=3", "A: 3"]])
    np.testing.assert_allclose(scores, [0.5, 0.5], atol=1e-6)


def test_implicit_prm_step_rewards_sum_token_log_ratios():
    config, params = _tiny(("lm",), seed=0)
    _, ref = _tiny(("lm",), seed=1)
    iprm = ImplicitProcessRewardModel(config, params, ref, TOK, beta=0.5, batch_size=2)
    prompt, steps = "Q: 1+2\n", ["1+2=3", "A: 3"]
    (rewards,) = iprm.step_rewards([prompt], [steps])
    seq = jnp.array([TOK.encode(prompt) + _encode("\n".join(steps))])
    model = models.build(config)

    def token_logps(p):
        logits = model.apply({"params": p}, seq)[0, :-1]
        return jax.nn.log_softmax(logits)[jnp.arange(seq.shape[1] - 1), seq[0, 1:]]

    q = 0.5 * (token_logps(params) - token_logps(ref))
    start = len(TOK.encode(prompt)) - 1  # q[start + t] is completion token t
    # Step 0 = completion tokens 0..5 ("1+2=3\n"), step 1 = tokens 6..9 ("A: 3" + EOS).
    np.testing.assert_allclose(
        rewards, [q[start : start + 6].sum(), q[start + 6 :].sum()], rtol=1e-4, atol=1e-5
    )


class _FixedScores:
    def __init__(self, rows):
        self.rows = rows

    def scores(self, prompts, completions):
        return np.asarray(self.rows, np.float32)


def test_ensemble_modes_hand_computed():
    # Members score two responses: [1, 4], [3, 0]. mean [2, 2]; min [1, 0]; std (ddof 0) [1, 2].
    ens = RewardModelEnsemble([_FixedScores([1.0, 4.0]), _FixedScores([3.0, 0.0])], mode="mean")
    np.testing.assert_allclose(ens.scores(["a", "b"], ["x", "y"]), [2.0, 2.0])
    ens.mode = "min"
    np.testing.assert_allclose(ens.scores(["a", "b"], ["x", "y"]), [1.0, 0.0])
    ens.mode, ens.std_coef = "mean_minus_std", 0.5
    np.testing.assert_allclose(ens.scores(["a", "b"], ["x", "y"]), [1.5, 1.0])
    # Identical members: std 0, mean − λ·std = mean.
    same = RewardModelEnsemble([_FixedScores([1.0, 4.0])] * 3, mode="mean_minus_std", std_coef=2.0)
    np.testing.assert_allclose(same.scores(["a", "b"], ["x", "y"]), [1.0, 4.0])
    with pytest.raises(ValueError, match="ensemble mode 'max'"):
        RewardModelEnsemble([_FixedScores([1.0])], mode="max")


def test_wrong_head_type_is_a_one_line_error(tmp_path):
    orm_dir = _export(tmp_path, "orm", ("lm", "reward"))
    prm_dir = _export(tmp_path, "prm", ("lm", "prm"))
    with pytest.raises(
        models.CheckpointError, match="is not a process reward model.*no 'prm' head.*reward"
    ):
        ProcessRewardModel.load(orm_dir, tokenizer=TOK)
    with pytest.raises(
        models.CheckpointError, match="is not an outcome reward model.*no 'reward' head"
    ):
        OutcomeRewardModel.load(prm_dir, tokenizer=TOK)
    # The right head loads and scores.
    assert OutcomeRewardModel.load(orm_dir, tokenizer=TOK).scores(["Q"], ["A: 1"]).shape == (1,)


def test_reference_with_another_vocabulary_is_rejected(tmp_path):
    lm_dir = _export(tmp_path, "lm", ("lm",))
    other = models.preset("tiny", num_layers=1, vocab_size=160)
    other_dir = str(tmp_path / "other")
    models.save_hf(
        other_dir, other, jax.tree.map(np.asarray, models.init_params(other, jax.random.key(0)))
    )
    with pytest.raises(
        ValueError,
        match=r"embedding 'embed/embedding' is \[160, 64\] but the policy's is \[128, 64\]",
    ):
        ImplicitProcessRewardModel.load(lm_dir, reference=other_dir, tokenizer=TOK)
