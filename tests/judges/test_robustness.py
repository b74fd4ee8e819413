"""Master keys: false-positive rates of fake judges; augmentation with "No" negatives."""

import pytest

from rewardjax.data.tasks import make_task
from rewardjax.judges import robustness
from rewardjax.judges.data import JudgeExample
from rewardjax.judges.formats import parse_pointwise
from rewardjax.tokenizers import CharTokenizer

TASK = make_task("arithmetic_chain", num_steps=2)
PROBLEMS = TASK.problems(0, 4)
SHORT = 20  # "Let's solve this step by step." (30 characters) is the only longer key


def test_a_judge_that_accepts_anything_short_fails_on_the_short_keys():
    rates = robustness.false_positive_rates(
        lambda problem, solution: len(solution) < SHORT, PROBLEMS, task=TASK
    )
    per_key = rates["per_key"]
    assert per_key["step_by_step"] == 0.0
    assert all(per_key[k] == 1.0 for k in per_key if k != "step_by_step")
    assert set(per_key) >= {"empty", "colon", "thought_process", "answer_line_wrong"}
    assert rates["overall"] == (len(per_key) - 1) / len(per_key)
    assert rates["num_problems"] == 4


def test_scores_and_verdicts_and_failures():
    keys = ["colon", "answer_line_wrong"]
    rates = robustness.false_positive_rates(
        lambda p, s: 0.7 if s == ":" else 0.2, PROBLEMS, keys=keys
    )
    assert rates["per_key"] == {"colon": 1.0, "answer_line_wrong": 0.0}
    # A parse failure is not an acceptance; it is counted.
    rates = robustness.false_positive_rates(
        lambda p, s: parse_pointwise("Yes" if s == ":" else "yes!"), PROBLEMS, keys=keys
    )
    assert rates["per_key"] == {"colon": 1.0, "answer_line_wrong": 0.0}
    assert rates["parse_failures"] == {"colon": 0, "answer_line_wrong": 4}
    assert rates["overall"] == 0.5


def test_keys_are_wrong_under_the_grader_and_encodable():
    tok = CharTokenizer()
    for problem in PROBLEMS:
        for text in robustness.master_keys(problem).values():
            assert not TASK.grade(problem, text).correct
            tok.encode(text)
    assert robustness.master_keys(PROBLEMS[0])["answer_line_wrong"] != f"A: {PROBLEMS[0].answer}"


def test_augmentation_adds_the_fraction_as_no_examples():
    examples = [JudgeExample("p", "Yes", "pointwise", "Yes") for _ in range(10)]
    out = robustness.augment_with_master_keys(examples, PROBLEMS, fraction=0.3, seed=0)
    assert out[:10] == examples and len(out) == 13
    keys = set(robustness.master_keys(PROBLEMS[0]).values()) | {
        f"A: {int(p.answer) + 1}" for p in PROBLEMS
    }
    for e in out[10:]:
        assert e.label == "No" and parse_pointwise(e.target).value == "No"
        assert e.fields["solution"] in keys
    out = robustness.augment_with_master_keys(examples, PROBLEMS, fraction=0.2, rationale=True)
    assert all(parse_pointwise(e.target, rationale=True).value == "No" for e in out[10:])
    assert len(robustness.augment_with_master_keys(examples, PROBLEMS, fraction=0.0)) == 10
    with pytest.raises(ValueError, match="fraction"):
        robustness.augment_with_master_keys(examples, PROBLEMS, fraction=-0.1)
