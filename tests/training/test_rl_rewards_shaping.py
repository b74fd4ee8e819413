"""RewardComputer's config: shaping steps, gated sources, unscorable rows, verifier scale, key checks."""

import math

import ml_collections
import numpy as np
import pytest

from configs import common
from rewardjax.data.tasks.base import Problem
from rewardjax.registry import MODEL_REWARDS, REWARDS, TASKS
from rewardjax.rewards import reward_noise_flip
from rewardjax.rewards.base import register_reward
from rewardjax.scoring.sources import ModelRewardSource
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training.rl_rewards import RewardComputer

TOK = CharTokenizer()
TASK = TASKS.get("arithmetic_chain")(num_steps=2)
VALUE = "testonly_field_value_reward"  # scores each row with its problem's "value" field
TOKENS = "testonly_constant_token_rewards"  # a token-level model source: 1.0 on the last token
RIGHT, WRONG = "A: 7", "A: 8"  # graded against 1+2+4


def _field_value_reward(prompts, completions, fields, **kwargs):
    out = []
    for f in fields:
        if f["value"] == "raise":
            raise RuntimeError("grader crashed")
        out.append(f["value"])
    return out


class _ConstantTokenRewards(ModelRewardSource):
    token_level = True

    def __call__(self, prompts, completions, *, tokens=None, lengths=None, problems=None):
        token_rewards = np.zeros((len(completions), 3))
        token_rewards[:, -1] = 1.0
        return None, token_rewards, {"mean": 1.0}


if VALUE not in REWARDS:
    register_reward(VALUE)(_field_value_reward)
if TOKENS not in MODEL_REWARDS:
    MODEL_REWARDS.register(TOKENS)(lambda *, policy_tokenizer: _ConstantTokenRewards())


def _problem(value=None):
    return Problem(
        prompt="Q: 1+2+4\n",
        answer="7",
        steps=["1+2=3", "3+4=7", "A: 7"],
        uid="t",
        fields={"terms": [1, 2, 4], "ops": "++", "value": value},
    )


def _computer(sources, *, group_size=None, **block):
    block = {"fallback": 0.0, "timeout_s": 10.0, **block}
    cfg = ml_collections.ConfigDict(dict(sources=sources, **block))
    return RewardComputer(cfg, task=TASK, tokenizer=TOK, group_size=group_size)


def _score(computer, completions, values=None, *, step=None):
    n = len(completions)
    values = [None] * n if values is None else values
    return computer(
        [_problem(v) for v in values],
        completions,
        lengths=np.full(n, 4),
        truncated=np.zeros(n, bool),
        step=step,
    )


OUTCOME_AND_VALUE = {"task_correct": dict(weight=1.0), VALUE: dict(weight=1.0)}


def test_shaping_steps_run_in_config_order():
    completions, values = [RIGHT, WRONG, RIGHT], [2.0, -3.0, 0.5]  # r = [3, -3, 1.5]
    clip = dict(name="reward_clip", low=-1.0, high=1.0)
    flip_all = dict(name="reward_noise_flip", p=1.0, seed=0, low=0.0, high=1.0)  # r ← 1 − r

    scores, info = _score(
        _computer(OUTCOME_AND_VALUE, shaping=[clip, flip_all]), completions, values
    )
    np.testing.assert_allclose(scores, [0.0, 2.0, 0.0])  # 1 − clip(r)
    assert info["stats"]["shaping/1_reward_noise_flip/flip_frac"] == 1.0

    scores, _ = _score(_computer(OUTCOME_AND_VALUE, shaping=[flip_all, clip]), completions, values)
    np.testing.assert_allclose(scores, [-1.0, 1.0, -0.5])  # clip(1 − r)


def test_shaping_reads_group_size_fields_and_step():
    values = [0.0, 2.0, 5.0, 5.0]
    logsig = dict(name="logsigmoid_transform", keys=[VALUE])  # u = log σ(r − median of the group)
    computer = _computer({VALUE: dict(weight=1.0)}, group_size=2, shaping=[logsig])
    scores, _ = _score(computer, [WRONG] * 4, values)
    # Group medians 1 and 5: u = log σ([0 − 1, 2 − 1, 5 − 5, 5 − 5]).
    want = [-math.log1p(math.e), -math.log1p(1 / math.e), math.log(0.5), math.log(0.5)]
    np.testing.assert_allclose(scores, want, rtol=1e-6)

    # Fields: rows are normalized within the groups of a problem field (here "value").
    norm = dict(name="per_source_normalization", source_key="value")
    computer = _computer(OUTCOME_AND_VALUE, shaping=[norm])
    scores, _ = _score(computer, [RIGHT, WRONG, RIGHT], [1.0, 1.0, 2.0])  # r = [2, 1, 3]
    np.testing.assert_allclose(scores, [1.0, -1.0, 0.0], atol=1e-5)

    # The step seeds reward_noise_flip: the computer flips what the transform flips.
    flip = dict(name="reward_noise_flip", p=0.5, seed=7)
    computer = _computer({"task_correct": dict(weight=1.0)}, shaping=[flip])
    completions = [RIGHT, WRONG] * 8
    base = np.tile([1.0, 0.0], 8)
    by_step = {}
    for step in (0, 3):
        by_step[step], _ = _score(computer, completions, step=step)
        want = reward_noise_flip(base, p=0.5, seed=7, step=step)[0]
        np.testing.assert_array_equal(by_step[step], want)
    assert not np.array_equal(by_step[0], by_step[3])


def test_shaping_config_errors_at_construction():
    with pytest.raises(
        ValueError, match=r"rewards.shaping\[0\]: unknown shaping step 'reward_clipp'"
    ):
        _computer(OUTCOME_AND_VALUE, shaping=[dict(name="reward_clipp", low=0.0)])
    with pytest.raises(
        ValueError, match=r"rewards.shaping\[1\] \(reward_clip\): unknown key 'hgh'"
    ):
        _computer(
            OUTCOME_AND_VALUE, shaping=[dict(name="reward_clip"), dict(name="reward_clip", hgh=1)]
        )
    with pytest.raises(ValueError, match=r"rewards.shaping\[0\] \(reward_noise_flip\): needs p"):
        _computer(OUTCOME_AND_VALUE, shaping=[dict(name="reward_noise_flip")])
    with pytest.raises(
        ValueError, match=r"\(success_gate\).outcome: 'accuracy' is not a reward source"
    ):
        _computer(
            OUTCOME_AND_VALUE,
            shaping=[dict(name="success_gate", outcome="accuracy", gated=[VALUE])],
        )


def test_gate_zeroes_the_gated_contribution_where_the_gate_failed():
    completions, values = [RIGHT, WRONG, RIGHT, WRONG], [0.4, 0.6, 1.0, 1.0]
    sources = {"task_correct": dict(weight=1.0), VALUE: dict(weight=0.5, gate="task_correct")}
    scores, info = _score(_computer(sources), completions, values)
    np.testing.assert_allclose(scores, [1.2, 0.0, 1.5, 0.0])  # 1·c + 0.5·c·v
    assert info["stats"][f"{VALUE}/gate_open_frac"] == 0.5

    # A dict gate with its own threshold: the outcome counts only where v ≥ 0.5.
    sources = {
        VALUE: dict(weight=1.0),
        "task_correct": dict(weight=1.0, gate=dict(source=VALUE, threshold=0.5)),
    }
    scores, _ = _score(_computer(sources), completions, values)
    np.testing.assert_allclose(scores, [0.4, 0.6, 2.0, 1.0])

    # Token rewards of a gated token-level source are zeroed on failed rows.
    sources = {"task_correct": dict(weight=1.0), TOKENS: dict(weight=0.5, gate="task_correct")}
    scores, info = _score(_computer(sources), [RIGHT, WRONG])
    np.testing.assert_allclose(info["token_rewards"], [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])

    with pytest.raises(ValueError, match=rf"{TOKENS}.*token rewards only, no per-row score"):
        _computer({TOKENS: dict(weight=1.0), "task_correct": dict(weight=1.0, gate=TOKENS)})
    with pytest.raises(ValueError, match=r"gate: 'task_corect' is not a reward source"):
        _computer({"task_correct": dict(weight=1.0), VALUE: dict(weight=1.0, gate="task_corect")})


def test_unknown_keys_are_errors_naming_the_key_and_block():
    with pytest.raises(
        ValueError,
        match=rf"rewards.sources.{VALUE}: unknown key 'gates'; known: gate, kwargs, name, weight",
    ):
        _computer({VALUE: dict(weight=1.0, gates="task_correct")})
    with pytest.raises(
        ValueError, match=r"config rewards: unknown key 'shapin'; known: fallback, "
    ):
        _computer(OUTCOME_AND_VALUE, shapin=[])
    with pytest.raises(ValueError, match=rf"rewards.sources.{VALUE}.gate: unknown key 'thresh'"):
        _computer({"task_correct": {}, VALUE: dict(gate=dict(source="task_correct", thresh=1.0))})
    with pytest.raises(ValueError, match=r"rewards.unscorable must be one of fallback, exclude"):
        _computer(OUTCOME_AND_VALUE, unscorable="skip")
    # Every key of the base config's block is read.
    rewards = common.rl_base().rewards
    RewardComputer(rewards, task=TASK, tokenizer=TOK, group_size=8)


def test_num_workers_sizes_the_reward_pools():
    computer = _computer({VALUE: dict(weight=1.0)}, num_workers=3)
    assert computer._external.max_workers == 3 and computer._external.max_processes == 3


def test_unscorable_exclude_marks_rows_invalid():
    completions = [RIGHT] * 4
    values = [1.0, float("nan"), None, "raise"]
    scores, info = _score(_computer(OUTCOME_AND_VALUE, unscorable="exclude"), completions, values)
    assert info["valid"].tolist() == [True, False, False, False]
    np.testing.assert_allclose(scores, [2.0, 0.0, 0.0, 0.0])
    assert info["stats"]["unscorable_frac"] == 0.75

    # "fallback" (the default): each unscorable sample scores the fallback instead.
    scores, info = _score(_computer(OUTCOME_AND_VALUE, fallback=-0.5), completions, values)
    assert info["valid"].all()
    np.testing.assert_allclose(scores, [2.0, 0.5, 0.5, 0.5])


def test_verifier_scale_pm1_maps_outcomes_to_plus_minus_one():
    outcome = {"task_correct": dict(weight=1.0)}
    scores, info = _score(_computer(outcome, verifier_scale="pm1"), [RIGHT, WRONG])
    np.testing.assert_allclose(scores, [1.0, -1.0])
    assert info["correct"].tolist() == [True, False]
    scores, _ = _score(_computer(outcome), [RIGHT, WRONG])
    np.testing.assert_allclose(scores, [1.0, 0.0])
    with pytest.raises(ValueError, match="verifier_scale='pm1' .* has no task_correct"):
        _computer({VALUE: dict(weight=1.0)}, verifier_scale="pm1")
