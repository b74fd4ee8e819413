"""Procedural tasks: determinism, disjoint splits, demonstrations and the step grader."""

import numpy as np
import pytest

from rewardjax.data.tasks import TASKS, Problem, make_task, problem_columns, split_of
from rewardjax.data.tasks.countdown import reachable

# code_functions grades in the sandbox: keep with the other sandbox tests.
pytestmark = pytest.mark.xdist_group(name="sandbox")

ALL_TASKS = TASKS.names()
# Tasks whose solutions are work lines followed by an "A: <answer>" line.
LINE_TASKS = [n for n in ALL_TASKS if getattr(TASKS.get(n), "line_format", True)]
# Tasks that grade solutions step by step and split problems by their own hash
# (the `judge` task grades verdicts on another task's problems: tests/judges).
STEP_TASKS = [n for n in ALL_TASKS if getattr(TASKS.get(n), "step_graded", True)]


def test_registry_has_the_tasks():
    assert {"arithmetic_chain", "countdown", "long_addition"} <= set(ALL_TASKS)


# ------------------------------------------------------------------ family tests


@pytest.mark.parametrize("name", ALL_TASKS)
def test_problem_is_a_pure_function_of_index_split_seed(name):
    a, b = make_task(name), make_task(name)
    for i in (0, 1, 57):
        assert a.problem(i, split="train", seed=3) == b.problem(i, split="train", seed=3)
        assert a.problem(i, split="test", seed=3) == b.problem(i, split="test", seed=3)
    seeds = {make_task(name).problem(5, seed=s).prompt for s in range(20)}
    assert len(seeds) > 10  # seeds give different problems


@pytest.mark.parametrize("name", STEP_TASKS)
def test_train_and_test_never_overlap(name):
    task = make_task(name)
    train = {task.problem(i, split="train").uid for i in range(2000)}
    test = {task.problem(i, split="test", seed=1).uid for i in range(2000)}
    assert not train & test
    # Both splits are large, and each problem sits in the split its hash assigns.
    assert len(train) > 200 and len(test) > 50
    key = next(iter(test)).split(":", 1)[1]
    assert split_of(name, key, task.test_fraction) == "test"
    # Another seed draws other train problems, still never a test one.
    more_train = {task.problem(i, split="train", seed=9).uid for i in range(500)}
    assert more_train - train and not more_train & test


@pytest.mark.parametrize("name", LINE_TASKS)
def test_reference_solution_grades_fully_correct(name):
    task = make_task(name)
    for i in range(100):
        p = task.problem(i)
        g = task.grade(p, p.reference_completion)
        assert g.correct and g.well_formed and g.first_error is None, (p, g)
        assert g.step_correct == [True] * len(p.steps) == g.step_valid
        assert g.answer == p.answer and g.num_steps == g.num_reference_steps == len(p.steps)
        assert p.steps[-1] == f"A: {p.answer}"
        assert task.from_fields(p.fields) == p


@pytest.mark.parametrize("name", STEP_TASKS)
def test_texts_are_short_enough_for_a_char_model(name):
    task = make_task(name)
    for i in range(200):
        p = task.problem(i)
        assert len(p.prompt) + len(p.reference_completion) <= 64, p


@pytest.mark.parametrize("name", ALL_TASKS)
def test_demonstration_without_errors_is_the_reference(name):
    task = make_task(name)
    rng = np.random.default_rng(0)
    for i in range(50):
        p = task.problem(i)
        assert task.demonstration(p, rng, error_rate=0.0) == p.reference_completion


@pytest.mark.parametrize("name", LINE_TASKS)
def test_demonstration_errors_propagate_and_are_located(name):
    task = make_task(name)
    rng = np.random.default_rng(1)
    for i in range(200):
        p = task.problem(i)
        demo = task.demonstration(p, rng, error_rate=1.0)
        lines = demo.split("\n")
        first_diff = next(k for k, (a, b) in enumerate(zip(lines, p.steps)) if a != b)
        g = task.grade(p, demo)
        assert not g.correct and g.well_formed
        assert g.first_error == first_diff < len(p.steps) - 1  # a work line
        # Monotone labels: correct up to the error, incorrect from it on.
        assert g.step_correct == [k < first_diff for k in range(len(p.steps))]
        assert not g.step_valid[first_diff]  # the wrong step itself is bad arithmetic
        assert g.answer != p.answer


@pytest.mark.parametrize("name", ALL_TASKS)
def test_error_rate_is_the_share_of_wrong_demonstrations(name):
    task = make_task(name)
    rng = np.random.default_rng(2)
    problems = task.problems(0, 400)
    wrong = sum(
        not task.grade(p, task.demonstration(p, rng, error_rate=0.25)).correct for p in problems
    )
    # Binomial(400, 0.25): mean 100, sd ~8.7; 60..140 is > 4 sd.
    assert 60 <= wrong <= 140


GARBAGE = [
    "",
    "   ",
    "\n\n\n",
    "A:",
    "A: ",
    "A: abc",
    "9" * 5000,
    "1+1=2\n" * 500,
    "==+-*/\n--1--=\nA: -",
    "é ü \x00 \t",
    "Q: 1+1\n",
    "A: 99999999999999999999999999",
    "1*99999999999999999999=5\nA: 3",
]


@pytest.mark.parametrize("name", STEP_TASKS)
@pytest.mark.parametrize("completion", GARBAGE)
def test_grader_survives_garbage(name, completion):
    task = make_task(name)
    p = task.problem(0)
    g = task.grade(p, completion)
    assert not g.correct
    # No garbage line is a right first step of problem 0: the error is at line 0.
    assert g.first_error == 0 and not any(g.step_correct)
    assert len(g.step_correct) == len(g.step_valid) == g.num_steps


@pytest.mark.parametrize("name", ALL_TASKS)
def test_reward_interface_with_columns(name):
    task = make_task(name)
    problems = task.problems(0, 3)
    completions = [problems[0].reference_completion, "nonsense", problems[2].reference_completion]
    columns = problem_columns(problems)
    assert columns["answer"] == [p.answer for p in problems]
    rewards = task.reward([p.prompt for p in problems], completions, **columns)
    assert rewards == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="3 prompts but 2 completions"):
        task.reward([p.prompt for p in problems], completions[:2], **columns)


def test_bad_arguments():
    task = make_task("arithmetic_chain")
    with pytest.raises(ValueError, match="split must be one of"):
        task.problem(0, split="valid")
    with pytest.raises(ValueError, match="index must be >= 0"):
        task.problem(-1)
    with pytest.raises(ValueError, match="error_rate must be in"):
        task.demonstration(task.problem(0), np.random.default_rng(0), error_rate=1.5)
    with pytest.raises(ValueError, match="subset of"):
        make_task("arithmetic_chain", ops="+^")
    with pytest.raises(ValueError, match="num_numbers"):
        make_task("countdown", num_numbers=1)
    with pytest.raises(KeyError, match="unknown procedural task 'sudoku'"):
        make_task("sudoku")
    # A problem space with a single canonical problem cannot fill both splits.
    tiny = make_task("arithmetic_chain", num_steps=1, min_operand=1, max_operand=1, ops="+")
    split = split_of("arithmetic_chain", "1+1", 0.1)
    other = "test" if split == "train" else "train"
    assert tiny.problem(0, split=split).prompt == "Q: 1+1\n"
    with pytest.raises(RuntimeError, match=f"found no {other} problem"):
        tiny.problem(0, split=other)


# ------------------------------------------------------------------ arithmetic_chain


@pytest.fixture
def chain():
    task = make_task("arithmetic_chain")
    return task, task.from_fields({"terms": [7, 5, 3, 8], "ops": "+-+"})


def test_chain_problem_layout(chain):
    _, p = chain
    assert p.prompt == "Q: 7+5-3+8\n"
    assert p.steps == ["7+5=12", "12-3=9", "9+8=17", "A: 17"]
    assert p.answer == "17"


@pytest.mark.parametrize(
    "completion, valid, first_error, correct, answer, well_formed",
    [
        # All right.
        ("7+5=12\n12-3=9\n9+8=17\nA: 17", [1, 1, 1, 1], None, True, "17", True),
        # Spaces tolerated; trailing newline stripped.
        ("7 + 5 = 12\n12-3=9\n9+8=17\nA:17\n", [1, 1, 1, 1], None, True, "17", True),
        # 12-3=8 is wrong; 8+8=16 and A: 16 follow from it (valid) but are not correct.
        ("7+5=12\n12-3=8\n8+8=16\nA: 16", [1, 0, 1, 1], 1, False, "16", True),
        # "Miracle": wrong first line, later lines restart from the true value.
        # 12-3 does not start from the written 13 -> invalid; outcome still right.
        ("7+5=13\n12-3=9\n9+8=17\nA: 17", [0, 0, 1, 1], 0, True, "17", True),
        # Stops early: every written line right, first missing line is 2.
        ("7+5=12\n12-3=9", [1, 1], 2, False, None, False),
        # Answers too soon: an answer where a work line belongs.
        ("7+5=12\nA: 12", [1, 0], 1, False, "12", True),
        # Wrong term (uses 4 instead of 3).
        ("7+5=12\n12-4=8\n8+8=16\nA: 16", [1, 0, 1, 1], 1, False, "16", True),
        # Text after the answer line is ignored, but the format is broken.
        ("7+5=12\n12-3=9\n9+8=17\nA: 17\nA: 18", [1, 1, 1, 1], None, True, "17", False),
        # An extra work line where the answer belongs.
        ("7+5=12\n12-3=9\n9+8=17\n17+0=17\nA: 17", [1, 1, 1, 0, 0], 3, True, "17", True),
    ],
)
def test_chain_grades(chain, completion, valid, first_error, correct, answer, well_formed):
    task, p = chain
    g = task.grade(p, completion)
    assert g.step_valid == [bool(v) for v in valid]
    assert g.first_error == first_error
    expected_correct = [first_error is None or k < first_error for k in range(len(valid))]
    assert g.step_correct == expected_correct
    assert (g.correct, g.answer, g.well_formed) == (correct, answer, well_formed)
    assert g.num_steps == len(valid) and g.num_reference_steps == 4


def test_chain_no_negative_values_by_default():
    task = make_task("arithmetic_chain", num_steps=4, ops="-+")
    for i in range(300):
        p = task.problem(i)
        values = [int(line.split("=")[1]) for line in p.steps[:-1]]
        assert min(values) >= 0, p


def test_chain_step_range():
    task = make_task("arithmetic_chain", num_steps=(2, 4))
    lengths = {len(task.problem(i).steps) - 1 for i in range(200)}
    assert lengths == {2, 3, 4}


# ------------------------------------------------------------------ countdown


@pytest.fixture
def countdown():
    task = make_task("countdown")
    # 3*5=15, 15+7=22 is the only way to make 22 from 3, 5, 7 with + - *. Plan
    # indices refer to the current list: [3, 5, 7] -> [7, 15] after the first move.
    return task, task.from_fields(
        {"numbers": [3, 5, 7], "target": 22, "plan": [[0, 1, "*"], [1, 0, "+"]]}
    )


def test_countdown_problem_layout(countdown):
    _, p = countdown
    assert p.prompt == "Q: 3 5 7 -> 22\n"
    assert p.steps == ["3*5=15", "15+7=22", "A: 22"]


@pytest.mark.parametrize(
    "completion, valid, first_error, correct",
    [
        ("3*5=15\n15+7=22\nA: 22", [1, 1, 1], None, True),
        # Operand order and line order are free.
        ("5*3=15\n7+15=22\nA: 22", [1, 1, 1], None, True),
        # Legal moves into a dead end: from {8, 7} no +,-,* gives 22 (15, 1, 56).
        ("3+5=8\n8+7=15\nA: 15", [1, 1, 1], 0, False),
        # Uses 3 twice: not available.
        ("3*3=9\n9+7=16\nA: 16", [0, 0, 0], 0, False),
        # Bad arithmetic: 3*5 is not 16; the rest follows from it but is wrong.
        ("3*5=16\n16+7=23\nA: 23", [0, 1, 1], 0, False),
        # Answer line disagrees with the last number.
        ("3*5=15\n15+7=22\nA: 23", [1, 1, 0], 2, False),
        # Just stating the target is no derivation.
        ("A: 22", [0], 0, False),
        # A negative intermediate result breaks the rules.
        ("3-5=-2\n-2+7=5\nA: 5", [0, 1, 1], 0, False),
        # Division is not among the default operators.
        ("15/5=3\n", [0], 0, False),
        # Leaves a number unused.
        ("3*5=15\nA: 15", [1, 0], 1, False),
    ],
)
def test_countdown_grades(countdown, completion, valid, first_error, correct):
    task, p = countdown
    g = task.grade(p, completion)
    assert g.step_valid == [bool(v) for v in valid]
    assert g.first_error == first_error
    assert g.correct == correct


def test_countdown_reachability_search():
    # 22 from (3, 5, 7): 3*5+7. 23 is not reachable with + - * (checked by hand:
    # pairs give 8,2,15 / 10,4,21 / 12,2,35 and none combines with the third).
    assert reachable((3, 5, 7), 22, "+-*")
    assert not reachable((3, 5, 7), 23, "+-*")
    assert reachable((2, 6), 3, "/")  # 6/2
    assert not reachable((2, 6), 3, "+-*")


def test_countdown_generated_problems_are_solvable_and_consistent():
    task = make_task("countdown", num_numbers=4, ops="+-*/", max_target=100)
    for i in range(100):
        p = task.problem(i)
        numbers, target = p.fields["numbers"], p.fields["target"]
        assert 1 <= target <= 100 and len(numbers) == 4
        assert reachable(tuple(sorted(numbers)), target, "+-*/")
        assert task.grade(p, p.reference_completion).correct


# ------------------------------------------------------------------ long_addition


@pytest.fixture
def addition():
    task = make_task("long_addition")
    return task, task.from_fields({"operands": [478, 356]})


def test_addition_problem_layout(addition):
    _, p = addition
    assert p.prompt == "Q: 478+356\n"
    # 8+6=14 (write 4, carry 1); 7+5+1=13 (3, carry 1); 4+3+1=8 -> 834.
    assert p.steps == ["8+6+0=14", "7+5+1=13", "4+3+1=8", "A: 834"]


@pytest.mark.parametrize(
    "completion, valid, first_error, correct, answer",
    [
        ("8+6+0=14\n7+5+1=13\n4+3+1=8\nA: 834", [1, 1, 1, 1], None, True, "834"),
        # Forgotten carry: 7+5+0 uses carry 0 but 14 carries 1. The next line
        # follows its own 12 (carry 1), and 824 assembles the written sums 4, 2, 8.
        ("8+6+0=14\n7+5+0=12\n4+3+1=8\nA: 824", [1, 0, 1, 1], 1, False, "824"),
        # Answer that does not assemble the written columns (834 is right, but the
        # line claims 835).
        ("8+6+0=14\n7+5+1=13\n4+3+1=8\nA: 835", [1, 1, 1, 0], 3, False, "835"),
        # Wrong column digits (uses 5 for the units of 356).
        ("8+5+0=13\n7+5+1=13\n4+3+1=8\nA: 833", [0, 1, 1, 1], 0, False, "833"),
    ],
)
def test_addition_grades(addition, completion, valid, first_error, correct, answer):
    task, p = addition
    g = task.grade(p, completion)
    assert g.step_valid == [bool(v) for v in valid]
    assert (g.first_error, g.correct, g.answer) == (first_error, correct, answer)


def test_addition_final_carry_and_canonical_uid():
    task = make_task("long_addition")
    p = task.from_fields({"operands": [978, 356]})
    # 8+6=14, 7+5+1=13, 9+3+1=13 -> carry 1 becomes the leading digit: 1334.
    assert p.steps == ["8+6+0=14", "7+5+1=13", "9+3+1=13", "A: 1334"]
    swapped = task.from_fields({"operands": [356, 978]})
    assert swapped.uid == p.uid and swapped.prompt != p.prompt


def test_problem_is_frozen():
    p = make_task("long_addition").problem(0)
    assert isinstance(p, Problem)
    with pytest.raises(AttributeError):
        p.prompt = "x"
