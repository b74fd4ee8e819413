"""Judge prompt templates, training targets and strict verdict parsers.

One place for every generative judge (LLM-as-a-judge reward model):

  kind        question asked                        verdict words
  pointwise   is this solution correct?             "Yes" / "No"
  pairwise    which of A and B is correct?          "A" / "B"
  stepwise    is each step correct? (ThinkPRM,      "Step k: correct" / "Step k: wrong",
              GenPRM)                               one line per solution line

Each kind comes with and without a written rationale. Without one, the
judge's whole reply is the verdict (`Yes`, or for stepwise the step lines),
so P("Yes") is read from the next-token distribution right after the prompt.
With one, the reply is free text, then a last line `Verdict: Yes` (stepwise:
reasoning lines interleaved with the step lines, a step line last).

  prompt = pointwise_prompt("Q: 7+5-3\\n", "7+5=12\\n12-3=8\\nA: 8")
  target = pointwise_target(False)                       # "No"
  parse_pointwise("No").value                            # "No"
  parse_pointwise("no").status                           # "parse_failure"

Templates are plain text, the user turn only: the tokenizer's own prompt
format (chat template, system prompt) is applied where the prompt is encoded.
They use printable ASCII and newlines only, so `CharTokenizer` encodes them,
and are short (tiny models see at most 512 positions).

Parsing is strict: a reply is `ok` only when it is exactly in the format; a
missing verdict, two verdicts, text after the verdict, a wrong word (also
"yes") or an empty reply is a `parse_failure`. A failure is never turned into
a verdict here: `verdict_scores` scores it by the caller's `on_failure`
policy and counts it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = [
    "FORMATS",
    "PAIRWISE_WORDS",
    "POINTWISE_WORDS",
    "STEP_WORDS",
    "JudgeFormat",
    "Verdict",
    "failure_count",
    "pairwise_prompt",
    "pairwise_target",
    "parse_pairwise",
    "parse_pointwise",
    "parse_stepwise",
    "pointwise_prompt",
    "pointwise_target",
    "stepwise_prompt",
    "stepwise_target",
    "verdict_score",
    "verdict_scores",
]

# (positive, negative). Single short words whose first tokens differ, so one
# next-token distribution holds P(positive) vs P(negative) (with CharTokenizer:
# "Y" vs "N", "A" vs "B").
POINTWISE_WORDS = ("Yes", "No")
PAIRWISE_WORDS = ("A", "B")
STEP_WORDS = ("correct", "wrong")

VERDICT_PREFIX = "Verdict: "
_VERDICT_MARK = "Verdict:"
_STEP_RE = re.compile(r"^Step (\d{1,4}): (\S+)$")
# Any line that looks like a step verdict, well formed or not: a malformed one
# is a failure, never skipped as rationale.
_STEP_LIKE_RE = re.compile(r"^\s*step\s*\d+\s*:", re.IGNORECASE)

OK = "ok"
PARSE_FAILURE = "parse_failure"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A parsed judge reply.

    Attributes:
      status: "ok" or "parse_failure".
      value: the verdict word ("Yes"/"No", "A"/"B"); for stepwise "Yes" when
        every step is correct, else "No". None on a parse failure.
      step_labels: stepwise only: per step, True = correct.
      first_error: stepwise only: index (0-based) of the first wrong step, or None.
      rationale: the text before the verdict ("" without a rationale).
      reason: why parsing failed ("" when ok).
    """

    status: str
    value: str | None = None
    step_labels: tuple[bool, ...] | None = None
    first_error: int | None = None
    rationale: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def _failure(reason: str) -> Verdict:
    return Verdict(status=PARSE_FAILURE, reason=reason)


# ---------------------------------------------------------------- templates


def _clean(text: str) -> str:
    return text.strip("\n")


def pointwise_prompt(problem: str, solution: str, *, rationale: bool = False) -> str:
    """The user turn asking whether `solution` solves `problem`."""
    ask = (
        "Check each step, then end with Verdict: Yes or Verdict: No."
        if rationale
        else "Is the solution correct? Answer Yes or No."
    )
    return f"Problem:\n{_clean(problem)}\nSolution:\n{_clean(solution)}\n{ask}\n"


def pairwise_prompt(problem: str, a: str, b: str, *, rationale: bool = False) -> str:
    """The user turn asking which of two solutions is correct (better)."""
    ask = (
        "Check both, then end with Verdict: A or Verdict: B."
        if rationale
        else "Which solution is correct? Answer A or B."
    )
    return (
        f"Problem:\n{_clean(problem)}\nSolution A:\n{_clean(a)}\nSolution B:\n{_clean(b)}\n{ask}\n"
    )


def stepwise_prompt(problem: str, solution: str, *, rationale: bool = False) -> str:
    """The user turn asking for one `Step k: correct|wrong` line per solution line."""
    ask = (
        "Check each line; after each, write Step k: correct or Step k: wrong."
        if rationale
        else "For each line write Step k: correct or Step k: wrong."
    )
    return f"Problem:\n{_clean(problem)}\nSolution:\n{_clean(solution)}\n{ask}\n"


# ---------------------------------------------------------------- targets


def _with_rationale(verdict_line: str, rationale: str | None) -> str:
    if rationale is None:
        return verdict_line
    text = rationale.strip()
    if not text:
        raise ValueError("a rationale target needs a non-empty rationale")
    return f"{text}\n{VERDICT_PREFIX}{verdict_line}"


def pointwise_target(correct: bool, *, rationale: str | None = None) -> str:
    """ "Yes"/"No", or `rationale` then "Verdict: Yes"/"Verdict: No"."""
    return _with_rationale(POINTWISE_WORDS[0] if correct else POINTWISE_WORDS[1], rationale)


def pairwise_target(a_better: bool, *, rationale: str | None = None) -> str:
    """ "A"/"B", or `rationale` then "Verdict: A"/"Verdict: B"."""
    return _with_rationale(PAIRWISE_WORDS[0] if a_better else PAIRWISE_WORDS[1], rationale)


def stepwise_target(labels: Sequence[bool], *, rationales: Sequence[str] | None = None) -> str:
    """One "Step k: correct|wrong" line per step (k from 1), each after its rationale line."""
    if not labels:
        raise ValueError("a stepwise target needs at least one step")
    if rationales is not None and len(rationales) != len(labels):
        raise ValueError(f"{len(rationales)} rationales for {len(labels)} steps")
    lines = []
    for k, label in enumerate(labels):
        if rationales is not None:
            note = rationales[k].strip()
            if not note or "\n" in note or _STEP_LIKE_RE.match(note):
                raise ValueError(f"step {k} rationale must be one line of text, got {note!r}")
            lines.append(note)
        lines.append(f"Step {k + 1}: {STEP_WORDS[0] if label else STEP_WORDS[1]}")
    return "\n".join(lines)


# ---------------------------------------------------------------- parsers


def _parse_word(text: str, words: tuple[str, str], rationale: bool) -> Verdict:
    body = text.strip()
    if not body:
        return _failure("empty reply")
    if not rationale:
        if body in words:
            return Verdict(status=OK, value=body)
        return _failure(f"reply is not exactly one of {words}: {body[:40]!r}")
    lines = body.split("\n")
    marks = sum(line.count(_VERDICT_MARK) for line in lines)
    if marks == 0:
        return _failure("no 'Verdict:' line")
    if marks > 1:
        return _failure(f"{marks} verdicts")
    last = lines[-1].strip()
    if not last.startswith(_VERDICT_MARK):
        return _failure("text after the verdict line")
    word = last[len(_VERDICT_MARK) :].strip()
    if word not in words:
        return _failure(f"verdict {word!r} is not one of {words}")
    reasoning = "\n".join(lines[:-1]).strip()
    if not reasoning:
        return _failure("no rationale before the verdict")
    return Verdict(status=OK, value=word, rationale=reasoning)


def parse_pointwise(text: str, *, rationale: bool = False) -> Verdict:
    """Strict parse of a pointwise reply: value "Yes" or "No"."""
    return _parse_word(text, POINTWISE_WORDS, rationale)


def parse_pairwise(text: str, *, rationale: bool = False) -> Verdict:
    """Strict parse of a pairwise reply: value "A" or "B"."""
    return _parse_word(text, PAIRWISE_WORDS, rationale)


def parse_stepwise(text: str, *, rationale: bool = False, num_steps: int | None = None) -> Verdict:
    """Strict parse of a stepwise reply into per-step labels and the first error.

    Step lines must be numbered 1, 2, ... in order, with a verdict word from
    STEP_WORDS; the reply must end with a step line. Without a rationale every
    line is a step line; with one, each step line follows at least one line of
    reasoning. `num_steps`, when given, is the number of step lines required.
    """
    body = text.strip()
    if not body:
        return _failure("empty reply")
    labels: list[bool] = []
    notes: list[str] = []
    pending: list[str] = []
    for line in body.split("\n"):
        m = _STEP_RE.match(line.strip())
        if m is None:
            if _STEP_LIKE_RE.match(line):
                return _failure(f"malformed step line {line.strip()[:40]!r}")
            if not rationale:
                return _failure(f"line is not a step verdict: {line.strip()[:40]!r}")
            if line.strip():
                pending.append(line.strip())
            continue
        if int(m.group(1)) != len(labels) + 1:
            return _failure(f"step {m.group(1)} where step {len(labels) + 1} was expected")
        if m.group(2) not in STEP_WORDS:
            return _failure(f"step verdict {m.group(2)!r} is not one of {STEP_WORDS}")
        if rationale and not pending:
            return _failure(f"no rationale before step {len(labels) + 1}")
        labels.append(m.group(2) == STEP_WORDS[0])
        notes.append(" ".join(pending))
        pending = []
    if not labels:
        return _failure("no step verdicts")
    if pending:
        return _failure("text after the last step verdict")
    if num_steps is not None and len(labels) != num_steps:
        return _failure(f"{len(labels)} step verdicts for {num_steps} steps")
    first_error = next((k for k, label in enumerate(labels) if not label), None)
    return Verdict(
        status=OK,
        value=POINTWISE_WORDS[0] if first_error is None else POINTWISE_WORDS[1],
        step_labels=tuple(labels),
        first_error=first_error,
        rationale="\n".join(notes) if rationale else "",
    )


# ---------------------------------------------------------------- scoring


def verdict_score(verdict: Verdict, *, positive: str, on_failure: str | float) -> float | None:
    """1.0 when the verdict is `positive`, 0.0 for the other word; failures by policy.

    on_failure: "zero" scores a failure 0.0; "exclude" returns None (the caller
    drops the row); a number is the fallback score. There is no silent default.
    """
    if verdict.ok:
        return 1.0 if verdict.value == positive else 0.0
    if on_failure == "zero":
        return 0.0
    if on_failure == "exclude":
        return None
    if isinstance(on_failure, int | float) and not isinstance(on_failure, bool):
        return float(on_failure)
    raise ValueError(f"on_failure must be 'zero', 'exclude' or a number, got {on_failure!r}")


def verdict_scores(
    verdicts: Sequence[Verdict], *, positive: str, on_failure: str | float
) -> tuple[np.ndarray, np.ndarray]:
    """(scores [N] float32, valid [N] bool): excluded failures are NaN and not valid."""
    scores = [verdict_score(v, positive=positive, on_failure=on_failure) for v in verdicts]
    out = np.array([math.nan if s is None else s for s in scores], np.float32)
    return out, np.array([s is not None for s in scores], bool)


def failure_count(verdicts: Sequence[Verdict]) -> int:
    """How many of `verdicts` are parse failures."""
    return sum(not v.ok for v in verdicts)


@dataclasses.dataclass(frozen=True)
class JudgeFormat:
    """One judge format: `kind` ("pointwise" | "pairwise" | "stepwise") and `rationale`.

    `prompt(*texts)` renders (problem, solution) or (problem, a, b);
    `parse(text)` is the strict parser; `words` the (positive, negative)
    verdict words read by a one-pass judge (stepwise: the step words).
    """

    kind: str
    rationale: bool

    @property
    def name(self) -> str:
        return f"{self.kind}_rationale" if self.rationale else self.kind

    @property
    def words(self) -> tuple[str, str]:
        return {"pointwise": POINTWISE_WORDS, "pairwise": PAIRWISE_WORDS}.get(self.kind, STEP_WORDS)

    def prompt(self, *texts: str) -> str:
        render = {
            "pointwise": pointwise_prompt,
            "pairwise": pairwise_prompt,
            "stepwise": stepwise_prompt,
        }[self.kind]
        return render(*texts, rationale=self.rationale)

    def parse(self, text: str, **kwargs) -> Verdict:
        parse = {
            "pointwise": parse_pointwise,
            "pairwise": parse_pairwise,
            "stepwise": parse_stepwise,
        }[self.kind]
        return parse(text, rationale=self.rationale, **kwargs)


FORMATS: dict[str, JudgeFormat] = {
    f.name: f
    for f in (
        JudgeFormat(kind, rationale)
        for kind in ("pointwise", "pairwise", "stepwise")
        for rationale in (False, True)
    )
}
