"""TFDS builders writing the offline formats as array_record (no TensorFlow needed).

  builder = build_tfds("step_labels", {"train": "train.jsonl", "test": records},
                       data_dir="/data/tfds")
  source = tfds.data_source("rewardjax_step_labels", data_dir="/data/tfds")  # or grain
  record = decode_example("step_labels", source["train"][0])

Each split is a JSONL file of the format or a list of records (e.g. from
`rewardjax.data.generators`). Strings are stored as UTF-8 `Text`; extra
`fields` as one JSON string; optional values use sentinels (margin NaN,
first_error −1, correct −1) that `decode_example` turns back into None.
Reading never needs the builder's inputs, so `tfds.data_source(name,
data_dir=...)` works in any process that imported this module.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from rewardjax.data.formats import (
    FORMATS,
    DataFormatError,
    PreferencePair,
    RankedList,
    StepLabels,
    read_jsonl,
)

__all__ = [
    "BUILDERS",
    "PreferencePairsBuilder",
    "RankedListsBuilder",
    "StepLabelsBuilder",
    "build_tfds",
    "decode_example",
    "read_tfds",
]

SplitSource = str | os.PathLike | Sequence[Any]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _records(kind: str, source: SplitSource) -> list[Any]:
    """The validated records of one split: a JSONL path or a list of records."""
    cls = FORMATS[kind]
    if isinstance(source, str | os.PathLike):
        return read_jsonl(source, cls)
    records = list(source)
    if not records:
        raise DataFormatError(f"rewardjax_{kind}: a split has no records (empty dataset)")
    for i, r in enumerate(records):
        if not isinstance(r, cls):
            raise DataFormatError(
                f"rewardjax_{kind}: record {i} is a {type(r).__name__}, expected {cls.__name__}"
            )
    return records


class _JsonlBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery: splits from JSONL paths or record lists, array_record files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First version."}
    KIND: str

    def __init__(self, *, splits: Mapping[str, SplitSource] | None = None, **kwargs: Any):
        self._split_sources = dict(splits or {})
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"rewardjax {self.KIND} records (see rewardjax.data.formats).",
            features=tfds.features.FeaturesDict(self._features()),
        )

    def _features(self) -> dict[str, Any]:
        raise NotImplementedError

    def _encode(self, record: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        del dl_manager
        if not self._split_sources:
            raise DataFormatError(
                f"{self.name}: nothing to build; pass splits={{'train': 'file.jsonl', ...}}"
            )
        return {name: self._generate_examples(src) for name, src in self._split_sources.items()}

    def _generate_examples(self, source: SplitSource):
        for i, record in enumerate(_records(self.KIND, source)):
            yield i, self._encode(record)


class PreferencePairsBuilder(_JsonlBuilder):
    """Preference pairs: prompt, chosen, rejected, margin (NaN if none), tie."""

    name = "rewardjax_preference_pairs"
    KIND = "preference_pairs"

    def _features(self):
        return {
            "prompt": tfds.features.Text(),
            "chosen": tfds.features.Text(),
            "rejected": tfds.features.Text(),
            "margin": np.float64,
            "tie": np.bool_,
            "fields": tfds.features.Text(),
        }

    def _encode(self, r: PreferencePair):
        return {
            "prompt": r.prompt,
            "chosen": r.chosen,
            "rejected": r.rejected,
            "margin": math.nan if r.margin is None else r.margin,
            "tie": r.tie,
            "fields": json.dumps(r.fields),
        }


class RankedListsBuilder(_JsonlBuilder):
    """Ranked lists: prompt, responses[], scores[] (empty if none), ranking[] (empty if none)."""

    name = "rewardjax_ranked_lists"
    KIND = "ranked_lists"

    def _features(self):
        return {
            "prompt": tfds.features.Text(),
            "responses": tfds.features.Sequence(tfds.features.Text()),
            "scores": tfds.features.Sequence(np.float64),
            "ranking": tfds.features.Sequence(np.int32),
            "fields": tfds.features.Text(),
        }

    def _encode(self, r: RankedList):
        return {
            "prompt": r.prompt,
            "responses": r.responses,
            "scores": [] if r.scores is None else r.scores,
            "ranking": [] if r.ranking is None else r.ranking,
            "fields": json.dumps(r.fields),
        }


class StepLabelsBuilder(_JsonlBuilder):
    """Step-labelled solutions: prompt, steps[], labels[], first_error, correct (−1 = none)."""

    name = "rewardjax_step_labels"
    KIND = "step_labels"

    def _features(self):
        return {
            "prompt": tfds.features.Text(),
            "steps": tfds.features.Sequence(tfds.features.Text()),
            "labels": tfds.features.Sequence(np.float64),
            "first_error": np.int32,
            "correct": np.int8,
            "fields": tfds.features.Text(),
        }

    def _encode(self, r: StepLabels):
        return {
            "prompt": r.prompt,
            "steps": r.steps,
            "labels": r.labels,
            "first_error": -1 if r.first_error is None else r.first_error,
            "correct": -1 if r.correct is None else int(r.correct),
            "fields": json.dumps(r.fields),
        }


BUILDERS: dict[str, type[_JsonlBuilder]] = {
    "preference_pairs": PreferencePairsBuilder,
    "ranked_lists": RankedListsBuilder,
    "step_labels": StepLabelsBuilder,
}


def build_tfds(
    kind: str, splits: Mapping[str, SplitSource], *, data_dir: str | os.PathLike
) -> _JsonlBuilder:
    """Builds (or reuses) the `kind` dataset under `data_dir`; returns the prepared builder."""
    if kind not in BUILDERS:
        raise KeyError(f"unknown TFDS format {kind!r}; known: {', '.join(sorted(BUILDERS))}")
    # Validate every split first, so a bad row fails before anything is written.
    splits = {name: _records(kind, source) for name, source in splits.items()}
    builder = BUILDERS[kind](splits=splits, data_dir=os.fspath(data_dir))
    builder.download_and_prepare()
    return builder


def decode_example(kind: str, example: Mapping[str, Any]):
    """A record of `kind` from one example read back through `tfds.data_source`."""
    fields = json.loads(_text(example["fields"]))
    prompt = _text(example["prompt"])
    if kind == "preference_pairs":
        margin = float(example["margin"])
        return PreferencePair(
            prompt=prompt,
            chosen=_text(example["chosen"]),
            rejected=_text(example["rejected"]),
            margin=None if math.isnan(margin) else margin,
            tie=bool(example["tie"]),
            fields=fields,
        )
    if kind == "ranked_lists":
        scores = [float(s) for s in example["scores"]]
        ranking = [int(i) for i in example["ranking"]]
        return RankedList(
            prompt=prompt,
            responses=[_text(s) for s in example["responses"]],
            scores=scores or None,
            ranking=ranking or None,
            fields=fields,
        )
    if kind == "step_labels":
        first_error = int(example["first_error"])
        correct = int(example["correct"])
        return StepLabels(
            prompt=prompt,
            steps=[_text(s) for s in example["steps"]],
            labels=[float(v) for v in example["labels"]],
            first_error=None if first_error < 0 else first_error,
            correct=None if correct < 0 else bool(correct),
            fields=fields,
        )
    raise KeyError(f"unknown TFDS format {kind!r}; known: {', '.join(sorted(BUILDERS))}")


def read_tfds(kind: str, *, data_dir: str | os.PathLike, split: str = "train") -> list[Any]:
    """Every record of one split of a built dataset, in storage order."""
    source = tfds.data_source(
        BUILDERS[kind].name, split=split, data_dir=os.fspath(data_dir), download=False
    )
    return [decode_example(kind, source[i]) for i in range(len(source))]
