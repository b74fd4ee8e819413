"""Tests for rewardjax.evaluation.rm_metrics: ORM, PRM and calibration metrics."""

import itertools
import math

import numpy as np
import pytest

from rewardjax.evaluation.rm_metrics import (
    REWARDBENCH_SECTIONS,
    auroc,
    best_of_4_accuracy,
    calibration,
    first_error_steps,
    processbench_best_threshold,
    processbench_f1,
    rewardbench2_ties_score,
    rewardbench_section_scores,
    rm_pairwise_accuracy,
    score_correctness_correlation,
    step_auroc,
)

# --------------------------------------------------------------------------- ORM


def test_pairwise_accuracy_ties_count_wrong():
    # 1 > 0 right; 2 = 2 tie → wrong; 3 < 4 wrong → 1/3
    assert rm_pairwise_accuracy([1.0, 2.0, 3.0], [0.0, 2.0, 4.0]) == pytest.approx(1 / 3)


def test_pairwise_accuracy_random_scores_near_half():
    rng = np.random.default_rng(0)
    # 40 000 pairs: standard error 0.0025, tolerance 0.015 is 6 standard errors.
    chosen, rejected = rng.normal(size=40_000), rng.normal(size=40_000)
    assert rm_pairwise_accuracy(chosen, rejected) == pytest.approx(0.5, abs=0.015)


def test_pairwise_accuracy_bad_input():
    with pytest.raises(ValueError, match="chosen_scores has 2 rows but rejected_scores has 3"):
        rm_pairwise_accuracy([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"rejected_scores\[0\] is nan"):
        rm_pairwise_accuracy([1.0], [float("nan")])


def test_rewardbench_section_scores():
    scores = rewardbench_section_scores(
        {"alpacaeval-easy": 1.0, "mt-bench-easy": 0.5, "math-prm": 1.0, "hep-python": 0.0}
    )
    # Chat: (100·1 + 28·.5)/128 = 114/128; Reasoning: (984·1 + 164·0)/1148.
    assert scores["Chat"] == pytest.approx(114 / 128)
    assert scores["Reasoning"] == pytest.approx(984 / 1148)
    assert "overall" not in scores and "Safety" not in scores
    full = {s: 1.0 for s in REWARDBENCH_SECTIONS["Chat"] + REWARDBENCH_SECTIONS["Safety"]}
    full.update({s: 0.0 for s in REWARDBENCH_SECTIONS["Chat Hard"]})
    full.update({s: 0.0 for s in REWARDBENCH_SECTIONS["Reasoning"]})
    assert rewardbench_section_scores(full)["overall"] == pytest.approx(0.5)  # (1+0+1+0)/4
    with pytest.raises(ValueError, match="unknown RewardBench subset 'gsm8k'"):
        rewardbench_section_scores({"gsm8k": 0.5})


def test_best_of_4_accuracy():
    chosen = [5.0, 1.0, 2.0]
    rejected = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.5], [2.0, 1.0, 0.0]]
    # 5 > 3 right; 1 > .5 right; 2 = 2 tie → wrong by default → 2/3
    assert best_of_4_accuracy(chosen, rejected) == pytest.approx(2 / 3)
    assert best_of_4_accuracy(chosen, rejected, ties_count_as_correct=True) == 1.0
    with pytest.raises(ValueError, match=r"rejected_scores must be \[B, K\]"):
        best_of_4_accuracy(chosen, [1.0, 2.0, 3.0])


def test_best_of_4_random_scores_near_quarter():
    rng = np.random.default_rng(1)
    # 40 000 prompts: standard error 0.0022, tolerance 0.015.
    scores = rng.normal(size=(40_000, 4))
    assert best_of_4_accuracy(scores[:, 0], scores[:, 1:]) == pytest.approx(0.25, abs=0.015)


def test_rewardbench2_ties_score_hand_fixtures():
    # ref [5 | 3, 1]: gap 5-3 = 2, accurate. tied [6, 4 | 2, 1]: spread 2, gap 4-2 = 2.
    # preferred: 2 > 2 no; hard: min(2, 2) > 2 no; margin tanh(2/2 - 1) = 0.
    result = rewardbench2_ties_score([[5, 3, 1]], [1], [[6, 4, 2, 1]], [2])
    assert result["score"] == pytest.approx(0.3 + 0.3)
    # tied [6, 5.5 | 2, 1]: spread .5, gap 3.5; hard gap min(2, 3.5) = 2.
    # score = .3 + .3 + .2 + .2 + .01·tanh(2/.5 - 1)
    result = rewardbench2_ties_score([[5, 3, 1]], [1], [[6, 5.5, 2, 1]], [2])
    assert result["score"] == pytest.approx(1.0 + 0.01 * math.tanh(3.0))
    assert result["correctness_preferred_hard"] == 1.0
    # ref [3 | 3]: gap 0, not accurate. tied [4, 4 | 1]: spread 0, gap 3.
    # preferred 3 > 0 yes; hard min(0, 3) = 0 > 0 no; margin 0/0 → 0.
    result = rewardbench2_ties_score([[3, 3]], [1], [[4, 4, 1]], [2])
    assert result["score"] == pytest.approx(0.3 * 1 + 0.3 * 0 + 0.2 * 1 + 0.2 * 0)
    with pytest.raises(ValueError, match=r"tied_num_correct\[0\] = 1"):
        rewardbench2_ties_score([[3, 3]], [1], [[4, 4, 1]], [1])


# --------------------------------------------------------------------------- PRM


def test_first_error_steps_threshold_is_strict():
    # row 0: .5 is not below .5, .4 is → 2; row 1: nothing below → -1
    np.testing.assert_array_equal(first_error_steps([[0.9, 0.5, 0.4], [0.6]]), [2, -1])


def test_processbench_catalogue_fixtures():
    # (acc_err, acc_cor) = (1, 0) → F1 0: the erroneous solution's first error (step 1)
    # is found; the correct solution gets a false error at step 1.
    result = processbench_f1([[0.9, 0.2, 0.8], [0.9, 0.4]], [1, -1])
    assert (result["acc_erroneous"], result["acc_correct"], result["f1"]) == (1.0, 0.0, 0.0)
    # (1, 1) → F1 1.
    assert processbench_f1([[0.9, 0.2], [0.9, 0.8]], [1, -1])["f1"] == 1.0


def test_processbench_harmonic_mean():
    scores = [[0.9, 0.2], [0.1, 0.9], [0.7, 0.8]]  # predictions 1, 0, -1
    labels = [1, 1, -1]  # erroneous: 1 of 2 right; correct: 1 of 1 right
    result = processbench_f1(scores, labels)
    assert result["acc_erroneous"] == 0.5 and result["acc_correct"] == 1.0
    assert result["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    padded = np.array([[0.9, 0.2], [0.1, 0.9], [0.7, 0.8]])
    assert processbench_f1(padded, labels, step_mask=np.ones((3, 2)))["f1"] == result["f1"]


def test_processbench_undefined_and_bad_input():
    assert math.isnan(processbench_f1([[0.9, 0.2]], [1])["f1"])  # no correct solution
    with pytest.raises(ValueError, match=r"first_error_labels\[0\] = 2 is outside \[-1, 1\]"):
        processbench_f1([[0.9, 0.2]], [2])
    with pytest.raises(ValueError, match="first_error_labels has 1 rows but step_scores has 2"):
        processbench_f1([[0.9], [0.8]], [0])


def test_processbench_best_threshold():
    # Erroneous [.9, .25] (error at 1) and correct [.9, .4]: both are right for
    # .25 < τ <= .4; the smallest such grid value is .26.
    threshold, metrics = processbench_best_threshold([[0.9, 0.25], [0.9, 0.4]], [1, -1])
    assert threshold == pytest.approx(0.26) and metrics["f1"] == 1.0
    assert processbench_f1([[0.9, 0.25], [0.9, 0.4]], [1, -1], threshold=0.5)["f1"] == 0.0


def brute_force_auroc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l == 1]
    neg = [s for s, l in zip(scores, labels) if l == 0]
    pairs = list(itertools.product(pos, neg))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_auroc_matches_pair_count_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(20):
        scores = np.round(rng.random(30), 1)  # rounding makes ties
        labels = rng.integers(0, 2, size=30)
        if labels.min() == labels.max():
            continue
        assert auroc(scores, labels) == pytest.approx(brute_force_auroc(scores, labels))
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_step_auroc_pools_steps():
    scores = [[0.9, 0.2, 0.3], [0.8], [0.7, 0.6]]
    labels = [[1, 0, 0], [1], [1, 0]]
    expected = brute_force_auroc(
        [s for row in scores for s in row], [l for row in labels for l in row]
    )
    # positives .9 .8 .7, negatives .2 .3 .6: every pair ordered → 1
    assert expected == 1.0
    assert step_auroc(scores, labels) == expected
    with pytest.raises(ValueError, match="solution 1: 1 step scores but 2 step labels"):
        step_auroc(scores, [[1, 0, 0], [1, 0], [1, 0]])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        step_auroc(scores, [[1, 0, 0.5], [1], [1, 0]])


# --------------------------------------------------------------------------- calibration


def test_calibration_perfect_is_zero():
    outcomes = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    result = calibration(outcomes, outcomes)
    assert result == {"brier": 0.0, "ece": 0.0}


def test_calibration_hand_fixture():
    q, c = [0.1, 0.9, 0.8, 0.3], [0, 1, 0, 1]
    result = calibration(q, c)
    # Brier: (.01 + .01 + .64 + .49)/4 = .2875. Ten bins, one sample each:
    # ECE = (.1 + .1 + .8 + .7)/4 = .425
    assert result["brier"] == pytest.approx(0.2875)
    assert result["ece"] == pytest.approx(0.425)
    # Two bins: [0, .5) holds q .1 .3 / c 0 1 → |.5 - .2|·2/4 = .15;
    # [.5, 1] holds q .9 .8 / c 1 0 → |.5 - .85|·2/4 = .175 → .325
    assert calibration(q, c, num_bins=2)["ece"] == pytest.approx(0.325)
    # q = 1 falls in the last bin.
    assert calibration([1.0, 0.0], [1, 0]) == {"brier": 0.0, "ece": 0.0}


def test_calibration_bad_input():
    with pytest.raises(ValueError, match=r"probs\[1\] = 1.2 is outside \[0, 1\]"):
        calibration([0.5, 1.2], [0, 1])
    with pytest.raises(ValueError, match="num_bins must be an integer >= 1"):
        calibration([0.5], [1], num_bins=0)


def test_score_correctness_correlation():
    result = score_correctness_correlation([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1])
    # dx = [-1.5, -.5, .5, 1.5], dy = [-.5, -.5, .5, .5]: Σdxdy = 2, Σdx² = 5, Σdy² = 1
    assert result["pearson"] == pytest.approx(2 / math.sqrt(5))
    # ranks [1, 2, 3, 4] vs [1.5, 1.5, 3.5, 3.5]: the same pattern → 2/√5
    assert result["spearman"] == pytest.approx(2 / math.sqrt(5))
    assert result["auroc"] == 1.0
    constant = score_correctness_correlation([0.0, 0.0, 0.0], [0, 1, 1])
    assert math.isnan(constant["pearson"]) and constant["auroc"] == 0.5
