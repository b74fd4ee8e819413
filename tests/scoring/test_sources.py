"""Reward models as RL reward sources: aggregation and credit rules on policy tokens."""

import numpy as np
import pytest

from rewardjax.scoring.sources import _ProcessSource
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


def _encode(text):
    return [*TOK.encode(text), TOK.eos_id]


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
    source = _ProcessSource(
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
        source = _ProcessSource(
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
