"""Reward models as scorers and as RL reward sources: positions, credit rules, heads, mixing."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rewardjax import models
from rewardjax.data.tasks.base import Problem
from rewardjax.models.transformer import ScalarHead
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import model_rewards as mr
from rewardjax.training.rewarding import RewardComputer

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


# --------------------------------------------------------------------------- step positions


def test_policy_step_ends_at_separators_and_eos():
    # "1+2=3\n3+4=7\nA: 7" + EOS: the two "\n" are characters 5 and 11, the EOS is token 16.
    text = "1+2=3\n3+4=7\nA: 7"
    ids = _encode(text)
    tokens = np.zeros((2, 20), np.int32)
    tokens[0, : len(ids)] = ids
    # Row 1: a leading newline is stripped before splitting, so "1+2=3" ends at its own
    # separator (token 6), and the answer line at the EOS (token 11).
    ids1 = _encode("\n1+2=3\nA: 3")
    tokens[1, : len(ids1)] = ids1
    lengths = np.array([len(ids), len(ids1)])
    steps = [mr.split_steps(text), mr.split_steps("\n1+2=3\nA: 3")]
    assert [len(s) for s in steps] == [3, 2]
    step_end, step_mask = mr.policy_step_ends(TOK, tokens, lengths, [3, 2], "\n", 4)
    np.testing.assert_array_equal(step_end, [[5, 11, 16, 0], [6, 11, 0, 0]])
    np.testing.assert_array_equal(step_mask, [[1, 1, 1, 0], [1, 1, 0, 0]])


def test_policy_step_ends_when_later_steps_are_cut_off():
    # Only the first two of three steps are scored: the second ends at its separator (11).
    ids = _encode("1+2=3\n3+4=7\nA: 7")
    tokens = np.array([ids])
    step_end, step_mask = mr.policy_step_ends(TOK, tokens, np.array([len(ids)]), [2], "\n", 2)
    np.testing.assert_array_equal(step_end, [[5, 11]])
    np.testing.assert_array_equal(step_mask, [[1, 1]])


def test_step_with_separator_inside_is_a_missing_split():
    with pytest.raises(ValueError, match=r"row 1: step 0 contains the step separator '\\n'"):
        mr.check_steps([["1+2=3", "A: 3"], ["1+2=3\nA: 3"]], "\n")
    with pytest.raises(ValueError, match="separator is empty"):
        mr.check_steps([["a"]], "")


# --------------------------------------------------------------------------- scorers


def test_orm_reads_the_eos_position_and_ignores_padding():
    config, params = _tiny(("lm", "reward"))
    orm = mr.OutcomeRewardModel(config, params, TOK, batch_size=2)
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
    prm = mr.ProcessRewardModel(config, params, TOK, batch_size=4)
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
    iprm = mr.ImplicitProcessRewardModel(config, params, params, TOK, beta=0.05, batch_size=2)
    (rewards,) = iprm.step_rewards(["Q: 1+2\n"], [["1+2=3", "A: 3"]])
    np.testing.assert_allclose(rewards, [0.0, 0.0], atol=1e-6)
    (scores,) = iprm.step_scores(["Q: 1+2\n"], [["1+2=3", "A: 3"]])
    np.testing.assert_allclose(scores, [0.5, 0.5], atol=1e-6)


def test_implicit_prm_step_rewards_sum_token_log_ratios():
    config, params = _tiny(("lm",), seed=0)
    _, ref = _tiny(("lm",), seed=1)
    iprm = mr.ImplicitProcessRewardModel(config, params, ref, TOK, beta=0.5, batch_size=2)
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
    ens = mr.RewardModelEnsemble([_FixedScores([1.0, 4.0]), _FixedScores([3.0, 0.0])], mode="mean")
    np.testing.assert_allclose(ens.scores(["a", "b"], ["x", "y"]), [2.0, 2.0])
    ens.mode = "min"
    np.testing.assert_allclose(ens.scores(["a", "b"], ["x", "y"]), [1.0, 0.0])
    ens.mode, ens.std_coef = "mean_minus_std", 0.5
    np.testing.assert_allclose(ens.scores(["a", "b"], ["x", "y"]), [1.5, 1.0])
    # Identical members: std 0, mean − λ·std = mean.
    same = mr.RewardModelEnsemble(
        [_FixedScores([1.0, 4.0])] * 3, mode="mean_minus_std", std_coef=2.0
    )
    np.testing.assert_allclose(same.scores(["a", "b"], ["x", "y"]), [1.0, 4.0])
    with pytest.raises(ValueError, match="ensemble mode 'max'"):
        mr.RewardModelEnsemble([_FixedScores([1.0])], mode="max")


class _FixedSteps:
    def __init__(self, rows):
        self.rows = [np.asarray(r, np.float64) for r in rows]

    def step_scores(self, prompts, steps):
        return self.rows

    def step_rewards(self, prompts, steps):
        return self.rows


@pytest.mark.parametrize(
    "credit,expected",
    [
        # p = [.9, .2, .8] at step ends 5, 11, 16 (tokens of "1+2=3\n3+4=7\nA: 7" + EOS).
        ("sum_form", [0.9, 0.2, 0.8]),
        # min-form returns G = [.2, .2, .8] → step rewards G_s − G_{s+1} = [0, −.6, .8].
        ("min_form", [0.0, -0.6, 0.8]),
        # delta: p_s − p_{s+1}, last p_S: [.7, −.6, .8].
        ("delta", [0.7, -0.6, 0.8]),
        # clip with η = 0.5: min(p − η, 0) = [0, −.3, 0].
        ("clip", [0.0, -0.3, 0.0]),
    ],
)
def test_credit_rules_put_step_rewards_on_step_end_tokens(credit, expected):
    source = mr._ProcessSource(
        _FixedSteps([[0.9, 0.2, 0.8]]),
        aggregation="min",
        credit=credit,
        threshold=0.5,
        separator="\n",
        max_steps=8,
        policy_tokenizer=TOK,
    )
    text = "1+2=3\n3+4=7\nA: 7"
    ids = _encode(text)
    tokens = np.zeros((1, 24), np.int32)
    tokens[0, : len(ids)] = ids
    scores, token_rewards, _ = source(["Q"], [text], tokens=tokens, lengths=np.array([len(ids)]))
    assert scores is None and token_rewards.shape == (1, 24)
    want = np.zeros(24)
    want[[5, 11, 16]] = expected
    np.testing.assert_allclose(token_rewards[0], want, atol=1e-6)


def test_aggregated_prm_source_gives_one_score_per_response():
    rows = [[0.9, 0.5, 0.8], [0.3, 0.6]]
    for method, expected in [("min", [0.5, 0.3]), ("last", [0.8, 0.6]), ("prod", [0.36, 0.18])]:
        source = mr._ProcessSource(
            _FixedSteps(rows),
            aggregation=method,
            credit="none",
            threshold=None,
            separator="\n",
            max_steps=8,
            policy_tokenizer=TOK,
        )
        scores, token_rewards, _ = source(["a", "b"], ["x\ny\nz", "x\ny"])
        assert token_rewards is None
        np.testing.assert_allclose(scores, expected, rtol=1e-6)


# --------------------------------------------------------------------------- loading


def test_wrong_head_type_is_a_one_line_error(tmp_path):
    orm_dir = _export(tmp_path, "orm", ("lm", "reward"))
    prm_dir = _export(tmp_path, "prm", ("lm", "prm"))
    with pytest.raises(
        models.CheckpointError, match="is not a process reward model.*no 'prm' head.*reward"
    ):
        mr.ProcessRewardModel.load(orm_dir, tokenizer=TOK)
    with pytest.raises(
        models.CheckpointError, match="is not an outcome reward model.*no 'reward' head"
    ):
        mr.OutcomeRewardModel.load(prm_dir, tokenizer=TOK)
    # The right head loads and scores.
    assert mr.OutcomeRewardModel.load(orm_dir, tokenizer=TOK).scores(["Q"], ["A: 1"]).shape == (1,)


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
        mr.ImplicitProcessRewardModel.load(lm_dir, reference=other_dir, tokenizer=TOK)


# --------------------------------------------------------------------------- reward computer


def _problem():
    return Problem(
        prompt="Q: 1+2+4\n",
        answer="7",
        steps=["1+2=3", "3+4=7", "A: 7"],
        uid="t",
        fields={"terms": [1, 2, 4], "ops": "++"},
    )


def test_reward_computer_mixes_task_outcome_with_prm(tmp_path):
    from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain

    prm_dir = _export(tmp_path, "prm", ("lm", "prm"))
    completions = ["1+2=3\n3+4=7\nA: 7", "1+2=4\n4+4=8\nA: 8"]
    ids = [_encode(c) for c in completions]
    tokens = np.zeros((2, 24), np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    lengths = np.array([len(r) for r in ids])
    prm = mr.ProcessRewardModel.load(prm_dir, tokenizer=TOK)
    p = prm.step_scores(["Q: 1+2+4\n"] * 2, [c.split("\n") for c in completions])

    def computer(credit):
        cfg = ml_collections.ConfigDict(
            dict(
                sources={
                    "task_correct": dict(weight=1.0, kwargs={}),
                    "prm_reward": dict(
                        weight=0.5, kwargs=dict(path=prm_dir, credit=credit, aggregation="min")
                    ),
                },
                fallback=0.0,
                num_workers=0,
                timeout_s=10.0,
            )
        )
        return RewardComputer(cfg, task=ArithmeticChain(num_steps=2), tokenizer=TOK)

    scores, info = computer("none")(
        [_problem()] * 2, completions, lengths=lengths, truncated=np.zeros(2, bool), tokens=tokens
    )
    # r = 1·correct + 0.5·min_s p_s; only the first completion is correct.
    np.testing.assert_allclose(scores, [1.0 + 0.5 * p[0].min(), 0.5 * p[1].min()], rtol=1e-5)
    assert "token_rewards" not in info and "prm_reward/mean" in info["stats"]

    scores, info = computer("sum_form")(
        [_problem()] * 2, completions, lengths=lengths, truncated=np.zeros(2, bool), tokens=tokens
    )
    np.testing.assert_allclose(scores, [1.0, 0.0])
    token_rewards = info["token_rewards"]
    assert token_rewards.shape == (2, 24)
    for i in range(2):
        nonzero = np.flatnonzero(token_rewards[i])
        np.testing.assert_array_equal(nonzero, [5, 11, 16])
        np.testing.assert_allclose(token_rewards[i, nonzero], 0.5 * p[i], rtol=1e-5)


def test_reward_source_config_errors_name_the_key(tmp_path):
    orm_dir = _export(tmp_path, "orm", ("lm", "reward"))
    cfg = ml_collections.ConfigDict(
        dict(
            sources={"my_prm": dict(name="prm_reward", weight=1.0, kwargs=dict(path=orm_dir))},
            fallback=0.0,
            num_workers=0,
            timeout_s=10.0,
        )
    )
    with pytest.raises(
        ValueError, match=r"rewards.sources.my_prm \(prm_reward\): .* is not a process reward model"
    ):
        RewardComputer(cfg, task=None, tokenizer=TOK)
