"""Step-by-step solutions as text: splitting, checking, locating step ends, reading labels.

A solution's steps are its text split at a separator ("\\n" by default); a
step must not contain the separator. A PRM reads its score at each step's
last token (the separator; the EOS for the last step).

  steps = split_steps(completion, "\\n")
  check_steps([steps], "\\n")                      # one-line error for a step list a PRM cannot read
  step_end, step_mask = policy_step_ends(tok, tokens, lengths, [len(steps)], "\\n", max_steps=8)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rewardjax.data.formats import StepLabels
from rewardjax.tokenizers import Tokenizer

__all__ = [
    "check_separator_token",
    "check_steps",
    "first_error_label",
    "outcome_label",
    "policy_step_ends",
    "split_steps",
]


def split_steps(text: str, separator: str = "\n") -> list[str]:
    """A completion's steps: its text split at `separator` (surrounding blank text removed)."""
    return text.strip().split(separator)


def check_steps(steps: Sequence[Sequence[str]], separator: str, *, where: str = "row") -> None:
    """Raises a one-line error for a step list a PRM cannot read.

    A step that contains the separator means the solution was not split at its
    separators (the PRM would see more step ends than there are labels).
    """
    if not separator:
        raise ValueError("the step separator is empty: a PRM reads its score at separator tokens")
    for i, row in enumerate(steps):
        if isinstance(row, str) or not row:
            raise ValueError(f"{where} {i}: steps must be a non-empty list of strings")
        for k, step in enumerate(row):
            if separator in step:
                raise ValueError(
                    f"{where} {i}: step {k} contains the step separator {separator!r} "
                    f"(missing split: one label per separated step), text {step[:40]!r}"
                )


def check_separator_token(tokenizer: Tokenizer, separator: str) -> None:
    """The separator must end a token when appended to a step (encode_steps relies on it)."""
    ids = tokenizer.encode("1" + separator)
    if not ids or separator not in tokenizer.decode(ids[-1:], skip_special=False):
        raise ValueError(
            f"tokenizer {tokenizer.source}: the step separator {separator!r} does not end in "
            "its own token, so step ends cannot be located"
        )


def policy_step_ends(
    tokenizer: Tokenizer,
    tokens: np.ndarray,  # [B, T] completion tokens of the policy
    lengths: np.ndarray,  # [B] completion lengths (EOS included)
    num_steps: Sequence[int],  # [B] steps scored for each completion
    separator: str,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Token index of each step's last token in the policy's own tokens.

    The steps are those of `split_steps(decoded text)`. Step k ends at the
    token holding the k-th separator of the stripped text; the last step of
    the text ends at the last completion token (the EOS when present).

    Returns:
      step_end: [B, max_steps] int32; step_mask: [B, max_steps] float32.
    """
    tokens = np.asarray(tokens)
    b = tokens.shape[0]
    step_end = np.zeros((b, max_steps), np.int32)
    step_mask = np.zeros((b, max_steps), np.float32)
    pieces: dict[int, str] = {}
    for i in range(b):
        length = int(lengths[i])
        s = min(int(num_steps[i]), max_steps)
        if length == 0 or s == 0:
            continue
        row = [int(t) for t in tokens[i, :length]]
        for tok in row:
            if tok not in pieces:
                pieces[tok] = tokenizer.decode([tok])
        text = "".join(pieces[tok] for tok in row)
        token_end = np.cumsum([len(pieces[tok]) for tok in row])  # exclusive char end per token
        lead = len(text) - len(text.lstrip())
        stripped = text.strip()
        seps, at = [], stripped.find(separator)
        while at >= 0 and len(seps) < s:
            seps.append(lead + at)
            at = stripped.find(separator, at + len(separator))
        ends = [int(np.searchsorted(token_end, c, side="right")) for c in seps]
        ends = [min(e, length - 1) for e in ends]
        # The last scored step ends at its separator when later steps were cut off.
        ends = ends[:s] if len(ends) >= s else [*ends, length - 1]
        step_end[i, : len(ends)] = ends
        step_mask[i, : len(ends)] = 1.0
    return step_end, step_mask


def outcome_label(record: StepLabels) -> float:
    """The outcome of a step-labelled solution: `correct` when given, else its last step label."""
    return float(record.correct) if record.correct is not None else float(record.labels[-1])


def first_error_label(record: StepLabels) -> int:
    """ProcessBench label: index of the first erroneous step, −1 when every step is correct.

    Uses `first_error` when given (an incomplete-but-correct solution, first_error
    = S, counts as −1), else the first label below ½.
    """
    if record.first_error is not None:
        return -1 if record.first_error >= len(record.steps) else int(record.first_error)
    below = [k for k, v in enumerate(record.labels) if v < 0.5]
    return below[0] if below else -1
