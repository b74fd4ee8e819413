"""Offline datasets from procedural tasks: labels agree with the graders."""

import pytest

from rewardjax.data import generators
from rewardjax.data.formats import PreferencePair, RankedList, StepLabels, read_jsonl
from rewardjax.data.tasks import TASKS, make_task

# Generated pairs and step labels need a step-graded task (not the `judge` task).
STEP_TASKS = [n for n in TASKS.names() if getattr(TASKS.get(n), "step_graded", True)]


@pytest.mark.parametrize("name", STEP_TASKS)
def test_preference_pairs_chosen_correct_rejected_wrong(name):
    task = make_task(name)
    pairs = generators.preference_pairs(task, num=50, seed=1)
    assert len(pairs) == 50
    for i, pair in enumerate(pairs):
        p = task.problem(i, seed=1)
        assert isinstance(pair, PreferencePair) and pair.prompt == p.prompt
        good, bad = task.grade(p, pair.chosen), task.grade(p, pair.rejected)
        assert good.correct and not bad.correct
        # margin = 1 - first_error / S for the rejected one.
        assert pair.margin == pytest.approx(1 - bad.first_error / len(p.steps))
        assert pair.fields["uid"] == p.uid


@pytest.mark.parametrize("name", STEP_TASKS)
def test_step_labels_match_the_checker(name):
    task = make_task(name)
    records = generators.step_labels(task, num=100, error_rate=0.5, split="test")
    assert all(isinstance(r, StepLabels) and r.hard for r in records)
    wrong = 0
    for i, r in enumerate(records):
        p = task.problem(i, split="test")
        g = task.grade(p, "\n".join(r.steps))
        assert r.labels == [float(c) for c in g.step_correct]
        assert r.first_error == g.first_error and r.correct == g.correct
        if r.first_error is not None:
            wrong += 1
            # Monotone hard labels: ones before the first error, zeros from it.
            assert r.labels == [1.0] * r.first_error + [0.0] * (len(r.steps) - r.first_error)
    assert 25 <= wrong <= 75  # error_rate 0.5 over 100: mean 50, sd 5


def test_ranked_lists_scores_are_exact():
    task = make_task("arithmetic_chain", num_steps=3)
    lists = generators.ranked_lists(task, num=20, num_responses=4)
    assert len(lists) == 20
    problems = {p.uid: p for p in task.problems(0, 20)}
    for r in lists:
        assert isinstance(r, RankedList) and len(r.responses) == 4
        assert len(set(r.responses)) == 4
        reference = problems[r.fields["uid"]].reference_completion
        ref_lines = reference.split("\n")
        assert len(ref_lines) == 4  # 3 work lines and the answer line
        # The reference scores 1.0; an erroneous response k / 4, with k its first
        # line that differs from the reference (errors propagate from there).
        expected = []
        for response in r.responses:
            if response == reference:
                expected.append(1.0)
                continue
            lines = response.split("\n")
            k = next(i for i, (a, b) in enumerate(zip(lines, ref_lines)) if a != b)
            expected.append(k / 4)
        assert r.scores == expected
        assert expected.count(1.0) == 1
        assert r.responses[r.order()[0]] == reference


def test_demonstrations_are_reproducible_and_continue_with_start():
    task = make_task("countdown")
    a = generators.demonstrations(task, num=10, error_rate=0.5)
    b = generators.demonstrations(task, num=5, start=5, error_rate=0.5)
    assert a[5:] == b


def test_command_line_writes_jsonl(tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    generators.main(
        ["--task=long_addition", "--format=preference_pairs", "--num=7", f"--out={out}"]
    )
    assert len(read_jsonl(out, PreferencePair)) == 7
    assert "wrote 7 preference_pairs records" in capsys.readouterr().out
