"""TFDS builders: build tiny array_record datasets in tmp_path and read them back."""

import math

import pytest
import tensorflow_datasets as tfds

from rewardjax.data import generators
from rewardjax.data.formats import DataFormatError, PreferencePair, StepLabels, write_jsonl
from rewardjax.data.tasks import make_task
from rewardjax.data.tfds_builders import BUILDERS, build_tfds, decode_example, read_tfds


def _by_prompt_and_text(records):
    return sorted(records, key=repr)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_build_and_read_back(tmp_path, kind):
    task = make_task("arithmetic_chain")
    make = {
        "preference_pairs": generators.preference_pairs,
        "ranked_lists": generators.ranked_lists,
        "step_labels": generators.step_labels,
    }[kind]
    train = make(task, num=6)
    test = make(task, num=3, split="test")
    # One split from a JSONL file, one from records in memory.
    write_jsonl(tmp_path / "train.jsonl", train)
    builder = build_tfds(
        kind, {"train": str(tmp_path / "train.jsonl"), "test": test}, data_dir=tmp_path / "tfds"
    )
    assert builder.info.splits["train"].num_examples == 6
    assert builder.info.splits["test"].num_examples == 3
    files = list((tmp_path / "tfds" / BUILDERS[kind].name / "1.0.0").iterdir())
    assert any(".array_record-" in f.name for f in files)
    assert _by_prompt_and_text(read_tfds(kind, data_dir=tmp_path / "tfds")) == _by_prompt_and_text(
        train
    )
    # Plain tfds.data_source, as a grain user would read it.
    source = tfds.data_source(
        BUILDERS[kind].name, split="test", data_dir=str(tmp_path / "tfds"), download=False
    )
    assert len(source) == 3
    assert _by_prompt_and_text(
        [decode_example(kind, source[i]) for i in range(3)]
    ) == _by_prompt_and_text(test)


def test_optional_values_survive(tmp_path):
    pairs = [PreferencePair("p", "a", "b"), PreferencePair("q", "a", "b", margin=2.5, tie=True)]
    steps = [
        StepLabels("p", ["x", "y"], [1, 0.25]),
        StepLabels("q", ["x"], [0], first_error=0, correct=False),
    ]
    build_tfds("preference_pairs", {"train": pairs}, data_dir=tmp_path)
    build_tfds("step_labels", {"train": steps}, data_dir=tmp_path)
    back = {r.prompt: r for r in read_tfds("preference_pairs", data_dir=tmp_path)}
    assert back["p"].margin is None and not back["p"].tie
    assert back["q"].margin == 2.5 and back["q"].tie
    back = {r.prompt: r for r in read_tfds("step_labels", data_dir=tmp_path)}
    assert back["p"] == steps[0] and back["q"] == steps[1]
    assert back["p"].first_error is None and back["p"].correct is None
    assert not math.isnan(back["p"].labels[1])


def test_bad_inputs(tmp_path):
    with pytest.raises(DataFormatError, match="a split has no records"):
        build_tfds("preference_pairs", {"train": []}, data_dir=tmp_path / "a")
    with pytest.raises(DataFormatError, match="record 0 is a StepLabels, expected PreferencePair"):
        build_tfds(
            "preference_pairs", {"train": [StepLabels("p", ["x"], [1])]}, data_dir=tmp_path / "b"
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "a"}\n')
    with pytest.raises(DataFormatError, match=f"{bad}:1: chosen and rejected are identical"):
        build_tfds("preference_pairs", {"train": str(bad)}, data_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()  # failed before writing anything
    with pytest.raises(KeyError, match="unknown TFDS format 'pairs'"):
        build_tfds("pairs", {}, data_dir=tmp_path)
