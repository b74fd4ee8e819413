"""rewardjax.evaluation.search_curves: accuracy against compute for votes, best-of-N and search;
the LaSeR self-scorer behind the confidence vote."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import models
from rewardjax.evaluation import search_curves as curves
from rewardjax.inference import search
from rewardjax.inference.compute import search_flops
from rewardjax.inference.selection import majority_vote, weighted_majority_vote
from rewardjax.rewards.label_free import parse_confidence
from rewardjax.scoring import LastTokenSelfScorer
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


@dataclasses.dataclass(frozen=True)
class Problem:
    prompt: str


@dataclasses.dataclass(frozen=True)
class Grade:
    answer: str | None
    correct: bool


class FirstCharTask:
    """The answer is the completion's first character; it is right when it is a digit."""

    def grade(self, problem, text):
        answer = text[:1] or None
        return Grade(answer, bool(answer) and answer.isdigit())


def _digit_share(prompts, steps):
    """A stand-in PRM: a step scores the share of its characters that are digits."""
    return [np.array([sum(c.isdigit() for c in s) / max(len(s), 1) for s in row]) for row in steps]


@pytest.fixture(scope="module")
def policy():
    config = models.preset("tiny", num_layers=1, initializer_range=0.5).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    return config, models.init_params(config, jax.random.key(3))


def _expander(policy):
    config, params = policy
    return search.PolicyExpander(
        config, params, TOK, separator=" ", max_new_tokens=16, max_step_tokens=6, max_rows=32
    )


def test_sampled_curves_are_read_off_the_best_of_n_pool(policy):
    config, _ = policy
    problems = [Problem("1+2="), Problem("3*4="), Problem("9-5=")]
    key = jax.random.key(0)
    kw = dict(rng=key, policy_config=config, scorer_config=config, max_n=4)
    points = curves.search_curves(
        _expander(policy),
        _digit_share,
        FirstCharTask(),
        problems,
        beams=((1, 2), (2, 2)),
        max_steps=3,
        early=(0.5,),
        refine=((2, 0.5, 1),),
        **kw,
    )
    by = {(p.method, p.setting): p for p in points}
    assert {p.method for p in points} == {
        "majority_vote",
        "best_of_n",
        "weighted_vote",
        "greedy_step",
        "beam_search",
        "early_rejection",
        "refined_bon",
    }
    # The pool: best-of-4 under the search's pool key. At N = 4 there is one subset,
    # the whole pool, so each rule's pick is computed here directly.
    pool = search.best_of_n(
        _expander(policy),
        _digit_share,
        [TOK.encode(p.prompt) for p in problems],
        rng=jax.random.fold_in(key, 0),
        n=4,
        prompt_texts=[p.prompt for p in problems],
    )
    task = FirstCharTask()
    want = {"majority_vote": [], "best_of_n": [], "weighted_vote": []}
    for problem, candidates in zip(problems, pool.pools):
        grades = [task.grade(problem, TOK.decode(c.tokens)) for c in candidates]
        answers = [g.answer for g in grades]
        scores = [c.score for c in candidates]
        want["majority_vote"].append(grades[majority_vote(answers)].correct)
        want["best_of_n"].append(grades[int(np.argmax(scores))].correct)
        want["weighted_vote"].append(grades[weighted_majority_vote(answers, scores)].correct)
    for method, correct in want.items():
        point = by[method, "N=4"]
        np.testing.assert_array_equal(point.correct, np.array(correct, float), err_msg=method)
        np.testing.assert_array_equal(point.tokens, pool.generated_tokens)
    # Votes cost the policy only; best-of-N and the PRM vote add the scorer's passes.
    np.testing.assert_allclose(by["majority_vote", "N=4"].flops, search_flops(pool, config))
    np.testing.assert_allclose(by["best_of_n", "N=4"].flops, search_flops(pool, config, config))
    # N = 1: every rule takes the one candidate; tokens are a quarter of the pool's on average.
    ones = {by[m, "N=1"].accuracy for m in want}
    assert len(ones) == 1
    np.testing.assert_allclose(by["best_of_n", "N=1"].tokens, pool.generated_tokens / 4)
    # Early rejection at N = 4 with the pool's key keeps pool candidates: fewer tokens.
    early = by["early_rejection", "N=4,keep=0.5"]
    assert (early.tokens < pool.generated_tokens).all()
    assert np.mean(early.flops) > 0
    table = curves.format_search_table(points)
    assert all(f"{m} " in table for m in want) and "best_of_n@tokens" in table


def test_confidence_vote_weighs_stated_confidences(policy):
    config, _ = policy
    # "a" (wrong) states .9; "2" (right) has two votes stating .2 + .3; "x" states none.
    texts = ["a <confidence>0.9</confidence>", "2 <confidence>0.2</confidence>"]
    texts += ["2 <confidence>30%</confidence>", "x"]
    pool = search.SearchResult(
        tokens=[],
        texts=[],
        scores=np.zeros(1),
        pools=[[search.Candidate(TOK.encode(t), True, score=0.5) for t in texts]],
        generated_tokens=np.array([40]),
        scored_sequences=np.array([4]),
        scored_tokens=np.array([40]),
        scorer_calls=1,
        prompt_tokens=np.array([3]),
        policy_attended=np.array([0.0]),
        scorer_input_tokens=np.array([52.0]),
        scorer_attended=np.array([0.0]),
    )
    points = curves.sampled_points(
        pool,
        FirstCharTask(),
        [Problem("q")],
        TOK,
        policy_config=config,
        ns=(4,),
        confidences=[[parse_confidence(t) for t in texts]],
    )
    by = {p.method: p for p in points}
    assert by["majority_vote"].correct[0] == 1.0  # "2": two votes
    assert by["confidence_vote"].correct[0] == 0.0  # "a": .9 > .2 + .3


def test_interpolate_log_and_compute_matched():
    assert curves.interpolate_log([10, 40], [0.2, 0.6], 20) == pytest.approx(0.4)
    assert curves.interpolate_log([40, 10], [0.6, 0.2], 10) == pytest.approx(0.2)
    assert curves.interpolate_log([10, 40], [0.2, 0.6], 50) is None
    one = np.ones(1)
    points = [
        curves.SearchPoint("best_of_n", "N=1", 0.2 * one, 10 * one, one),
        curves.SearchPoint("best_of_n", "N=4", 0.6 * one, 40 * one, one),
        curves.SearchPoint("beam_search", "W=2,M=2", 0.7 * one, 20 * one, one),
        curves.SearchPoint("beam_search", "W=4,M=4", 0.7 * one, 80 * one, one),
    ]
    matched = curves.compute_matched(points, "best_of_n")
    assert matched["beam_search", "W=2,M=2"] == pytest.approx(0.4)
    assert matched["beam_search", "W=4,M=4"] is None
    with pytest.raises(ValueError, match="no 'majority_vote' points"):
        curves.compute_matched(points, "majority_vote")


def test_plot_search_writes_a_png(tmp_path):
    one = np.ones(2)
    points = [
        curves.SearchPoint("best_of_n", f"N={n}", a * one, n * 10 * one, n * 1e6 * one)
        for n, a in ((1, 0.2), (2, 0.3), (4, 0.5))
    ]
    path = tmp_path / "search.png"
    curves.plot_search(points, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_last_token_self_scorer_against_the_full_forward(policy):
    config, params = policy
    token, beta, c = 7, 0.3, -4.0
    scorer = LastTokenSelfScorer(
        config, params, TOK, token=token, kl_coef=beta, ref_constant=c, batch_size=2
    )
    prompts, completions = ["1+2=", "30*4="], ["3", "120 so"]
    got = scorer.scores(prompts, completions)
    model = models.build(config)
    for prompt, completion, score in zip(prompts, completions, got):
        ids = TOK.encode(prompt, add_bos=TOK.default_add_bos) + TOK.encode(completion)
        ids.append(TOK.eos_id)
        logits = model.apply({"params": params}, jnp.asarray([ids]))
        logprob = jax.nn.log_softmax(logits[0, -1].astype(jnp.float32))[token]
        assert score == pytest.approx(beta * (float(logprob) - c), rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        LastTokenSelfScorer(config, params, TOK, token=10_000, kl_coef=1.0, ref_constant=0.0)
