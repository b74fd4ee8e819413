"""Tests for rewardjax.inference.selection: hand-computed selections and accuracy-vs-N."""

from fractions import Fraction

import numpy as np
import pytest

from rewardjax.inference import selection
from rewardjax.inference.selection import (
    accuracy_vs_n,
    answer_classes,
    bon_orm,
    bon_prm,
    canonical_answer,
    confidence_weighted_vote,
    format_accuracy_table,
    majority_vote,
    prm_aggregate,
    weighted_majority_vote,
)
from rewardjax.registry import SELECTION_RULES

# --------------------------------------------------------------------------- prm_aggregate


@pytest.mark.parametrize(
    "method, expected",
    [
        ("min", 0.5),  # min(.9, .5, .8)
        ("last", 0.8),  # final step
        ("prod", 0.36),  # .9 · .5 · .8 = .36
        ("mean", 2.2 / 3),  # (.9 + .5 + .8) / 3 = .7333
    ],
)
def test_prm_aggregate_catalogue_fixture(method, expected):
    assert prm_aggregate([0.9, 0.5, 0.8], method=method) == pytest.approx(expected)


def test_prm_aggregate_padded_with_mask_equals_ragged():
    ragged = [[0.9, 0.5, 0.8], [0.3], [0.6, 0.7]]
    padded = np.array([[0.9, 0.5, 0.8], [0.3, 9.0, 9.0], [0.6, 0.7, 9.0]])  # [N=3, S=3]
    mask = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    for method in selection.PRM_AGGREGATIONS:
        np.testing.assert_allclose(
            prm_aggregate(padded, method=method, step_mask=mask),
            prm_aggregate(ragged, method=method),
        )
    # ragged "last": .8, .3, .7
    np.testing.assert_allclose(prm_aggregate(ragged, method="last"), [0.8, 0.3, 0.7])


def test_prm_aggregate_bad_input():
    with pytest.raises(ValueError, match="'prod' needs step probabilities"):
        prm_aggregate([0.5, 1.5], method="prod")
    with pytest.raises(ValueError, match="unknown prm_aggregate method 'max'"):
        prm_aggregate([0.5], method="max")
    with pytest.raises(ValueError, match=r"step_scores\[1\] has no steps"):
        prm_aggregate([[0.5], []])
    with pytest.raises(ValueError, match=r"step_scores\[0\]\[1\] is nan"):
        prm_aggregate([[0.5, float("nan")]])
    with pytest.raises(ValueError, match="step_mask row 0 has a gap"):
        prm_aggregate(np.ones((1, 3)), step_mask=np.array([[1, 0, 1]]))


# --------------------------------------------------------------------------- best-of-N


def test_bon_orm_n1_is_identity_and_ties_go_to_lowest_index():
    assert bon_orm([0.3]) == 0
    assert bon_orm([0.1, 0.7, 0.7, 0.2]) == 1  # tie between 1 and 2 → 1
    assert bon_orm(np.array([-3.0, -1.0, -2.0])) == 1


def test_bon_orm_bad_input():
    with pytest.raises(ValueError, match=r"scores\[1\] is nan"):
        bon_orm([0.1, float("nan")])
    with pytest.raises(ValueError, match="scores is empty"):
        bon_orm([])


def test_bon_prm_depends_on_aggregation():
    steps = [[0.9, 0.95, 0.3], [0.6, 0.7, 0.65], [0.99, 0.5]]
    # min:  .3, .6, .5            → 1
    # last: .3, .65, .5           → 1
    # mean: .7167, .65, .745      → 2
    # prod: .2565, .273, .495     → 2
    assert bon_prm(steps, aggregation="min") == 1
    assert bon_prm(steps, aggregation="last") == 1
    assert bon_prm(steps, aggregation="mean") == 2
    assert bon_prm(steps, aggregation="prod") == 2
    assert bon_prm([[0.4, 0.2]]) == 0  # N = 1 → identity


# --------------------------------------------------------------------------- votes


def test_majority_vote_catalogue_fixture():
    answers = [2, 3, 2]
    index = majority_vote(answers)
    assert answers[index] == 2 and index == 0


def test_majority_vote_ties_none_and_canonical_strings():
    assert majority_vote([3, 2, 2, 3]) == 0  # 2 votes each: the class seen first wins
    assert majority_vote([None, None, 5]) == 2  # None does not vote
    assert majority_vote([None, None]) == 0  # nobody votes → first candidate
    # "2", "2.0", " 2 " and 2 are one answer (4 votes) against "3" (1 vote).
    assert majority_vote(["3", "2", "2.0", " 2 ", 2]) == 1


def test_majority_vote_with_user_equivalence():
    answers = ["0.5", "1/2", "0.25", "0.25", "2/4"]
    # Canonical strings: "0.25" has 2 votes, every other string 1 → index 2.
    assert majority_vote(answers) == 2

    def same_value(a, b):
        return Fraction(a) == Fraction(b)

    # Numeric equivalence: {0.5, 1/2, 2/4} has 3 votes → index 0.
    assert majority_vote(answers, equiv=same_value) == 0
    with pytest.raises(TypeError, match="equiv must be a callable"):
        majority_vote(answers, equiv="math_verify")


def test_weighted_majority_vote_hand_fixture():
    # answer 1: .9; answer 2: .3 + .4 = .7 → answer 1 (index 0), though 2 has more votes.
    assert weighted_majority_vote([1, 2, 2], [0.9, 0.3, 0.4]) == 0
    # answer 2: .3 + .7 = 1.0 > .9 → index 1.
    assert weighted_majority_vote([1, 2, 2], [0.9, 0.3, 0.7]) == 1


def test_weighted_majority_vote_with_unit_weights_is_majority_vote():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        answers = [int(a) for a in rng.integers(0, 4, size=n)]
        assert weighted_majority_vote(answers, np.ones(n)) == majority_vote(answers)


def test_confidence_weighted_vote_hand_fixture_and_fallbacks():
    # 7: .9; 8: .3 + .4 = .7 → index 0, against the majority's 8.
    assert confidence_weighted_vote([7, 8, 8], [0.9, 0.3, 0.4]) == 0
    # A candidate without a stated confidence counts 0: 8 gets .3 only.
    assert confidence_weighted_vote([7, 8, 8], [0.5, 0.3, None]) == 0
    # With no confidence at all, the vote is the majority's (not index 0).
    assert confidence_weighted_vote([7, 8, 8], [None, None, float("nan")]) == 1
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        answers = [int(a) for a in rng.integers(0, 4, size=n)]
        q = float(rng.uniform(0.05, 1.0))
        assert confidence_weighted_vote(answers, [q] * n) == majority_vote(answers)
    with pytest.raises(ValueError, match="3 entries but confidences has 2"):
        confidence_weighted_vote([1, 2, 3], [0.5, 0.5])


def test_accuracy_vs_n_confidence_vote_is_the_weighted_vote_of_its_weights():
    # ORM scores are already in [0, 1]: as confidences they give the ORM-weighted vote.
    kw = dict(ns=(1, 3, 5), num_subsets=100)
    by_orm = accuracy_vs_n(ANSWERS, CORRECT, orm_scores=ORM, **kw)
    by_confidence = accuracy_vs_n(ANSWERS, CORRECT, confidences=ORM, **kw)
    assert by_confidence["confidence_weighted_vote"] == by_orm["weighted_majority_vote_orm"]
    # A missing confidence counts 0: at N=5, 7 gets .1 + .2 < 5's .8 + .35 (wrong);
    # counted as 1 it would give 7 1.3 and the right answer.
    sparse = [[0.1, 0.2, None, 0.8, 0.35]]
    result = accuracy_vs_n(ANSWERS, CORRECT, confidences=sparse, **kw)
    assert result["confidence_weighted_vote"][5] == 0.0


def test_weighted_majority_vote_bad_input():
    with pytest.raises(ValueError, match=r"weights\[1\] = -0.5 < 0"):
        weighted_majority_vote([1, 2], [0.5, -0.5])
    with pytest.raises(ValueError, match="answers has 3 entries but weights has 2"):
        weighted_majority_vote([1, 2, 3], [0.5, 0.5])


@pytest.mark.parametrize(
    "answer, expected",
    [
        (None, None),
        (2, "2"),
        (2.0, "2"),
        (np.int64(7), "7"),
        (" 2. ", "2"),
        ("1,000", "1000"),
        ("1e3", "1000"),
        (".5", "0.5"),
        (0.5, "0.5"),
        ("$x^2$", "x^2"),
        ("  Paris  ", "paris"),
        ("12345678901234567891", "12345678901234567891"),  # exact, not through float
        ("-0", "0"),
        ("1_000", "1_000"),  # not a number literal in an answer
    ],
)
def test_canonical_answer(answer, expected):
    assert canonical_answer(answer) == expected


def test_answer_classes_numbers_classes_by_first_appearance():
    np.testing.assert_array_equal(answer_classes(["b", "a", None, "b", "c"]), [0, 1, -1, 0, 2])


# --------------------------------------------------------------------------- family test

# Every registered rule, with an input whose answer is known by hand.
RULE_CASES = {
    "bon_orm": (([0.2, 0.9, 0.4],), {}, 1),
    "bon_prm": (([[0.9, 0.1], [0.6, 0.7]],), {"aggregation": "min"}, 1),  # mins .1, .6
    "majority_vote": (([4, 5, 5],), {}, 1),
    "weighted_majority_vote": (([4, 5, 5], [0.9, 0.2, 0.3]), {}, 0),  # 4: .9 > 5: .5
    # Confidences clip to [0, 1]: 4 gets 1.0 (not 3.0) < 5: 0.7 + 0.6; None counts 0.
    "confidence_weighted_vote": (([4, 5, 5, 6], [3.0, 0.7, 0.6, None]), {}, 1),
    "prm_aggregate": (([0.9, 0.5, 0.8],), {"method": "prod"}, 0.36),
}


def test_every_registered_selection_rule_has_a_hand_case():
    ours = [
        name
        for name in SELECTION_RULES.names()
        if SELECTION_RULES.get(name).__module__.startswith("rewardjax.inference")
    ]
    assert set(ours) == set(RULE_CASES)
    for name in ours:
        args, kwargs, expected = RULE_CASES[name]
        assert SELECTION_RULES.get(name)(*args, **kwargs) == pytest.approx(expected), name
        doc = SELECTION_RULES.get(name).__doc__
        assert "Args:" in doc and "Returns:" in doc, name


# --------------------------------------------------------------------------- accuracy vs N

# One problem, n = 5 candidates: answer 7 is right (candidates 0-2), 5 is wrong (3-4).
ANSWERS = [[7, 7, 7, 5, 5]]
CORRECT = [[1, 1, 1, 0, 0]]
ORM = [[0.1, 0.9, 0.2, 0.8, 0.35]]


def test_accuracy_vs_n_hand_computed():
    # C(5, 3) = 10 <= num_subsets, so every 3-subset is used: the numbers are exact.
    result = accuracy_vs_n(
        ANSWERS,
        CORRECT,
        orm_scores=ORM,
        prm_step_scores=[[[s, 1.0] for s in ORM[0]]],  # min aggregation = ORM score
        prm_aggregations=("min",),
        ns=(1, 3, 5),
        num_subsets=100,
    )
    assert next(iter(result)) == "pass_at_n"
    expected = {
        # N=1: 3 of 5 correct. N=3: 1 - C(2,3)/C(5,3) = 1. N=5: 1.
        "pass_at_n": {1: 0.6, 3: 1.0, 5: 1.0},
        # N=3: wrong only when both 5s are drawn: 3 of 10 subsets → 0.7. N=5: 3 votes vs 2.
        "majority_vote": {1: 0.6, 3: 0.7, 5: 1.0},
        # N=3: right iff the subset holds candidate 1 (score .9): C(4,2) = 6 of 10.
        "bon_orm": {1: 0.6, 3: 0.6, 5: 1.0},
        "bon_prm_min": {1: 0.6, 3: 0.6, 5: 1.0},
        # N=3, weights 7: {.1, .9, .2}, 5: {.8, .35}; right on {0,1,2} {0,1,3} {0,1,4}
        # {1,2,3} {1,2,4} → 5 of 10. N=5: 1.2 > 1.15.
        "weighted_majority_vote_orm": {1: 0.6, 3: 0.5, 5: 1.0},
        "weighted_majority_vote_prm_min": {1: 0.6, 3: 0.5, 5: 1.0},
    }
    assert set(result) == set(expected)
    for name, curve in expected.items():
        for n, value in curve.items():
            assert result[name][n] == pytest.approx(value), (name, n)


def test_accuracy_vs_n_sampled_subsets_are_seeded_and_bounded():
    rng = np.random.default_rng(1)
    num_problems, n = 6, 16
    truth = rng.integers(0, 3, size=num_problems)
    answers = [
        [int(a) for a in np.where(rng.random(n) < 0.5, t, rng.integers(0, 3, size=n))]
        for t in truth
    ]
    correct = [[int(a == t) for a in row] for row, t in zip(answers, truth)]
    orm = [list(rng.random(n)) for _ in range(num_problems)]
    first = accuracy_vs_n(answers, correct, orm_scores=orm, num_subsets=20, seed=3)
    again = accuracy_vs_n(answers, correct, orm_scores=orm, num_subsets=20, seed=3)
    assert first == again
    assert list(first["pass_at_n"]) == [1, 2, 4, 8, 16]
    mean_correct = np.mean([np.mean(row) for row in correct])
    for name, curve in first.items():
        # N = 1 subsets are enumerated (16 <= 20): every rule is exactly mean correctness.
        assert curve[1] == pytest.approx(mean_correct), name
        for value in curve.values():
            assert 0.0 <= value <= 1.0
    # N = n: one subset, the full candidate list; the rules match direct calls.
    direct = np.mean([c[majority_vote(a)] for a, c in zip(answers, correct)])
    assert first["majority_vote"][16] == pytest.approx(direct)
    direct_bon = np.mean([c[bon_orm(s)] for s, c in zip(orm, correct)])
    assert first["bon_orm"][16] == pytest.approx(direct_bon)


def test_accuracy_vs_n_bad_input():
    with pytest.raises(ValueError, match="N = 8 is outside"):
        accuracy_vs_n(ANSWERS, CORRECT, ns=(8,))
    with pytest.raises(ValueError, match="needs weights >= 0"):
        accuracy_vs_n(ANSWERS, CORRECT, orm_scores=[[-1.0, 0.0, 0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match=r"correct\[0\] has 4 candidates"):
        accuracy_vs_n(ANSWERS, [[1, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"correct\[0\] must hold 0/1"):
        accuracy_vs_n(ANSWERS, [[1, 2, 0, 0, 0]])


def test_format_accuracy_table_lists_every_rule():
    table = format_accuracy_table(accuracy_vs_n(ANSWERS, CORRECT, orm_scores=ORM, ns=(1, 5)))
    lines = table.splitlines()
    assert lines[0].split() == ["rule", "N=1", "N=5"]
    assert lines[2].split() == ["pass_at_n", "0.6000", "1.0000"]
    assert any(line.startswith("bon_orm") for line in lines)
