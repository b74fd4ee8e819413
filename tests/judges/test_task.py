"""The `judge` task: verdicts the inner grader gives, splits that follow the inner task, strict grading."""

import numpy as np
import pytest

from rewardjax.data.tasks import TASKS, split_of
from rewardjax.judges import formats


def _judge(**kw):
    return TASKS.get("judge")(task_kwargs=dict(num_steps=3, max_operand=9), **kw)


@pytest.mark.parametrize("rationale", [False, True])
def test_pointwise_answer_is_the_inner_graders_verdict(rationale):
    judge = _judge(rationale=rationale, error_rate=0.5)
    answers = []
    for i in range(40):
        p = judge.problem(i)
        inner = judge.inner.from_fields(p.fields["inner"])
        correct = judge.inner.grade(inner, p.fields["solution"]).correct
        assert p.answer == ("Yes" if correct else "No")
        assert p.fields["solution"] in p.prompt and inner.prompt.strip() in p.prompt
        # The target reply is graded correct, and parses to the answer.
        assert judge.grade(p, p.reference_completion).correct
        verdict = formats.parse_pointwise(p.reference_completion, rationale=rationale)
        assert verdict.ok and verdict.value == p.answer
        answers.append(p.answer)
    # error_rate 0.5 (plus lucky wrong steps that still end right): both verdicts occur.
    assert 5 <= answers.count("No") <= 35


def test_pairwise_answer_names_the_slot_of_the_correct_solution():
    judge = _judge(kind="pairwise")
    slots = []
    for i in range(30):
        p = judge.problem(i, split="test")
        inner = judge.inner.from_fields(p.fields["inner"])
        a_text = p.prompt.split("Solution A:\n")[1].split("Solution B:\n")[0].strip()
        b_text = p.prompt.split("Solution B:\n")[1].split("Which")[0].strip()
        a_ok = judge.inner.grade(inner, a_text).correct
        b_ok = judge.inner.grade(inner, b_text).correct
        assert a_ok != b_ok and p.answer == ("A" if a_ok else "B")
        slots.append(p.answer)
    assert 0 < slots.count("A") < 30  # the correct solution sits in both slots


def test_judge_splits_hold_only_the_inner_tasks_problems_of_that_split():
    judge = _judge()
    for split in ("train", "test"):
        for i in range(20):
            inner = judge.inner.from_fields(judge.problem(i, split=split).fields["inner"])
            key = judge.inner.canonical_key((tuple(inner.fields["terms"]), inner.fields["ops"]))
            assert split_of(judge.inner.name, key, judge.inner.test_fraction) == split


def test_grading_is_strict_and_a_reply_that_does_not_parse_is_not_well_formed():
    judge = _judge()
    p = next(judge.problem(i) for i in range(50) if judge.problem(i).answer == "Yes")
    assert judge.grade(p, "Yes").correct and judge.grade(p, "Yes").well_formed
    for reply in ("No", "yes", "Yes.", "Yes\nNo", "", "Verdict: Yes"):
        g = judge.grade(p, reply)
        assert not g.correct, reply
    assert judge.grade(p, "No").well_formed and not judge.grade(p, "yes").well_formed


def test_problems_rebuild_from_fields_and_are_deterministic():
    for kind in ("pointwise", "pairwise"):
        judge = _judge(kind=kind, rationale=True)
        for i in range(5):
            p = judge.problem(i, seed=3)
            assert judge.from_fields(p.fields) == p == judge.problem(i, seed=3)


def test_demonstration_error_rate_flips_the_verdict():
    judge = _judge(rationale=True)
    p = judge.problem(0)
    rng = np.random.default_rng(0)
    assert judge.demonstration(p, rng) == p.reference_completion
    flipped = judge.demonstration(p, rng, error_rate=1.0)
    other = "No" if p.answer == "Yes" else "Yes"
    assert formats.parse_pointwise(flipped, rationale=True).value == other
    assert not judge.grade(p, flipped).correct


@pytest.mark.parametrize("rationale", [False, True])
def test_stepwise_labels_are_the_inner_graders_step_labels(rationale):
    judge = _judge(kind="stepwise", rationale=rationale)
    seen_wrong = 0
    for i in range(30):
        p = judge.problem(i)
        inner = judge.inner.from_fields(p.fields["inner"])
        grade = judge.inner.grade(inner, p.fields["solution"])
        assert p.fields["labels"] == list(grade.step_correct)
        verdict = formats.parse_stepwise(p.reference_completion, rationale=rationale)
        assert verdict.ok and list(verdict.step_labels) == list(grade.step_correct)
        assert verdict.first_error == grade.first_error
        assert judge.grade(p, p.reference_completion).correct
        seen_wrong += grade.first_error is not None
        # One label flipped: well formed, not correct.
        flipped = judge.demonstration(p, np.random.default_rng(i), error_rate=1.0)
        g = judge.grade(p, flipped)
        assert g.well_formed and not g.correct
    assert 5 <= seen_wrong <= 25
    assert judge.from_fields(p.fields) == p


def test_master_key_augmentation_adds_no_verdicts_on_keys():
    from rewardjax.judges.robustness import master_keys

    judge = _judge(master_keys=0.5)
    keyed = []
    for i in range(40):
        p = judge.problem(i)
        inner = judge.inner.from_fields(p.fields["inner"])
        if p.fields["solution"] in master_keys(inner).values():
            keyed.append(p.answer)
    assert 8 <= len(keyed) <= 32 and set(keyed) == {"No"}
    plain = _judge()  # without the switch no solution is a key
    assert not any(
        plain.problem(i).fields["solution"] in master_keys(plain.inner.problem(i)).values()
        for i in range(40)
    )


def test_bad_judge_settings_are_errors():
    with pytest.raises(ValueError, match="kind"):
        _judge(kind="listwise")
    with pytest.raises(ValueError, match="error_rate"):
        _judge(error_rate=1.5)
    with pytest.raises(ValueError, match="master_keys"):
        _judge(kind="pairwise", master_keys=0.1)


@pytest.mark.parametrize(
    "reply", ["", "   ", "\n\n\n", "A:", "yes", "Yes No", "9" * 5000, "Yes\n" * 50, "é \x00"]
)
@pytest.mark.parametrize("kind", ["pointwise", "pairwise", "stepwise"])
def test_the_judge_grader_survives_garbage(kind, reply):
    judge = _judge(kind=kind)
    g = judge.grade(judge.problem(0), reply)
    assert not g.correct and not g.well_formed
