r"""Readers for the published formats of the field's datasets: local files → the project's records.

Each reader reads a dataset as it is distributed (JSONL, JSONL.gz, JSON as a
list or {"data": [...]}, or Parquet; local paths, nothing is downloaded) and
yields the records of `rewardjax.data.formats`:

  reader                    yields           mapping
  gsm8k                     PromptRecord     question → prompt; answer "… #### n" → answer n
                                             (commas dropped), the text before #### → reasoning
  math, math500             PromptRecord     problem → prompt; answer column, else the last
                                             \boxed{} of solution → answer; solution, level,
                                             type (subject, unique_id) kept in fields
  humaneval                 PromptRecord     prompt → prompt; canonical_solution → answer;
                                             fields tests=[test], style="function",
                                             entry_point, prefix=prompt (code_tests_sandbox)
  mbpp                      PromptRecord     text (sanitized: prompt) + the tests → prompt
                                             (the MBPP paper's prompt); code → answer; fields
                                             tests = test_list, style="function", prefix =
                                             test_setup_code / test_imports, description
  ultrafeedback_binarized   PreferencePair   prompt; the last assistant message of the
                                             chosen / rejected lists; margin = score_chosen −
                                             score_rejected, tie when equal; the message lists
                                             and prompt_messages kept in fields
  hh_rlhf                   PreferencePair   the transcripts' shared text up to the final
                                             "\n\nAssistant:" → prompt, the two final replies
                                             (prompt + chosen == the chosen transcript);
                                             prompt_messages (user/assistant turns) in fields
  rewardbench               PreferencePair   prompt, chosen, rejected; subset (and id, models)
                                             in fields
  rewardbench2              RankedList       chosen + rejected lists → responses, scores 1.0
                                             (correct) / 0.0; subset, num_correct in fields
                                             (Ties: several correct responses)
  processbench              StepLabels       problem → prompt, steps; label k ≥ 0 → labels
                                             1 before k, 0 from k on, first_error k; label −1 →
                                             all 1, first_error None; final_answer_correct →
                                             correct
  prm800k                   StepLabels       question.problem → prompt; per step the
                                             completion the labeler continued with (the only
                                             one, or the human-written one); rating +1 → 1.0,
                                             0 → `neutral` (1.0 by default: "acceptable"),
                                             −1 → 0.0 and the solution ends there
                                             (first_error); an unrated step ends it too
  math_shepherd             StepLabels       input "question Step 1: … ки\nStep 2: … ки" →
                                             prompt + steps at the ки tags; label (the same
                                             text with + / − for each tag) → 1.0 / 0.0;
                                             first_error = the first −

Every column a reader does not consume is kept in the record's `fields`.

  data = read_published("gsm8k", "gsm8k/test.jsonl")
  data = read_published("gsm8k", "look_alike.parquet", fields={"question": "query"})
  data.records[0].answer, data.where[0], data.skipped

Errors name the file and the row: `path:17` (a JSONL line, 1-based as an
editor counts) or `path: row 16` (JSON and Parquet, 0-based as `datasets`
indexes). A row without one of the reader's fields is an error naming it.
A few published rows cannot form a record by construction (HH-RLHF pairs whose
final replies are identical, an empty reply, a PRM800K problem the labeler
marked bad): those are skipped, counted and logged; a dataset with no usable
row is an error.
"""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rewardjax.data.formats import (
    DataFormatError,
    PreferencePair,
    PromptRecord,
    RankedList,
    StepLabels,
)

__all__ = [
    "READERS",
    "PublishedData",
    "Reader",
    "formats_of",
    "get_reader",
    "iter_rows",
    "prompt_formats",
    "read_published",
]

log = logging.getLogger(__name__)

# The setup.py extra that brings pyarrow (named in the error when it is missing).
PARQUET_EXTRA = "hf"


class _Unusable(Exception):
    """A published row that cannot form a record by construction: skipped and counted."""


# ---------------------------------------------------------------------------
# Files → rows


def iter_rows(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """(where, row) of a local JSONL(.gz), JSON or Parquet file, in file order.

    `where` is "path:line" for JSONL (blank lines skipped) and "path: row i"
    for JSON (a list of rows or {"data": [...]}) and Parquet.
    """
    path = os.fspath(path)
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower()
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no such file")
    if ext == ".parquet":
        yield from _parquet_rows(path)
    elif ext == ".json":
        yield from _json_rows(path)
    elif ext in (".jsonl", ".ndjson"):
        yield from _jsonl_rows(path)
    else:
        raise DataFormatError(
            f"{path}: unknown file type {ext or '(none)'!r}; "
            "published readers read .jsonl, .jsonl.gz, .json and .parquet"
        )


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _jsonl_rows(path: str) -> Iterator[tuple[str, Any]]:
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            yield f"{path}:{lineno}", row


def _json_rows(path: str) -> Iterator[tuple[str, Any]]:
    with _open_text(path) as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise DataFormatError(
            f"{path}: expected a JSON list of rows or an object {{'data': [rows]}}, "
            f"got {type(obj).__name__}"
        )
    for i, row in enumerate(obj):
        yield f"{path}: row {i}", row


def _parquet_rows(path: str) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"{path}: reading Parquet needs pyarrow; install it with "
            f'pip install -e ".[{PARQUET_EXTRA}]" (or pip install pyarrow)'
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own types for a damaged file
        raise DataFormatError(f"{path}: not a readable Parquet file ({e})") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}: row {i}", row


# ---------------------------------------------------------------------------
# Rows → records


class _Row:
    """One row seen through a reader's field names (with the config's renames)."""

    def __init__(self, obj: Mapping[str, Any], reader: Reader, names: Mapping[str, str], where):
        self.obj, self.reader, self.names, self.where = obj, reader, names, where
        self.used: set[str] = set()

    def column(self, key: str) -> str:
        return self.names.get(key, key)

    def _label(self, key: str) -> str:
        col = self.column(key)
        return repr(col) if col == key else f"{col!r} (the reader's {key!r}, renamed)"

    def error(self, key: str, message: str) -> DataFormatError:
        return DataFormatError(f"{self.where}: field {self._label(key)} {message}")

    def has(self, key: str) -> bool:
        return self.obj.get(self.column(key)) is not None

    def get(self, key: str) -> Any:
        """The value of a required field; a missing or null one is an error naming it."""
        col = self.column(key)
        self.used.add(col)
        if self.obj.get(col) is None:
            needs = ", ".join(self.column(k) for k in self.reader.fields)
            raise DataFormatError(
                f"{self.where}: missing field {self._label(key)} "
                f"(the {self.reader.name} reader reads {needs})"
            )
        return self.obj[col]

    def optional(self, key: str, default: Any = None) -> Any:
        col = self.column(key)
        self.used.add(col)
        value = self.obj.get(col)
        return default if value is None else value

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        return value

    def texts(self, key: str) -> list[str]:
        value = self.get(key)
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise self.error(key, f"must be a list of strings, got {type(value).__name__}")
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise self.error(key, f"[{i}] must be a string, got {type(v).__name__}")
        return list(value)

    def number(self, key: str) -> float:
        value = self.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(key, f"must be a finite number, got {value!r}")
        return float(value)

    def rest(self) -> dict[str, Any]:
        """Every column not read so far (kept in the record's fields)."""
        return {k: v for k, v in self.obj.items() if k not in self.used}


@dataclasses.dataclass(frozen=True)
class Reader:
    """A published format.

    Attributes:
      name: the format's name (config `data.reader`, `task.reader`).
      record_type: the record class it yields.
      fields: the columns it reads, by their published names (renamable).
      convert: (row, **options) → record; raises DataFormatError for a bad row
        and _Unusable for a row skipped by construction.
      grader: for prompt readers, how completions are graded: "math"
        (the final answer, math-verify) or "code" (the tests, in the sandbox).
    """

    name: str
    record_type: type
    fields: tuple[str, ...]
    convert: Callable[..., Any]
    grader: str = ""

    @property
    def format(self) -> str:
        """The `formats.FORMATS` key of its records ("prompts", "preference_pairs", ...)."""
        return _FORMAT_OF[self.record_type]


_FORMAT_OF = {
    PromptRecord: "prompts",
    PreferencePair: "preference_pairs",
    RankedList: "ranked_lists",
    StepLabels: "step_labels",
}

READERS: dict[str, Reader] = {}


def _reader(name: str, record_type: type, fields: tuple[str, ...], grader: str = ""):
    def register(fn):
        READERS[name] = Reader(name, record_type, fields, fn, grader)
        return fn

    return register


def _distinct(chosen: str, rejected: str) -> None:
    if not chosen.strip() or not rejected.strip():
        raise _Unusable("an empty response")
    if chosen == rejected:
        raise _Unusable("chosen and rejected are identical")


@_reader("gsm8k", PromptRecord, ("question", "answer"), grader="math")
def _gsm8k(row: _Row) -> PromptRecord:
    question = row.text("question")
    solution = row.text("answer")
    reasoning, sep, final = solution.rpartition("####")
    final = final.strip().replace(",", "")
    if not sep or not final:
        raise row.error("answer", "has no final '#### <answer>' line")
    fields = {**row.rest(), "reasoning": reasoning.strip()}
    return PromptRecord(prompt=question, answer=final, fields=fields)


def _math(row: _Row) -> PromptRecord:
    from rewardjax.rewards.math import extract_boxed

    problem = row.text("problem")
    if row.has("answer"):
        answer = row.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise row.error("answer", f"must be a string or a number, got {answer!r}")
        answer = str(answer)
    else:
        answer = extract_boxed(row.text("solution"))
        if answer is None:
            raise row.error("solution", "has no \\boxed{} answer (and the row has no 'answer')")
        row.used.discard(row.column("solution"))  # the worked solution stays in fields
    return PromptRecord(prompt=problem, answer=answer, fields=row.rest())


READERS["math"] = Reader("math", PromptRecord, ("problem", "solution", "answer"), _math, "math")
READERS["math500"] = dataclasses.replace(READERS["math"], name="math500")


@_reader(
    "humaneval",
    PromptRecord,
    ("task_id", "prompt", "canonical_solution", "test", "entry_point"),
    grader="code",
)
def _humaneval(row: _Row) -> PromptRecord:
    from rewardjax.rewards.code import human_eval_fields

    task_id = row.text("task_id")
    prompt = row.text("prompt")
    problem = {"prompt": prompt, "test": row.text("test"), "entry_point": row.text("entry_point")}
    solution = row.text("canonical_solution")
    fields = {**row.rest(), **human_eval_fields(problem), "uid": task_id, "task_id": task_id}
    return PromptRecord(prompt=prompt, answer=solution, fields=fields)


@_reader(
    "mbpp",
    PromptRecord,
    ("task_id", "text", "code", "test_list", "test_setup_code", "test_imports"),
    grader="code",
)
def _mbpp(row: _Row) -> PromptRecord:
    # The sanitized split names the description `prompt` and its imports
    # `test_imports`; the full split `text` and `test_setup_code`.
    if not row.has("text") and "text" not in row.names and row.obj.get("prompt") is not None:
        row.names = {**row.names, "text": "prompt"}
    task_id = row.get("task_id")
    text = row.text("text")
    code = row.text("code")
    tests = row.texts("test_list")
    if not tests:
        raise row.error("test_list", "is empty")
    setup = row.optional("test_setup_code", "")
    imports = row.optional("test_imports", [])
    if not isinstance(setup, str):
        raise row.error("test_setup_code", f"must be a string, got {type(setup).__name__}")
    if isinstance(imports, str) or not isinstance(imports, list | tuple):
        raise row.error("test_imports", f"must be a list of strings, got {type(imports).__name__}")
    preamble = "\n".join([*imports, setup]).strip()
    # The prompt of the MBPP paper (Austin et al., 2021): the description and its asserts.
    prompt = f"{text}\nYour code should pass these tests:\n\n" + "\n".join(tests) + "\n"
    fields = {
        **row.rest(),
        "uid": str(task_id),
        "task_id": task_id,
        "description": text,
        "tests": tests,
        "style": "function",
    }
    if preamble:
        # Before the completion's program: the tests run in its namespace, and a
        # sanitized solution may use the imports without writing them.
        fields["prefix"] = preamble + "\n"
    return PromptRecord(prompt=prompt, answer=code, fields=fields)


def _messages(row: _Row, key: str) -> list[dict[str, str]]:
    value = row.get(key)
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise row.error(key, "must be a non-empty list of {'role', 'content'} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise row.error(key, f"[{i}] is not a {{'role', 'content'}} message")
        if not isinstance(m.get("content"), str):
            raise row.error(key, f"[{i}] has no string 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "assistant":
        raise row.error(key, f"must end with an assistant message, ends with {out[-1]['role']!r}")
    return out


@_reader(
    "ultrafeedback_binarized",
    PreferencePair,
    ("prompt", "chosen", "rejected", "score_chosen", "score_rejected"),
)
def _ultrafeedback(row: _Row) -> PreferencePair:
    prompt = row.text("prompt")
    chosen, rejected = _messages(row, "chosen"), _messages(row, "rejected")
    margin, tie = None, False
    if row.has("score_chosen") or row.has("score_rejected"):
        score_chosen, score_rejected = row.number("score_chosen"), row.number("score_rejected")
        margin = score_chosen - score_rejected
        tie = score_chosen == score_rejected
    _distinct(chosen[-1]["content"], rejected[-1]["content"])
    fields = {
        **row.rest(),
        "prompt_messages": chosen[:-1],
        "chosen_messages": chosen,
        "rejected_messages": rejected,
    }
    if margin is not None:
        fields.update(score_chosen=score_chosen, score_rejected=score_rejected)
    return PreferencePair(
        prompt=prompt,
        chosen=chosen[-1]["content"],
        rejected=rejected[-1]["content"],
        margin=margin,
        tie=tie,
        fields=fields,
    )


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ASSISTANT = "\n\nAssistant:"


def _hh_split(row: _Row, key: str) -> tuple[str, str]:
    transcript = row.text(key)
    at = transcript.rfind(_HH_ASSISTANT)
    if at < 0:
        raise row.error(key, "has no '\\n\\nAssistant:' turn")
    cut = at + len(_HH_ASSISTANT)
    return transcript[:cut], transcript[cut:]


def _hh_messages(prompt: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(prompt)  # [before, role, text, role, text, ...]
    roles = {"Human": "user", "Assistant": "assistant"}
    turns = [{"role": roles[r], "content": t.strip()} for r, t in zip(parts[1::2], parts[2::2])]
    return turns[:-1]  # the final, empty "Assistant:" turn is the one to generate


@_reader("hh_rlhf", PreferencePair, ("chosen", "rejected"))
def _hh_rlhf(row: _Row) -> PreferencePair:
    prompt, chosen = _hh_split(row, "chosen")
    other, rejected = _hh_split(row, "rejected")
    if prompt != other:
        raise _Unusable("the two transcripts differ before the final reply")
    _distinct(chosen, rejected)
    fields = {**row.rest(), "prompt_messages": _hh_messages(prompt)}
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, fields=fields)


@_reader("rewardbench", PreferencePair, ("prompt", "chosen", "rejected", "subset"))
def _rewardbench(row: _Row) -> PreferencePair:
    prompt, chosen, rejected = row.text("prompt"), row.text("chosen"), row.text("rejected")
    subset = row.text("subset")
    _distinct(chosen, rejected)
    fields = {**row.rest(), "subset": subset}
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, fields=fields)


@_reader("rewardbench2", RankedList, ("prompt", "chosen", "rejected", "subset"))
def _rewardbench2(row: _Row) -> RankedList:
    prompt = row.text("prompt")
    chosen, rejected = row.texts("chosen"), row.texts("rejected")
    subset = row.text("subset")
    if not chosen or not rejected:
        raise row.error("chosen" if not chosen else "rejected", "is empty")
    responses = chosen + rejected
    if len(set(responses)) < len(responses):
        raise _Unusable("two of its responses are identical")
    fields = {**row.rest(), "subset": subset, "num_correct": len(chosen)}
    scores = [1.0] * len(chosen) + [0.0] * len(rejected)
    return RankedList(prompt=prompt, responses=responses, scores=scores, fields=fields)


@_reader("processbench", StepLabels, ("problem", "steps", "label", "final_answer_correct"))
def _processbench(row: _Row) -> StepLabels:
    problem, steps = row.text("problem"), row.texts("steps")
    if not steps:
        raise row.error("steps", "is empty")
    label = row.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
        raise row.error(
            "label", f"must be -1 or a step index in [0, {len(steps) - 1}], got {label!r}"
        )
    correct = row.optional("final_answer_correct")
    if correct is not None and not isinstance(correct, bool):
        raise row.error("final_answer_correct", f"must be true or false, got {correct!r}")
    # ProcessBench labels only the first wrong step; the steps after it are
    # labelled wrong too (they build on it), as the project's generators do.
    first_error = None if label < 0 else label
    labels = [1.0] * len(steps) if label < 0 else [1.0] * label + [0.0] * (len(steps) - label)
    return StepLabels(
        prompt=problem,
        steps=steps,
        labels=labels,
        first_error=first_error,
        correct=correct,
        fields=row.rest(),
    )


def _prm800k_step(row: _Row, i: int, step: Any) -> dict[str, Any] | None:
    """The completion the labeler went on with at step i (None: no decision there)."""
    if not isinstance(step, Mapping):
        raise row.error("label", f"steps[{i}] is not an object")
    completions = step.get("completions") or []
    chosen = step.get("chosen_completion")
    if chosen is not None:
        if not isinstance(chosen, int) or not 0 <= chosen < len(completions):
            raise row.error("label", f"steps[{i}].chosen_completion={chosen!r} is out of range")
        return completions[chosen]
    if step.get("human_completion") is not None:
        # A step the labeler wrote: correct by construction (+1).
        human = step["human_completion"]
        if not isinstance(human, Mapping):
            raise row.error("label", f"steps[{i}].human_completion is not an object")
        return {**human, "rating": 1}
    if len(completions) == 1:
        return completions[0]
    # Several alternatives and none continued: the labeler stopped here; the
    # first one rated -1 is the error that ended the solution.
    return next((c for c in completions if isinstance(c, Mapping) and c.get("rating") == -1), None)


@_reader("prm800k", StepLabels, ("question", "label"))
def _prm800k(row: _Row, *, neutral: float = 1.0) -> StepLabels:
    question, label = row.get("question"), row.get("label")
    if not isinstance(question, Mapping) or not isinstance(question.get("problem"), str):
        raise row.error("question", "must be an object with a string 'problem'")
    if not isinstance(label, Mapping) or not isinstance(label.get("steps"), list):
        raise row.error("label", "must be an object with a list 'steps'")
    finish = label.get("finish_reason")
    if finish in ("bad_problem", "give_up"):
        raise _Unusable(f"finish_reason {finish!r}")
    values = {1: 1.0, 0: neutral, -1: 0.0}
    steps, labels, ratings = [], [], []
    for i, step in enumerate(label["steps"]):
        completion = _prm800k_step(row, i, step)
        if completion is None or completion.get("rating") is None:
            break  # an unrated step: the labelled solution ends before it
        rating = completion["rating"]
        if rating not in values or isinstance(rating, bool):
            raise row.error("label", f"steps[{i}] has rating {rating!r}, not -1, 0 or 1")
        if not isinstance(completion.get("text"), str):
            raise row.error("label", f"steps[{i}] has no string 'text'")
        steps.append(completion["text"])
        labels.append(values[rating])
        ratings.append(rating)
        if rating == -1:
            break  # labelling stops at the first wrong step
    if not steps:
        raise _Unusable("no rated step")
    first_error = len(steps) - 1 if ratings[-1] == -1 else None
    fields = {
        **row.rest(),
        "ratings": ratings,
        "finish_reason": finish,
        "ground_truth_answer": question.get("ground_truth_answer"),
    }
    return StepLabels(
        prompt=question["problem"],
        steps=steps,
        labels=labels,
        first_error=first_error,
        fields=fields,
    )


_SHEPHERD_TAG = "ки"
_SHEPHERD_FIRST_STEP = re.compile(r"Step 1\s*:")


@_reader("math_shepherd", StepLabels, ("input", "label"))
def _math_shepherd(row: _Row) -> StepLabels:
    text, marked = row.text("input"), row.text("label")
    pieces = text.split(_SHEPHERD_TAG)
    if len(pieces) < 2:
        raise row.error("input", f"has no step tag {_SHEPHERD_TAG!r}")
    # `label` is `input` with each tag replaced by one + or - character.
    labels, at = [], 0
    for k, piece in enumerate(pieces[:-1]):
        if marked[at : at + len(piece)] != piece:
            raise row.error("label", f"does not match 'input' before step tag {k}")
        at += len(piece)
        mark = marked[at : at + 1]
        if mark not in ("+", "-"):
            raise row.error("label", f"has {mark!r} at step tag {k}, not '+' or '-'")
        labels.append(1.0 if mark == "+" else 0.0)
        at += 1
    if marked[at:] != pieces[-1]:
        raise row.error("label", "does not match 'input' after the last step tag")
    found = _SHEPHERD_FIRST_STEP.search(pieces[0])
    if found is None:
        raise row.error("input", "has no 'Step 1:' before its first step tag")
    prompt = pieces[0][: found.start()].strip()
    steps = [pieces[0][found.start() :].strip(), *(p.strip() for p in pieces[1:-1])]
    first_error = labels.index(0.0) if 0.0 in labels else None
    return StepLabels(
        prompt=prompt, steps=steps, labels=labels, first_error=first_error, fields=row.rest()
    )


# ---------------------------------------------------------------------------
# Public entry points


@dataclasses.dataclass(frozen=True)
class PublishedData:
    """The records of a published file.

    Attributes:
      records: the usable rows' records, in file order.
      where: "path:line" / "path: row i" of each record.
      skipped: (where, reason) of each row skipped by construction.
    """

    records: list[Any]
    where: list[str]
    skipped: list[tuple[str, str]]


def _check_renames(reader: Reader, fields: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(fields) - set(reader.fields))
    if unknown:
        raise ValueError(
            f"field renames {unknown} are not fields of the {reader.name} reader; "
            f"its fields: {', '.join(reader.fields)}"
        )
    for k, v in fields.items():
        if not isinstance(v, str) or not v:
            raise ValueError(f"field rename {k!r} → {v!r}: the column name must be a string")
    return dict(fields)


def get_reader(name: str) -> Reader:
    """The reader of a published format; an unknown name lists the known ones."""
    if name not in READERS:
        raise ValueError(f"unknown published format {name!r}; known: {', '.join(READERS)}")
    return READERS[name]


def read_published(
    name: str,
    path: str | os.PathLike,
    *,
    fields: Mapping[str, str] | None = None,
    **options,
) -> PublishedData:
    """Reads a local file of the published format `name` into the project's records.

    Args:
      name: a READERS key ("gsm8k", "rewardbench", "math_shepherd", ...).
      path: a .jsonl, .jsonl.gz, .json or .parquet file.
      fields: renames for look-alike datasets, the reader's field → the
        file's column (e.g. {"question": "query"}).
      **options: the reader's own keywords (prm800k: neutral, the label of a
        0-rated step).

    Returns:
      PublishedData: records, their rows, and the rows skipped by construction.
    """
    reader = get_reader(name)
    names = _check_renames(reader, fields or {})
    try:
        inspect.signature(reader.convert).bind(None, **options)
    except TypeError:
        raise ValueError(f"the {name} reader has no option {', '.join(options)}") from None
    path = os.fspath(path)
    records, where, skipped = [], [], []
    for at, obj in iter_rows(path):
        if not isinstance(obj, Mapping):
            raise DataFormatError(f"{at}: expected an object, got {type(obj).__name__}")
        row = _Row(obj, reader, names, at)
        try:
            record = reader.convert(row, **options)
        except _Unusable as e:
            skipped.append((at, str(e)))
            continue
        except DataFormatError as e:
            message = str(e)
            raise DataFormatError(
                message if message.startswith(at) else f"{at}: {message}"
            ) from None
        records.append(record)
        where.append(at)
    if not records and not skipped:
        raise DataFormatError(f"{path}: no rows (empty dataset)")
    if not records:
        at, reason = skipped[0]
        raise DataFormatError(
            f"{path}: no usable rows: all {len(skipped)} skipped (first: {at}: {reason})"
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d rows of the %s format (first: %s: %s)",
            path,
            len(skipped),
            len(skipped) + len(records),
            name,
            *skipped[0],
        )
    return PublishedData(records, where, skipped)


def formats_of(fmt: str) -> list[str]:
    """The published formats whose records are of the `formats.FORMATS` key `fmt`."""
    return [n for n, r in READERS.items() if r.format == fmt]


def prompt_formats() -> list[str]:
    """The formats that yield prompts with gold answers or tests (RL, evaluation)."""
    return [n for n, r in READERS.items() if r.record_type is PromptRecord]
