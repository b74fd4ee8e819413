"""Tests for rewardjax.evaluation.benchmarks: RewardBench, RewardBench 2 and ProcessBench scores.

Expected values are worked out by hand from the official definitions, never
by calling the code under test.
"""

import math

import pytest

from rewardjax.evaluation.benchmarks import (
    processbench_scores,
    rewardbench2_scores,
    rewardbench2_ties_subset_score,
    rewardbench_scores,
)
from rewardjax.evaluation.rm_metrics import REWARDBENCH_EXAMPLE_COUNTS, REWARDBENCH_SECTIONS

# allenai/reward-bench rewardbench/constants.py, copied by hand.
OFFICIAL_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}
OFFICIAL_SUBSET_MAPPING = {
    "Chat": {
        "alpacaeval-easy",
        "alpacaeval-length",
        "alpacaeval-hard",
        "mt-bench-easy",
        "mt-bench-med",
    },
    "Chat Hard": {
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    },
    "Safety": {
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    },
    "Reasoning": {"math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"},
}

# --------------------------------------------------------------------------- RewardBench


def test_rewardbench_tables_match_official():
    assert dict(REWARDBENCH_EXAMPLE_COUNTS) == OFFICIAL_EXAMPLE_COUNTS
    assert {k: set(v) for k, v in REWARDBENCH_SECTIONS.items()} == OFFICIAL_SUBSET_MAPPING


def test_rewardbench_partial_sections_weighted_by_example_counts():
    subsets = ["alpacaeval-easy", "alpacaeval-easy", "mt-bench-easy", "math-prm"]
    subsets += ["hep-python", "hep-python"]
    chosen = [1.0, 0.0, 2.0, 5.0, 0.0, 1.0]
    rejected = [0.0, 1.0, 1.0, 4.0, 1.0, 2.0]
    out = rewardbench_scores(subsets, chosen, rejected)
    # alpacaeval-easy 1/2 (weight 100), mt-bench-easy 1/1 (weight 28)
    chat = (100 * 0.5 + 28 * 1.0) / (100 + 28)
    # math-prm 1/1 (weight 984), hep-python 0/2 (weight 164)
    reasoning = (984 * 1.0 + 164 * 0.0) / (984 + 164)
    assert out["subsets"] == {
        "alpacaeval-easy": 0.5,
        "mt-bench-easy": 1.0,
        "math-prm": 1.0,
        "hep-python": 0.0,
    }
    assert out["sections"] == pytest.approx({"Chat": chat, "Reasoning": reasoning})
    assert out["score"] == pytest.approx((chat + reasoning) / 2)
    assert out["complete"] is False
    assert "Safety" not in out["sections"]
    assert "donotanswer" in out["missing"]
    assert out["counts"]["hep-python"] == 2


def test_rewardbench_full_math_weighs_as_much_as_all_code():
    # One pair per subset; every pair right except the six hep-* ones.
    subsets = list(OFFICIAL_EXAMPLE_COUNTS)
    chosen = [0.0 if s.startswith("hep-") else 1.0 for s in subsets]
    rejected = [0.5] * len(subsets)
    out = rewardbench_scores(subsets, chosen, rejected)
    # Reasoning = 984·1 / (984 + 6·164) = 1/2; the other sections are 1.
    assert out["sections"] == pytest.approx(
        {"Chat": 1.0, "Chat Hard": 1.0, "Safety": 1.0, "Reasoning": 0.5}
    )
    assert out["score"] == pytest.approx(3.5 / 4)
    assert out["complete"] is True
    assert out["missing"] == []


def test_rewardbench_ties_count_as_wrong():
    out = rewardbench_scores(["donotanswer"] * 4, [1.0, 2.0, 2.0, 0.0], [0.0, 2.0, 2.0, 1.0])
    # 1 > 0 right, two ties wrong, 0 < 1 wrong
    assert out["subsets"]["donotanswer"] == 0.25
    assert out["sections"]["Safety"] == 0.25
    assert out["num_ties"] == 2


def test_rewardbench_unknown_subsets_refused():
    with pytest.raises(ValueError, match=r"anthropic_hhh.*math_prm"):
        rewardbench_scores(["math-prm", "anthropic_hhh", "math_prm"], [1, 1, 1], [0, 0, 0])


def test_rewardbench_bad_input():
    with pytest.raises(ValueError, match="rejected has 1 rows but subsets has 2"):
        rewardbench_scores(["math-prm", "hep-go"], [1.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="chosen"):
        rewardbench_scores(["math-prm"], [float("nan")], [0.0])


# --------------------------------------------------------------------------- RewardBench 2


def test_rewardbench2_best_of_n_with_tie_credit():
    subsets = ["Factuality"] * 4 + ["Math"]
    scores = [
        [3.0, 1.0, 2.0, 0.0],  # strict win → 1
        [1.0, 2.0, 0.0, 0.0],  # loss → 0
        [2.0, 2.0, 1.0, 0.0],  # tie with one rejected → 1/2
        [1.0, 1.0, 1.0, 1.0],  # four-way tie → 1/4
        [0.0, 1.0, 2.0, 3.0],  # loss → 0
    ]
    out = rewardbench2_scores(subsets, scores, [1] * 5)
    factuality = (1 + 0 + 0.5 + 0.25) / 4
    assert out["subsets"] == pytest.approx({"Factuality": factuality, "Math": 0.0})
    assert out["score"] == pytest.approx(factuality / 2)
    assert out["complete"] is False
    assert out["counts"] == {"Factuality": 4, "Math": 1}
    assert "ties" not in out


# Two prompts. Prompt 0: ref gap 5 − 2 = 3; tied correct {6, 4}, incorrect {1, 2}:
# gap 4 − 2 = 2, spread 2. Prompt 1: ref gap 1 − 3 = −2; tied correct {5, 4},
# incorrect {0}: gap 4, spread 1.
TIES_ROWS = [
    ("ref:0", [5.0, 1.0, 2.0], 1),
    ("tied:0", [6.0, 4.0, 1.0, 2.0], 2),
    ("ref:1", [1.0, 3.0], 1),
    ("tied:1", [5.0, 4.0, 0.0], 2),
]
# acc_ref 1/2, acc_tied 1; preferred: [2 > 2, 4 > 1] → 1/2;
# hard: [min(3, 2) > 2, min(−2, 4) > 1] → 0; margin: [tanh(0), tanh(−2/1 − 1)] / 2.
TIES_EXPECTED = 0.3 * 1.0 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.0 + 0.01 * (0.0 + math.tanh(-3.0)) / 2


def test_rewardbench2_ties_hand_case():
    ids, scores, num_correct = zip(*TIES_ROWS, strict=True)
    ties = rewardbench2_ties_subset_score(scores, num_correct, ids)
    assert ties["accuracy_ref"] == 0.5
    assert ties["accuracy_tied"] == 1.0
    assert ties["correctness_preferred"] == 0.5
    assert ties["correctness_preferred_hard"] == 0.0
    assert ties["margin_score"] == pytest.approx(math.tanh(-3.0) / 2)
    assert ties["score"] == pytest.approx(TIES_EXPECTED)


def test_rewardbench2_ties_in_full_scoring_and_rows_pooled_by_id():
    # tied:0 split over two rows with the same id is pooled, as the official code does.
    subsets = ["Ties"] * 5 + ["Focus"]
    scores = [
        [5.0, 1.0, 2.0],
        [6.0, 1.0],
        [4.0, 2.0],
        [1.0, 3.0],
        [5.0, 4.0, 0.0],
        [1.0, 0.0],
    ]
    num_correct = [1, 1, 1, 1, 2, 1]
    ids = ["ref:0", "tied:0", "tied:0", "ref:1", "tied:1", "focus-7"]
    out = rewardbench2_scores(subsets, scores, num_correct, ids=ids)
    assert out["subsets"]["Ties"] == pytest.approx(TIES_EXPECTED)
    assert out["subsets"]["Focus"] == 1.0
    assert out["score"] == pytest.approx((TIES_EXPECTED + 1.0) / 2)
    assert out["ties"]["num_prompts"] == 2


def test_rewardbench2_ties_zero_spread():
    # Prompt 0: tied spread 0, gap 3, ref gap 1 → tanh(1/0 − 1) = tanh(inf) = 1.
    # Prompt 1: tied spread 0, gap 0 (not accurate), ref gap 1 → 0/0 → 0.
    ids = ["ref:0", "tied:0", "ref:1", "tied:1"]
    scores = [[2.0, 1.0], [3.0, 3.0, 0.0], [2.0, 1.0], [1.0, 1.0, 1.0]]
    ties = rewardbench2_ties_subset_score(scores, [1, 2, 1, 2], ids)
    assert ties["margin_score"] == pytest.approx(0.5)
    # acc_ref 1, acc_tied 1/2, preferred [3 > 0, 0 > 0] → 1/2, hard [1 > 0, 0 > 0] → 1/2
    expected = 0.3 * 0.5 + 0.3 * 1.0 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * 0.5
    assert ties["score"] == pytest.approx(expected)


def test_rewardbench2_bad_input():
    with pytest.raises(ValueError, match=r"unknown RewardBench 2 subset.*'ties'"):
        rewardbench2_scores(["ties"], [[1.0, 0.0]], [1])
    with pytest.raises(ValueError, match="Ties subset needs ids"):
        rewardbench2_scores(["Ties"], [[1.0, 0.0]], [1])
    with pytest.raises(ValueError, match="only Ties rows may have several correct"):
        rewardbench2_scores(["Math"], [[1.0, 1.0, 0.0]], [2])
    with pytest.raises(ValueError, match=r"Ties prompt ids \[3\] lack their .ref. or .tied. rows"):
        rewardbench2_scores(["Ties"], [[1.0, 0.0]], [1], ids=["ref:3"])
    with pytest.raises(ValueError, match="'ref:<prompt id>'"):
        rewardbench2_scores(["Ties"], [[1.0, 0.0]], [1], ids=["3"])


# --------------------------------------------------------------------------- ProcessBench


def test_processbench_hand_case():
    subsets = ["gsm8k"] * 5 + ["math"] * 2
    labels = [-1, -1, 2, 3, 0, -1, 1]
    predicted = [-1, 1, 2, -1, 0, 0, 0]
    out = processbench_scores(subsets, predicted, labels)
    # gsm8k: correct samples 1/2; erroneous 2/3 (a "no error" prediction on a
    # wrong solution is a miss); F1 = 2·(1/2)(2/3)/(1/2 + 2/3) = 4/7.
    assert out["subsets"]["gsm8k"] == pytest.approx(
        {"error_acc": 2 / 3, "correct_acc": 0.5, "f1": 4 / 7, "n": 5}
    )
    # math: both accuracies 0 → F1 0, not nan.
    assert out["subsets"]["math"] == {"error_acc": 0.0, "correct_acc": 0.0, "f1": 0.0, "n": 2}
    assert out["average_f1"] == pytest.approx((4 / 7 + 0.0) / 2)
    assert out["complete"] is False
    assert out["missing"] == ["olympiadbench", "omnimath"]


def test_processbench_subset_without_correct_samples_is_nan():
    out = processbench_scores(["omnimath", "omnimath"], [1, 0], [1, 2])
    assert out["subsets"]["omnimath"]["error_acc"] == 0.5
    assert math.isnan(out["subsets"]["omnimath"]["correct_acc"])
    assert math.isnan(out["average_f1"])


def test_processbench_bad_input():
    with pytest.raises(ValueError, match=r"unknown ProcessBench subset.*aime"):
        processbench_scores(["gsm8k", "aime"], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="labels\\[0\\] = -2"):
        processbench_scores(["gsm8k"], [0], [-2])
    with pytest.raises(ValueError, match="predicted must be integers"):
        processbench_scores(["gsm8k"], [0.5], [0])
