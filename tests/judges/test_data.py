"""Judge training data: verdicts agree with the task grader; readers; SFT records."""

import json

import pytest

from rewardjax.data.formats import (
    DataFormatError,
    PreferencePair,
    read_demonstrations,
    read_jsonl,
    write_jsonl,
)
from rewardjax.data.tasks import make_task
from rewardjax.judges import data
from rewardjax.judges.formats import parse_pairwise, parse_pointwise, parse_stepwise

TASK = make_task("arithmetic_chain", num_steps=3)
# Q: 7+5-3+8, reference 7+5=12 / 12-3=9 / 9+8=17 / A: 17.
PROBLEM = TASK.from_fields({"terms": [7, 5, 3, 8], "ops": "+-+"})
WRONG = "7+5=12\n12-3=8\n8+8=16\nA: 16"


def test_rationale_names_the_first_wrong_step_and_its_correction():
    ex = data.pointwise_example(TASK, PROBLEM, WRONG, rationale=True)
    assert ex.target == "Step 2 is wrong: 12-3=8 should be 12-3=9.\nVerdict: No"
    assert ex.label == "No"
    ex = data.pointwise_example(TASK, PROBLEM, PROBLEM.reference_completion, rationale=True)
    assert ex.target == "All steps are correct.\nVerdict: Yes"


def test_stepwise_target_hand_case():
    ex = data.stepwise_example(TASK, PROBLEM, WRONG)
    assert ex.target == "Step 1: correct\nStep 2: wrong\nStep 3: wrong\nStep 4: wrong"
    v = parse_stepwise(data.stepwise_example(TASK, PROBLEM, WRONG, rationale=True).target,
                       rationale=True, num_steps=4)  # fmt: skip
    assert v.step_labels == (True, False, False, False) and v.first_error == 1


@pytest.mark.parametrize("rationale", [False, True])
def test_verdicts_agree_with_the_grader_on_generated_solutions(rationale):
    examples = data.task_judge_examples(TASK, num=12, rationale=rationale, error_rate=0.5)
    by_kind = {k: [e for e in examples if e.kind == k] for k in data.KINDS}
    assert [len(by_kind[k]) for k in data.KINDS] == [12, 24, 12]
    labels = set()
    for e in by_kind["pointwise"]:
        problem = TASK.from_fields({"terms": _terms(e), "ops": _ops(e)})
        grade = TASK.grade(problem, e.fields["solution"])
        v = parse_pointwise(e.target, rationale=rationale)
        assert v.ok and v.value == ("Yes" if grade.correct else "No") == e.label
        labels.add(e.label)
    assert labels == {"Yes", "No"}  # error_rate 0.5 gives both
    for e in by_kind["stepwise"]:
        problem = TASK.from_fields({"terms": _terms(e), "ops": _ops(e)})
        grade = TASK.grade(problem, e.fields["solution"])
        v = parse_stepwise(e.target, rationale=rationale, num_steps=grade.num_steps)
        assert v.ok and list(v.step_labels) == grade.step_correct
        assert v.first_error == grade.first_error == e.fields["first_error"]
    pairs = by_kind["pairwise"]
    for first, second in zip(pairs[::2], pairs[1::2]):
        assert (first.fields["a"], first.fields["b"]) == (second.fields["b"], second.fields["a"])
        problem = TASK.from_fields({"terms": _terms(first), "ops": _ops(first)})
        assert TASK.grade(problem, first.fields["a"]).correct
        assert not TASK.grade(problem, first.fields["b"]).correct
        assert parse_pairwise(first.target, rationale=rationale).value == "A" == first.label
        assert parse_pairwise(second.target, rationale=rationale).value == "B" == second.label


def _terms(example):
    return [int(t) for t in _expression(example).replace("-", "+").split("+")]


def _ops(example):
    return "".join(c for c in _expression(example) if c in "+-*")


def _expression(example):
    return example.fields["problem"].strip()[len("Q: ") :]


def test_pairwise_examples_reject_a_pair_the_grader_disagrees_with():
    with pytest.raises(ValueError, match="correct and a wrong"):
        data.pairwise_examples(TASK, PROBLEM, WRONG, PROBLEM.reference_completion)


def test_labeled_solution_reader_and_its_errors(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"problem": "Q: 1+2\n", "solution": "1+2=3\nA: 3", "label": True, "src": "x"},
        {"problem": "Q: 1+2\n", "solution": "A: 4", "label": 0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = data.read_labeled_solutions(path)
    examples = data.pointwise_examples_from_labels(records)
    assert [e.target for e in examples] == ["Yes", "No"]
    assert examples[0].fields["src"] == "x"
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "label": "no"}) + "\n")
    with pytest.raises(DataFormatError, match=r"labels.jsonl:2: label must be"):
        data.read_labeled_solutions(path)
    path.write_text(json.dumps({"problem": "Q", "label": 1}) + "\n")
    with pytest.raises(DataFormatError, match=r"labels.jsonl:1: missing field 'solution'"):
        data.read_labeled_solutions(path)


def test_preference_pairs_give_both_orders_and_skip_ties(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "Q: 1+2\n", "chosen": "A: 3", "rejected": "A: 4"},
        {"prompt": "Q: 2+2\n", "chosen": "A: 4", "rejected": "A: 5", "tie": True},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = data.pairwise_examples_from_pairs(read_jsonl(path, PreferencePair))
    assert [(e.fields["a"], e.fields["b"], e.target) for e in examples] == [
        ("A: 3", "A: 4", "A"),
        ("A: 4", "A: 3", "B"),
    ]


def test_examples_written_as_demonstrations_read_back_for_sft(tmp_path):
    examples = data.task_judge_examples(TASK, num=2, kinds=("pointwise",), rationale=True)
    path = tmp_path / "judge.jsonl"
    write_jsonl(path, data.to_demonstrations(examples))
    demos = read_demonstrations(path)
    assert [(d.prompt, d.response) for d in demos] == [(e.prompt, e.target) for e in examples]
    assert demos[0].fields["judge_kind"] == "pointwise"
