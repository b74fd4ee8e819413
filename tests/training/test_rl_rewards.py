"""The RL loop's reward step: the task outcome mixed with trained reward-model sources."""

import jax
import ml_collections
import numpy as np
import pytest

from configs import grpo_arithmetic_prm, prm_arithmetic
from rewardjax import models
from rewardjax.data.tasks.base import Problem
from rewardjax.rewards.base import register_reward
from rewardjax.scoring.models import ProcessRewardModel
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import offline, rl
from rewardjax.training.rl_rewards import RewardComputer

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
    prm = ProcessRewardModel.load(prm_dir, tokenizer=TOK)
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


def test_rl_with_prm_process_rewards_runs(tmp_path):
    # A PRM (runlocal: a few steps from scratch), then GRPO sampling with min-form
    # process rewards at the step ends plus the verifiable outcome.
    prm = prm_arithmetic.get_config("runlocal=True")
    prm.eval.every = 0
    offline.OfflineTrainer(prm, str(tmp_path / "prm")).run()
    c = grpo_arithmetic_prm.get_config(f"runlocal=True,prm_path={tmp_path / 'prm' / 'hf'}")
    c.steps = 2
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, _, metrics = trainer.collect()
    assert batch["token_rewards"].shape == batch["tokens"].shape
    # Process rewards sit only on completion tokens, and min-form step rewards sum
    # (per row) to the first step's return min_s p_s ∈ [0, 1], weighted by 0.5.
    assert np.all(batch["token_rewards"][batch["mask"] == 0] == 0)
    totals = batch["token_rewards"].sum(axis=1)
    assert np.all(totals >= -1e-6) and np.all(totals <= 0.5 + 1e-6)
    assert "reward/prm_reward/step_reward_mean" in metrics
    before = jax.tree.map(np.asarray, trainer.state.params)
    trainer.run()
    after = jax.tree.map(np.asarray, trainer.state.params)
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)))


def test_prime_combined_rloo_is_a_selectable_advantage(tmp_path):
    """PRIME's estimator reads the process rewards and the outcome apart (not their sum)."""
    from rewardjax.objectives import prime_combined_rloo

    prm_dir = _export(tmp_path, "prm", ("lm", "prm"))
    c = grpo_arithmetic_prm.get_config(f"runlocal=True,prm_path={prm_dir},credit=sum_form")
    c.advantage = dict(name="prime_combined_rloo", kwargs=dict(rm_coef=5.0, gt_coef=5.0))
    c.rewards.sources["test_coin_flip_prime"] = dict(weight=1.0, kwargs={})
    c.steps = 1
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, _, _ = trainer.collect()
    device, _ = trainer.prepare(batch)
    expected = prime_combined_rloo(
        batch["token_rewards"] * batch["mask"],
        batch["rewards"],
        batch["mask"],
        group_size=c.rollout.group_size,
        rm_coef=5.0,
        gt_coef=5.0,
    )
    assert np.abs(batch["token_rewards"]).sum() > 0 and np.ptp(batch["rewards"]) > 0
    np.testing.assert_allclose(device["advantages"], expected, atol=1e-5)
    trainer.run()
    assert trainer.step == 1


@register_reward("test_coin_flip_prime")
def _coin_flip(prompts, completions, fields, **kwargs):
    return [float(hash((c, i)) % 2) for i, c in enumerate(completions)]


def test_prm_step_rewards_spread_over_their_tokens(tmp_path):
    from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain

    prm_dir = _export(tmp_path, "prm", ("lm", "prm"))
    completions = ["1+2=3\n3+4=7\nA: 7", "1+2=4\n4+4=8\nA: 8"]
    ids = [_encode(c) for c in completions]
    tokens = np.zeros((2, 24), np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    lengths = np.array([len(r) for r in ids])
    p = ProcessRewardModel.load(prm_dir, tokenizer=TOK).step_scores(
        ["Q: 1+2+4\n"] * 2, [c.split("\n") for c in completions]
    )
    cfg = ml_collections.ConfigDict(
        dict(
            sources={
                "prm_reward": dict(
                    weight=0.5,
                    kwargs=dict(path=prm_dir, credit="sum_form", placement="spread"),
                ),
            },
            fallback=0.0,
            num_workers=0,
            timeout_s=10.0,
        )
    )
    computer = RewardComputer(cfg, task=ArithmeticChain(num_steps=2), tokenizer=TOK)
    _, info = computer(
        [_problem()] * 2, completions, lengths=lengths, truncated=np.zeros(2, bool), tokens=tokens
    )
    # Steps end at tokens 5, 11 and 16: each step's reward 0.5·p_s is split evenly over
    # its tokens (0-5, 6-11, 12-16), and nothing lands after the last step.
    for i in range(2):
        for s, (lo, hi) in enumerate([(0, 6), (6, 12), (12, 17)]):
            np.testing.assert_allclose(
                info["token_rewards"][i, lo:hi], 0.5 * p[i][s] / (hi - lo), rtol=1e-5
            )
        assert np.all(info["token_rewards"][i, 17:] == 0)


def test_process_rewards_with_an_outcome_only_estimator_fail_at_start(tmp_path):
    prm_dir = _export(tmp_path, "prm", ("lm", "prm"))
    c = grpo_arithmetic_prm.get_config(f"runlocal=True,prm_path={prm_dir},credit=sum_form")
    c.advantage = dict(name="grpo_group_norm", kwargs={})  # reads the outcome only
    with pytest.raises(ValueError, match=r"\['prm_reward'\] give token-level .*'grpo_group_norm'"):
        rl.RLTrainer(c, str(tmp_path / "a"))
    c.advantage = dict(name="reinforce_pp_baseline", kwargs={})
    assert rl.RLTrainer(c, str(tmp_path / "b")).rewards.token_level_sources == ["prm_reward"]


def test_orm_ensemble_config_rewards_the_aggregate_beside_the_verifier(tmp_path):
    from configs import grpo_arithmetic_orm
    from rewardjax.scoring.models import OutcomeRewardModel

    paths = [_export(tmp_path, f"orm{i}", ("lm", "reward"), seed=i) for i in range(2)]
    c = grpo_arithmetic_orm.get_config(
        f"runlocal=True,orm_paths={'+'.join(paths)},mode=min,orm_weight=0.5"
    )
    assert c.rewards.sources.orm.name == "orm_ensemble_reward"
    c.steps = 1
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, problems, _ = trainer.collect()
    texts = [
        TOK.decode(batch["tokens"][i, : batch["lengths"][i]].tolist())
        for i in range(len(batch["lengths"]))
    ]
    prompts = [p.prompt for p in problems for _ in range(c.rollout.group_size)]
    members = np.stack(
        [OutcomeRewardModel.load(p, tokenizer=TOK).scores(prompts, texts) for p in paths]
    )
    expected = batch["correct"] + 0.5 / (1.0 + np.exp(-members.min(axis=0)))
    assert np.ptp(members[0] - members[1]) > 0  # the two members disagree
    np.testing.assert_allclose(batch["rewards"], expected, rtol=1e-5, atol=1e-6)
    trainer.run()
    assert trainer.step == 1


def test_orm_config_needs_a_path():
    from configs import grpo_arithmetic_orm

    with pytest.raises(ValueError, match="orm_paths is empty"):
        grpo_arithmetic_orm.get_config("runlocal=True")


def test_ttrl_variant_rewards_agreement_with_the_group_majority(tmp_path):
    import collections

    from configs import rl_variants
    from rewardjax.rewards.math import extract_last_number

    c = rl_variants.get_config("runlocal=True,reward=majority_vote_reward")
    assert set(c.rewards.sources) == {"majority_vote_reward"}  # no labels in the reward
    c.steps = 1
    c.rollout.max_new_tokens = 8  # short random completions: numbers repeat within a group
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, _, _ = trainer.collect()
    g = c.rollout.group_size
    texts = [
        TOK.decode(batch["tokens"][i, : batch["lengths"][i]].tolist())
        for i in range(len(batch["lengths"]))
    ]
    expected = []
    for start in range(0, len(texts), g):
        answers = [extract_last_number(t) for t in texts[start : start + g]]
        answers = [None if a is None else float(a) for a in answers]
        counts = collections.Counter(a for a in answers if a is not None)
        top = max(counts.values()) if counts else 0
        mode = next((a for a in answers if a is not None and counts[a] == top), None)
        expected += [float(a is not None and a == mode) for a in answers]
    np.testing.assert_array_equal(batch["rewards"], expected)
    assert sum(expected) > 0


def test_rlcr_variant_rewards_the_task_verdict_with_a_brier_term():
    from configs import rl_variants
    from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain

    c = rl_variants.get_config("runlocal=True,reward=rlcr_brier")
    computer = RewardComputer(c.rewards, task=ArithmeticChain(num_steps=2), tokenizer=TOK)
    problem = _problem()
    completions = [
        "1+2=3\n3+4=7\nA: 7\n<confidence>0.8</confidence>",  # right, q = 0.8
        "1+2=3\n3+4=8\nA: 8\n<confidence>0.8</confidence>",  # wrong, q = 0.8
        "1+2=3\n3+4=7\nA: 7",  # right, no confidence: the Brier term at its worst
    ]
    scores, info = computer(
        [problem] * 3, completions, lengths=np.array([40, 40, 20]), truncated=np.zeros(3, bool)
    )
    np.testing.assert_array_equal(info["correct"], [True, False, True])
    np.testing.assert_allclose(scores, [1 - 0.2**2, 0 - 0.8**2, 1 - 1.0], atol=1e-6)
