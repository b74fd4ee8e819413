"""JSONL formats: round trips, validation errors that name file and line."""

import json
import os

import pytest

from rewardjax.data.formats import (
    FORMATS,
    DataFormatError,
    PreferencePair,
    PromptRecord,
    RankedList,
    StepLabels,
    load_prompt_dataset,
    read_jsonl,
    write_jsonl,
)


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_round_trip_every_format(tmp_path):
    records = {
        "preference_pairs": [
            PreferencePair("Q: 1+1\n", "1+1=2\nA: 2", "1+1=3\nA: 3", margin=0.5),
            PreferencePair("p", "a", "b", tie=True, fields={"source": "x"}),
        ],
        "ranked_lists": [
            RankedList("p", ["a", "b", "c"], scores=[0.1, 0.9, 0.5]),
            RankedList("p", ["a", "b"], ranking=[1, 0]),
        ],
        "step_labels": [
            StepLabels("p", ["s1", "s2", "A: 3"], [1, 0, 0], first_error=1, correct=False),
            StepLabels("p", ["s1"], [0.25]),
        ],
        "prompts": [PromptRecord("Q: 1+1\n", "2", fields={"uid": "a", "level": 3})],
    }
    for kind, recs in records.items():
        path = tmp_path / f"{kind}.jsonl"
        assert write_jsonl(path, recs) == len(recs)
        assert read_jsonl(path, FORMATS[kind]) == recs
        assert read_jsonl(path, kind) == recs
    # Optional keys left out when unset; extra keys kept at the top level.
    rows = [
        json.loads(line) for line in (tmp_path / "preference_pairs.jsonl").read_text().splitlines()
    ]
    assert rows[0] == {
        "prompt": "Q: 1+1\n",
        "chosen": "1+1=2\nA: 2",
        "rejected": "1+1=3\nA: 3",
        "margin": 0.5,
    }
    assert rows[1] == {"prompt": "p", "chosen": "a", "rejected": "b", "tie": True, "source": "x"}


def test_ranked_order():
    # scores [0.1, 0.9, 0.5] -> best first: 1 (0.9), 2 (0.5), 0 (0.1).
    assert RankedList("p", ["a", "b", "c"], scores=[0.1, 0.9, 0.5]).order() == [1, 2, 0]
    assert RankedList("p", ["a", "b", "c"], ranking=[2, 0, 1]).order() == [2, 0, 1]


def test_number_answers_become_strings_and_soft_labels_are_kept():
    assert PromptRecord.from_json({"prompt": "x", "answer": 17}).answer == "17"
    s = StepLabels.from_json({"prompt": "x", "steps": ["a", "b"], "labels": [True, 0.5]})
    assert s.labels == [1.0, 0.5] and not s.hard


@pytest.mark.parametrize(
    "kind, row, message",
    [
        ("preference_pairs", {"prompt": "p", "chosen": "a"}, "missing field 'rejected'"),
        ("preference_pairs", {"chosen": "a", "rejected": "b"}, "missing field 'prompt'"),
        (
            "preference_pairs",
            {"prompt": "p", "chosen": "a", "rejected": "a"},
            "chosen and rejected are identical",
        ),
        (
            "preference_pairs",
            {"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"},
            "margin must be a number",
        ),
        (
            "preference_pairs",
            {"prompt": "p", "chosen": "a", "rejected": "b", "tie": 1},
            "tie must be true or false",
        ),
        (
            "preference_pairs",
            {"prompt": "p", "chosen": ["a"], "rejected": "b"},
            "chosen must be a string",
        ),
        ("preference_pairs", {"prompt": "p", "chosen": "", "rejected": "b"}, "chosen is empty"),
        ("ranked_lists", {"prompt": "p", "responses": ["a", "b"]}, "needs 'scores' or 'ranking'"),
        ("ranked_lists", {"prompt": "p", "responses": ["a"], "scores": [1]}, "at least 2"),
        (
            "ranked_lists",
            {"prompt": "p", "responses": ["a", "b"], "scores": [1]},
            "list of 2 numbers",
        ),
        (
            "ranked_lists",
            {"prompt": "p", "responses": ["a", "a"], "scores": [1, 2]},
            r"responses\[0\] and responses\[1\] are identical",
        ),
        (
            "ranked_lists",
            {"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]},
            "permutation of 0..1",
        ),
        (
            "ranked_lists",
            {"prompt": "p", "responses": ["a", "b"], "scores": [1, 2], "ranking": [0, 1]},
            "ranking disagrees with scores",
        ),
        (
            "step_labels",
            {"prompt": "p", "steps": ["a", "b"], "labels": [1]},
            "2 steps but 1 labels",
        ),
        (
            "step_labels",
            {"prompt": "p", "steps": ["a"], "labels": [1.5]},
            r"labels\[0\] = 1.5 is outside \[0, 1\]",
        ),
        ("step_labels", {"prompt": "p", "steps": ["a"], "labels": [-0.1]}, "outside"),
        ("step_labels", {"prompt": "p", "steps": ["a"], "labels": ["1"]}, "must be a number"),
        ("step_labels", {"prompt": "p", "steps": [], "labels": []}, "steps is empty"),
        (
            "step_labels",
            {"prompt": "p", "steps": ["a", "b"], "labels": [1, 0], "first_error": 0},
            "first_error = 0 disagrees",
        ),
        (
            "step_labels",
            {"prompt": "p", "steps": ["a"], "labels": [1], "first_error": 5},
            r"index in \[0, 1\]",
        ),
        ("prompts", {"prompt": "p"}, "missing field 'answer'"),
        ("prompts", {"prompt": "", "answer": "1"}, "prompt is empty"),
        ("prompts", {"prompt": "p", "answer": [1]}, "answer must be a string or a number"),
        ("prompts", {"prompt": "p", "answer": None}, "missing field 'answer'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, kind, row, message):
    good = {
        "preference_pairs": {"prompt": "p", "chosen": "x", "rejected": "y"},
        "ranked_lists": {"prompt": "p", "responses": ["x", "y"], "scores": [1, 0]},
        "step_labels": {"prompt": "p", "steps": ["x"], "labels": [1]},
        "prompts": {"prompt": "p", "answer": "1"},
    }[kind]
    # Line 1 good, line 2 blank (skipped but counted), line 3 bad.
    path = _write(tmp_path / "data.jsonl", [good, "", row])
    with pytest.raises(DataFormatError, match=f"^{path}:3: .*{message}"):
        read_jsonl(path, kind)


def test_invalid_json_and_non_objects(tmp_path):
    path = _write(tmp_path / "bad.jsonl", ['{"prompt": "p", "answer": 1}', "{oops"])
    with pytest.raises(DataFormatError, match=f"^{path}:2: invalid JSON"):
        read_jsonl(path, PromptRecord)
    path = _write(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(DataFormatError, match=f"^{path}:1: expected a JSON object, got list"):
        read_jsonl(path, PromptRecord)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataFormatError, match=f"{empty}: no records"):
        read_jsonl(empty, PromptRecord)
    with pytest.raises(DataFormatError, match="cannot read"):
        read_jsonl(tmp_path / "nope.jsonl", PromptRecord)


def test_records_validate_on_construction():
    with pytest.raises(DataFormatError, match="chosen and rejected are identical"):
        PreferencePair("p", "same", "same")
    with pytest.raises(DataFormatError, match="3 steps but 2 labels"):
        StepLabels("p", ["a", "b", "c"], [1, 1])


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.jsonl"

    def records():
        yield PromptRecord("p", "1")
        yield "not a record"

    with pytest.raises(DataFormatError, match="record 1 is a str"):
        write_jsonl(path, records())
    assert os.listdir(tmp_path) == []


def test_load_prompt_dataset_uids_and_fields(tmp_path):
    path = _write(
        tmp_path / "math.jsonl",
        [
            {"prompt": "1+1?", "answer": 2},
            "",
            {"prompt": "2+2?", "answer": "4", "uid": "q7", "topic": "add"},
        ],
    )
    problems = load_prompt_dataset(path)
    assert [p.uid for p in problems] == ["math.jsonl:1", "q7"]
    assert problems[1].fields == {"uid": "q7", "topic": "add"}
    assert problems[0].answer == "2" and problems[0].steps == []
