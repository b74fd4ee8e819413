"""Judge scoring: one-pass P(Yes) against a plain forward pass; votes; swaps; games."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import models
from rewardjax.judges import scoring
from rewardjax.judges.formats import Verdict, parse_pairwise, parse_pointwise, pointwise_prompt
from rewardjax.models.forward import completion_logprobs
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


@pytest.fixture(scope="module")
def tiny():
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    return config, models.init_params(config, jax.random.key(0))


def test_p_yes_equals_softmax_of_yes_no_logprobs_from_a_full_pass(tiny):
    config, params = tiny
    prompts = [
        pointwise_prompt("Q: 1+2\n", "1+2=3\nA: 3"),
        pointwise_prompt("Q: 7+5-3\n", "7+5=12\n12-3=8\nA: 8"),
    ]
    p = scoring.p_yes(config, params, TOK, prompts)  # batched, left-padded to a bucket
    probs, mass = scoring.verdict_probabilities(config, params, TOK, prompts, words=("Yes", "No"))
    model = models.build(config)
    score = jax.jit(lambda pt, t: completion_logprobs(model, params, pt, pt > 0, t, t > 0)[0])
    yes, no = TOK.encode("Y"), TOK.encode("N")
    for i, prompt in enumerate(prompts):
        # Each prompt alone, unpadded, with the verdict's first token appended.
        ids = jnp.array([TOK.encode(prompt)])
        lp_yes = float(score(ids, jnp.array([yes]))[0, 0])
        lp_no = float(score(ids, jnp.array([no]))[0, 0])
        expected = math.exp(lp_yes) / (math.exp(lp_yes) + math.exp(lp_no))
        np.testing.assert_allclose(p[i], expected, rtol=1e-4)
        np.testing.assert_allclose(mass[i], math.exp(lp_yes) + math.exp(lp_no), rtol=1e-4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(p[0], p[1])  # the two prompts are read at their own positions


def test_verdict_words_sharing_a_first_token_are_rejected():
    with pytest.raises(ValueError, match="share a first token"):
        scoring.verdict_token_ids(TOK, ("Yes", "Yeah"))
    assert scoring.verdict_token_ids(TOK, ("Yes", "No")) == (TOK.encode("Y")[0], TOK.encode("N")[0])


def test_sample_verdicts_groups_k_parsed_replies_per_prompt(tiny):
    config, params = tiny
    seen = []

    def parse(text):
        seen.append(text)
        return parse_pointwise(text)

    prompts = ["Problem:\nQ: 1+2\n", "Problem:\nQ: 9-4+1\nSolution:\n"]
    out = scoring.sample_verdicts(
        config, params, TOK, prompts, parse=parse, rng=jax.random.key(1),
        num_samples=3, max_new_tokens=5, temperature=0.0,
    )  # fmt: skip
    assert [len(row) for row in out] == [3, 3] and len(seen) == 6
    assert all(isinstance(v, Verdict) for row in out for v in row)
    # Greedy: the K samples of a prompt are one reply; decoded text has no pad or EOS.
    assert seen[0] == seen[1] == seen[2] and seen[3] == seen[4] == seen[5]
    assert all(len(t) <= 5 and "<" not in t for t in seen)


def test_aggregate_votes_majority_and_mean_hand_case():
    # [B=3, K=4]; NaN = an excluded parse failure.
    votes = np.array([[1, 0, 1, np.nan], [1, 0, np.nan, np.nan], [np.nan] * 4], np.float32)
    valid = ~np.isnan(votes)
    major, excluded = scoring.aggregate_votes(votes, valid, method="majority")
    np.testing.assert_array_equal(major[:2], [1.0, 0.5])
    assert math.isnan(major[2])
    np.testing.assert_array_equal(excluded, [1, 2, 4])
    mean, _ = scoring.aggregate_votes(votes, valid, method="mean")
    np.testing.assert_allclose(mean[:2], [2 / 3, 0.5], rtol=1e-6)
    assert math.isnan(mean[2])


def test_votes_array_counts_failures_by_policy():
    rows = [[parse_pointwise(t) for t in ("Yes", "no", "No")], [parse_pointwise("Yes")] * 3]
    votes, valid = scoring.votes_array(rows, positive="Yes", on_failure="exclude")
    score, excluded = scoring.aggregate_votes(votes, valid, method="majority")
    np.testing.assert_array_equal(score, [0.5, 1.0])  # one Yes, one No, one failure
    np.testing.assert_array_equal(excluded, [1, 0])
    votes, valid = scoring.votes_array(rows, positive="Yes", on_failure="zero")
    score, excluded = scoring.aggregate_votes(votes, valid, method="mean")
    np.testing.assert_allclose(score, [1 / 3, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(excluded, [0, 0])


def test_a_judge_that_always_says_a_has_position_bias_one():
    always_a = [parse_pairwise("A")] * 5
    stats = scoring.swap_consistency(always_a, always_a)
    assert stats["position_bias"] == 1.0 and stats["agreement"] == 0.0
    assert stats["first_slot_rate"] == 1.0
    np.testing.assert_array_equal(stats["preference"], [0.5] * 5)


def test_swap_consistency_hand_case():
    a, b, bad = parse_pairwise("A"), parse_pairwise("B"), parse_pairwise("C")
    # Pair 0: x wins both orders; pair 1: y wins both; pair 2: slot B twice; pair 3: a failure.
    stats = scoring.swap_consistency([a, b, b, a], [b, a, b, bad])
    assert stats["agreement"] == 2 / 3 and stats["position_bias"] == 1 / 3
    assert stats["pairs_with_failures"] == 1
    assert stats["first_slot_rate"] == 3 / 7  # A votes among the 7 parsed verdicts
    np.testing.assert_array_equal(stats["preference"][:3], [1.0, 0.0, 0.5])
    assert math.isnan(stats["preference"][3])


def test_pair_preference_averages_both_orders():
    np.testing.assert_allclose(scoring.pair_preference([0.9, 1.0], [0.3, 1.0]), [0.8, 0.5])


def test_round_robin_hand_case_and_sum():
    nan = np.nan
    # first_wins[i, j] = P("A" | A = y_i, B = y_j); y_0 > y_1 > y_2, one order noisy.
    w = np.array([[nan, 1.0, 1.0], [0.0, nan, 0.8], [0.0, 0.0, nan]])
    r = scoring.round_robin_scores(w)
    # P(0>1) = 1, P(0>2) = 1, P(1>2) = .5*(.8 + 1 - 0) = .9
    np.testing.assert_allclose(r, [1.0, (0.0 + 0.9) / 2, (0.0 + 0.1) / 2], rtol=1e-6)
    np.testing.assert_allclose(r.sum(), 1.5, rtol=1e-6)  # G/2
    # A position-only judge (always "A") ranks nobody: every score 1/2.
    np.testing.assert_allclose(scoring.round_robin_scores(np.ones((4, 4))), [0.5] * 4)
    # A game missing in one order is left out of both players' means.
    w[0, 1] = nan
    np.testing.assert_allclose(scoring.round_robin_scores(w), [1.0, 0.9, 0.05], rtol=1e-6)


def test_reference_scores_both_orders():
    r = scoring.reference_scores(np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(r, [1.0, 0.0, 0.5])


def test_a_judge_prompt_longer_than_the_context_is_an_error_naming_it(tiny):
    config, params = tiny
    long_solution = "1+1=2\n" * (config.max_position_embeddings // 6 + 1)
    prompts = [
        pointwise_prompt("Q: 1+2\n", "1+2=3\nA: 3"),
        pointwise_prompt("Q: 1+1\n", long_solution),
    ]
    with pytest.raises(ValueError, match="judge prompt 1 has .* positions"):
        scoring.p_yes(config, params, TOK, prompts)
    with pytest.raises(ValueError, match="reply tokens"):
        scoring.sample_verdicts(
            config, params, TOK, prompts[:1] * 2, parse=parse_pointwise,
            rng=jax.random.key(0), num_samples=1,
            max_new_tokens=config.max_position_embeddings,
        )  # fmt: skip


class _UnknownWords(CharTokenizer):
    """A tokenizer that maps 'Y' to an unknown id (decodes to nothing)."""

    def encode(self, text, *, add_bos=False):
        return [self.pad_id if c == "Y" else t for c, t in zip(text, super().encode(text))]


def test_verdict_words_the_tokenizer_lacks_are_an_error():
    with pytest.raises(ValueError, match="no token for the start of verdict word 'Yes'"):
        scoring.verdict_token_ids(_UnknownWords(), ("Yes", "No"))
