"""Offline data formats: JSONL records for preference, ranking, step-label and prompt data.

One JSON object per line:

  preference pairs   {"prompt", "chosen", "rejected", "margin"?: float, "tie"?: bool}
  ranked lists       {"prompt", "responses": [str], "scores"?: [float], "ranking"?: [int]}
  step labels        {"prompt", "steps": [str], "labels": [0/1 or float in [0, 1]],
                      "first_error"?: int, "correct"?: bool}
  prompts            {"prompt", "answer", ...any other keys kept as fields}
  ratings            {"prompt", "response", "ratings": {name: float} or [float]}
  demonstrations     {"prompt", "response", ...any other keys kept as fields}, or a
                     conversation {"messages": [{"role", "content"}, ...]} that
                     `read_demonstrations` splits into one per assistant turn

Any other keys of the first three are kept in `fields` and written back.

  pairs = read_jsonl("pairs.jsonl", PreferencePair)
  write_jsonl("out.jsonl", pairs)

A bad row raises `DataFormatError` naming the file and line
(`pairs.jsonl:17: chosen and rejected are identical`); writing goes to a
temporary file renamed into place, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from rewardjax.data.tasks.base import Problem
from rewardjax.tokenizers import TokenizerError, checked_message, plain_transcript

__all__ = [
    "FORMATS",
    "DataFormatError",
    "Demonstration",
    "PreferencePair",
    "PromptRecord",
    "RankedList",
    "Ratings",
    "StepLabels",
    "conversation_demonstrations",
    "load_prompt_dataset",
    "read_demonstrations",
    "read_jsonl",
    "write_jsonl",
]


class DataFormatError(ValueError):
    """A record that does not fit its format; the message names file and line."""


def _string(value: Any, name: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise DataFormatError(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataFormatError(f"{name} is empty")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataFormatError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataFormatError(f"{name} must be finite, got {value!r}")
    return float(value)


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise DataFormatError(f"{name} must be a list of strings, got {type(value).__name__}")
    return [_string(v, f"{name}[{i}]") for i, v in enumerate(value)]


class _Record:
    """Shared JSON conversion: declared fields, plus unknown keys kept in `fields`."""

    REQUIRED: ClassVar[tuple[str, ...]]
    OPTIONAL: ClassVar[tuple[str, ...]]

    @classmethod
    def from_json(cls, obj: Any, where: str = "record"):
        """Builds a record from a parsed JSON object; errors are prefixed by `where`."""
        if not isinstance(obj, Mapping):
            raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in cls.REQUIRED if obj.get(k) is None]
        if missing:
            raise DataFormatError(
                f"{where}: missing field{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} (a {cls.__name__} needs "
                f"{', '.join(cls.REQUIRED)})"
            )
        known = set(cls.REQUIRED) | set(cls.OPTIONAL)
        kwargs = {k: obj[k] for k in known if k in obj and obj[k] is not None}
        extra = {k: v for k, v in obj.items() if k not in known}
        if "fields" in obj:
            raise DataFormatError(f"{where}: 'fields' is a reserved key")
        try:
            return cls(**kwargs, fields=extra)
        except DataFormatError as e:
            raise DataFormatError(f"{where}: {e}") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record (None-valued optional keys omitted)."""
        out: dict[str, Any] = {}
        for k in (*self.REQUIRED, *self.OPTIONAL):
            v = getattr(self, k)
            if v is not None:
                out[k] = list(v) if isinstance(v, tuple) else v
        out.update(self.fields)
        return out


@dataclasses.dataclass(frozen=True)
class PreferencePair(_Record):
    """A preferred and a dispreferred response to one prompt.

    Attributes:
      prompt: the shared context.
      chosen, rejected: the two responses; identical texts are an error.
      margin: optional preference strength (e.g. a score difference), finite.
      tie: the two responses are equally good (tie-aware losses).
      fields: any other keys of the JSON row.
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float | None = None
    tie: bool = False
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("prompt", "chosen", "rejected")
    OPTIONAL: ClassVar = ("margin", "tie")

    def __post_init__(self):
        _string(self.prompt, "prompt")
        _string(self.chosen, "chosen", allow_empty=False)
        _string(self.rejected, "rejected", allow_empty=False)
        if self.chosen == self.rejected:
            raise DataFormatError("chosen and rejected are identical")
        if self.margin is not None:
            object.__setattr__(self, "margin", _number(self.margin, "margin"))
        if not isinstance(self.tie, bool):
            raise DataFormatError(f"tie must be true or false, got {self.tie!r}")

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if not self.tie:
            out.pop("tie")
        return out


@dataclasses.dataclass(frozen=True)
class RankedList(_Record):
    """Several responses to one prompt with scores and/or a ranking.

    Attributes:
      prompt: the shared context.
      responses: N >= 2 distinct responses.
      scores: N finite scores, higher is better (ties allowed).
      ranking: a permutation of 0..N-1, best response first; when given with
        scores, scores must not increase along it.
      fields: any other keys of the JSON row.
    """

    prompt: str
    responses: list[str]
    scores: list[float] | None = None
    ranking: list[int] | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("prompt", "responses")
    OPTIONAL: ClassVar = ("scores", "ranking")

    def __post_init__(self):
        _string(self.prompt, "prompt")
        responses = _strings(self.responses, "responses")
        n = len(responses)
        if n < 2:
            raise DataFormatError(f"responses needs at least 2 entries, got {n}")
        seen: dict[str, int] = {}
        for i, r in enumerate(responses):
            if r in seen:
                raise DataFormatError(f"responses[{seen[r]}] and responses[{i}] are identical")
            seen[r] = i
        object.__setattr__(self, "responses", responses)
        if self.scores is None and self.ranking is None:
            raise DataFormatError("needs 'scores' or 'ranking'")
        if self.scores is not None:
            if not isinstance(self.scores, list | tuple) or len(self.scores) != n:
                raise DataFormatError(f"scores must be a list of {n} numbers (one per response)")
            scores = [_number(s, f"scores[{i}]") for i, s in enumerate(self.scores)]
            object.__setattr__(self, "scores", scores)
        if self.ranking is not None:
            ranking = self.ranking
            if (
                not isinstance(ranking, list | tuple)
                or any(isinstance(r, bool) or not isinstance(r, int) for r in ranking)
                or sorted(ranking) != list(range(n))
            ):
                raise DataFormatError(
                    f"ranking must be a permutation of 0..{n - 1}, got {ranking!r}"
                )
            object.__setattr__(self, "ranking", list(ranking))
            if self.scores is not None:
                ordered = [self.scores[i] for i in ranking]
                if any(a < b for a, b in itertools.pairwise(ordered)):
                    raise DataFormatError("ranking disagrees with scores (scores rise along it)")

    def order(self) -> list[int]:
        """Response indices, best first (the ranking, or scores descending, stable)."""
        if self.ranking is not None:
            return list(self.ranking)
        return sorted(range(len(self.responses)), key=lambda i: -self.scores[i])


@dataclasses.dataclass(frozen=True)
class StepLabels(_Record):
    """A solution split into steps, with a label per step.

    Attributes:
      prompt: the problem.
      steps: S >= 1 step texts, in order.
      labels: S labels, hard (0/1) or soft (in [0, 1]: e.g. a Monte Carlo
        estimate of reaching the right answer from this step).
      first_error: index of the first wrong step; S means "every written step
        is right but the solution is incomplete"; None when unknown or when
        there is none. With hard labels it must agree with them.
      correct: whether the final answer is right, when known.
      fields: any other keys of the JSON row.
    """

    prompt: str
    steps: list[str]
    labels: list[float]
    first_error: int | None = None
    correct: bool | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("prompt", "steps", "labels")
    OPTIONAL: ClassVar = ("first_error", "correct")

    def __post_init__(self):
        _string(self.prompt, "prompt")
        steps = _strings(self.steps, "steps")
        if not steps:
            raise DataFormatError("steps is empty")
        object.__setattr__(self, "steps", steps)
        if not isinstance(self.labels, list | tuple):
            raise DataFormatError(f"labels must be a list, got {type(self.labels).__name__}")
        if len(self.labels) != len(steps):
            raise DataFormatError(
                f"{len(steps)} steps but {len(self.labels)} labels (one label per step)"
            )
        labels = []
        for i, label in enumerate(self.labels):
            value = float(label) if isinstance(label, bool) else _number(label, f"labels[{i}]")
            if not 0.0 <= value <= 1.0:
                raise DataFormatError(f"labels[{i}] = {label!r} is outside [0, 1]")
            labels.append(value)
        object.__setattr__(self, "labels", labels)
        fe = self.first_error
        if fe is not None:
            if isinstance(fe, bool) or not isinstance(fe, int) or not 0 <= fe <= len(steps):
                raise DataFormatError(
                    f"first_error must be an index in [0, {len(steps)}] or null, got {fe!r}"
                )
            if self.hard and (
                any(v != 1.0 for v in labels[:fe]) or (fe < len(steps) and labels[fe] != 0.0)
            ):
                raise DataFormatError(f"first_error = {fe} disagrees with labels {labels}")
        if self.correct is not None and not isinstance(self.correct, bool):
            raise DataFormatError(f"correct must be true, false or null, got {self.correct!r}")

    @property
    def hard(self) -> bool:
        """Every label is exactly 0 or 1."""
        return all(v in (0.0, 1.0) for v in self.labels)


@dataclasses.dataclass(frozen=True)
class Ratings(_Record):
    """One response to a prompt with numeric ratings of named attributes.

    Attributes:
      prompt: the context.
      response: the rated response.
      ratings: {attribute: finite number} (e.g. {"helpfulness": 3,
        "correctness": 4}; an absent attribute is unrated), or a list of
        finite numbers in the order of the attributes the reader names.
      fields: any other keys of the JSON row.
    """

    prompt: str
    response: str
    ratings: dict[str, float] | list[float]
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("prompt", "response", "ratings")
    OPTIONAL: ClassVar = ()

    def __post_init__(self):
        _string(self.prompt, "prompt")
        _string(self.response, "response", allow_empty=False)
        r = self.ratings
        if isinstance(r, Mapping):
            if not r:
                raise DataFormatError("ratings is empty")
            ratings = {
                _string(k, "ratings key"): _number(v, f"ratings[{k!r}]") for k, v in r.items()
            }
        elif isinstance(r, list | tuple):
            if not r:
                raise DataFormatError("ratings is empty")
            ratings = [_number(v, f"ratings[{i}]") for i, v in enumerate(r)]
        else:
            raise DataFormatError(
                f"ratings must be an object of named numbers or a list, got {type(r).__name__}"
            )
        object.__setattr__(self, "ratings", ratings)

    def values(self, attributes: Sequence[str]) -> tuple[list[float], list[float]]:
        """(ratings, present) in the order of `attributes`.

        A list must hold one rating per attribute; an object may rate others
        too (ignored) and leave some out (present 0.0, value 0.0).
        """
        if isinstance(self.ratings, list):
            if len(self.ratings) != len(attributes):
                raise DataFormatError(
                    f"{len(self.ratings)} ratings for {len(attributes)} attributes "
                    f"({', '.join(attributes)})"
                )
            return list(self.ratings), [1.0] * len(attributes)
        values = [self.ratings.get(a, 0.0) for a in attributes]
        return values, [float(a in self.ratings) for a in attributes]


@dataclasses.dataclass(frozen=True)
class PromptRecord(_Record):
    """A prompt with its gold answer, for RL and evaluation.

    Attributes:
      prompt: the text given to the model.
      answer: the gold answer (numbers are converted to strings).
      fields: every other key of the JSON row, passed to reward functions.
    """

    prompt: str
    answer: str
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("prompt", "answer")
    OPTIONAL: ClassVar = ()

    def __post_init__(self):
        _string(self.prompt, "prompt", allow_empty=False)
        answer = self.answer
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise DataFormatError(f"answer must be a string or a number, got {answer!r}")
        object.__setattr__(self, "answer", answer if isinstance(answer, str) else str(answer))

    def to_problem(self, uid: str) -> Problem:
        """A Problem without reference steps (`uid` from the row, else the given one)."""
        return Problem(
            prompt=self.prompt,
            answer=self.answer,
            steps=[],
            uid=str(self.fields.get("uid", uid)),
            fields=dict(self.fields),
        )


@dataclasses.dataclass(frozen=True)
class Demonstration(_Record):
    """A prompt and the response to imitate, for SFT.

    Attributes:
      prompt: the text given to the model.
      response: the completion trained on (EOS is appended when encoded).
      fields: every other key of the JSON row.
    """

    prompt: str
    response: str
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    REQUIRED: ClassVar = ("prompt", "response")
    OPTIONAL: ClassVar = ()

    def __post_init__(self):
        _string(self.prompt, "prompt", allow_empty=False)
        _string(self.response, "response", allow_empty=False)


def conversation_demonstrations(obj: Any, where: str = "record") -> list[Demonstration]:
    """One Demonstration per assistant turn of a `{"messages": [...]}` row.

    Turn k's prompt is the conversation before it (kept as
    `fields["prompt_messages"]`, which a chat-templated run renders; `prompt`
    holds its plain transcript for a run without a template) and its response
    is the turn's content. Training on every turn this way puts the loss on
    the assistant turns only, each read in the context the template gives it.
    """
    messages = obj.get("messages") if isinstance(obj, Mapping) else None
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(f"{where}: 'messages' must be a non-empty list of messages")
    rest = {k: v for k, v in obj.items() if k != "messages"}
    try:
        messages = [checked_message(m, k) for k, m in enumerate(messages)]
    except TokenizerError as e:
        raise DataFormatError(f"{where}: {e}") from None
    out = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        history = messages[:k]
        if not any(m["role"] == "user" for m in history):
            raise DataFormatError(f"{where}: assistant message {k} follows no user message")
        fields = {**rest, "prompt_messages": history, "turn": k}
        try:
            out.append(Demonstration(plain_transcript(history), message["content"], fields))
        except DataFormatError as e:
            raise DataFormatError(f"{where}: message {k}: {e}") from None
    if not out:
        raise DataFormatError(f"{where}: the conversation has no assistant message to train on")
    return out


def read_demonstrations(path: str | os.PathLike) -> list[Demonstration]:
    """SFT demonstrations: `{"prompt", "response"}` rows and `{"messages": [...]}` conversations.

    A conversation gives one demonstration per assistant turn
    (`conversation_demonstrations`).
    """
    path = os.fspath(path)
    out: list[Demonstration] = []
    for where, obj in _json_lines(path):
        if isinstance(obj, Mapping) and "messages" in obj and "response" not in obj:
            out.extend(conversation_demonstrations(obj, where))
        else:
            out.append(Demonstration.from_json(obj, where))
    if not out:
        raise DataFormatError(f"{path}: no records (empty dataset)")
    return out


FORMATS: dict[str, type[_Record]] = {
    "preference_pairs": PreferencePair,
    "ranked_lists": RankedList,
    "ratings": Ratings,
    "step_labels": StepLabels,
    "prompts": PromptRecord,
    "demonstrations": Demonstration,
}

R = TypeVar("R", bound=_Record)


def read_jsonl(path: str | os.PathLike, record_type: type[R] | str) -> list[R]:
    """Reads and validates a JSONL file; blank lines are skipped.

    Args:
      path: the file.
      record_type: a record class or its FORMATS key ("preference_pairs", ...).

    Returns:
      The records, in file order. An empty file is an error.
    """
    cls = FORMATS[record_type] if isinstance(record_type, str) else record_type
    records = [cls.from_json(obj, where) for where, obj in _json_lines(os.fspath(path))]
    if not records:
        raise DataFormatError(f"{path}: no records (empty dataset)")
    return records


def _json_lines(path: str) -> Iterator[tuple[str, Any]]:
    """("path:line", parsed object) of each non-blank line."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{where}: invalid JSON ({e.msg})") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[_Record]) -> int:
    """Writes records as JSONL, atomically; returns the number written."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                if not isinstance(record, _Record):
                    raise DataFormatError(
                        f"{path}: record {n} is a {type(record).__name__}, not a data record"
                    )
                f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def load_prompt_dataset(path: str | os.PathLike) -> list[Problem]:
    """A JSONL prompt dataset as Problems; uid is the row's `uid` or `<file>:<line>`."""
    path = os.fspath(path)
    name = os.path.basename(path)
    problems = []
    with open(path, encoding="utf-8") as f:
        linenos = [i for i, line in enumerate(f, start=1) if line.strip()]
    for lineno, record in zip(linenos, read_jsonl(path, PromptRecord)):
        problems.append(record.to_problem(f"{name}:{lineno}"))
    return problems


def records_of(kind: str, objects: Sequence[Mapping[str, Any]]) -> list[_Record]:
    """Validates already-parsed rows (e.g. from another loader) as `kind` records."""
    cls = FORMATS[kind]
    return [cls.from_json(obj, f"row {i}") for i, obj in enumerate(objects)]
