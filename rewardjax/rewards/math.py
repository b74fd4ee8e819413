"""Verifiable answer rewards: answer extraction, math-verify equivalence, exact and numeric match.

Every reward reads the gold answer from the sample's fields (`answer_key`,
default "answer"; a list of acceptable answers is allowed) and returns 1.0 /
0.0, or None when the gold answer itself is unusable.

Extraction modes (`extract=`), applied to the completion:
  "none"         the whole completion
  "boxed"        the content of the last \\boxed{...} (or \\fbox{...})
  "answer_tag"   the content of the last <answer>...</answer>
  "last_number"  the last number in the text
  "auto"         <answer> tag, else \\boxed, else the whole completion
A completion with nothing to extract scores 0.
"""

from __future__ import annotations

import fractions
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from rewardjax.rewards.base import RewardOutput, register_reward

EXTRACT_MODES = ("none", "boxed", "answer_tag", "last_number", "auto")

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    result = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            result = text[m.end() : i - 1]
    return result


def extract_answer_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the last <tag>...</tag>, stripped, or None."""
    found = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


def extract_last_number(text: str) -> str | None:
    """The last number in the text (thousands commas removed), or None."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def extract_answer(text: str, mode: str = "auto") -> str | None:
    """Extracts the answer span from a completion; see the module docstring."""
    if mode == "none":
        return text
    if mode == "boxed":
        return extract_boxed(text)
    if mode == "answer_tag":
        return extract_answer_tag(text)
    if mode == "last_number":
        return extract_last_number(text)
    if mode == "auto":
        for found in (extract_answer_tag(text), extract_boxed(text)):
            if found is not None:
                return found
        return text
    raise ValueError(f"extract must be one of {EXTRACT_MODES}, got {mode!r}")


def normalize_text(
    s: str, *, lowercase: bool = True, collapse_spaces: bool = True, strip_period: bool = True
) -> str:
    """strip, lowercase, collapse runs of whitespace, drop one trailing '.'."""
    s = s.strip()
    if lowercase:
        s = s.lower()
    if collapse_spaces:
        s = " ".join(s.split())
    if strip_period and s.endswith("."):
        s = s[:-1].rstrip()
    return s


def _golds(field: Mapping[str, Any], answer_key: str) -> list[str] | None:
    gold = field.get(answer_key)
    if gold is None:
        return None
    golds = [gold] if isinstance(gold, str | int | float) else list(gold)
    golds = [str(g) for g in golds if str(g).strip()]
    return golds or None


# math-verify ---------------------------------------------------------------


def _timeouts(parsing_timeout: int, verify_timeout: int) -> tuple[int | None, int | None]:
    # math-verify's timeouts use SIGALRM, which only the main thread may set;
    # elsewhere it raises. In threads the caller's pool deadline applies instead.
    if threading.current_thread() is threading.main_thread():
        return parsing_timeout, verify_timeout
    return None, None


def _parse_gold(gold: str, parsing_timeout):
    from math_verify import parse

    parsed = parse(gold, parsing_timeout=parsing_timeout)
    # Bare LaTeX ("x^2+1", "\\sqrt{2}") needs math delimiters; plain words
    # ("Paris") must not become products of symbols.
    if not parsed and "$" not in gold and any(ch in gold for ch in "\\^_{}"):
        parsed = parse(f"${gold}$", parsing_timeout=parsing_timeout)
    return parsed


def _parse_prediction(text: str, extract: str, parsing_timeout):
    from math_verify import LatexExtractionConfig, LatexNormalizationConfig, parse

    if extract == "auto":
        # TRL's accuracy_reward configuration: \boxed first, no bare-text guessing.
        config = [
            LatexExtractionConfig(
                normalization_config=LatexNormalizationConfig(
                    nits=False,
                    malformed_operators=False,
                    basic_latex=True,
                    boxed="all",
                    units=True,
                ),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            )
        ]
        parsed = parse(text, extraction_config=config, parsing_timeout=parsing_timeout)
        if parsed:
            return parsed, text
        text = extract_answer(text, "auto")  # <answer> tag or the whole text
        return parse(text, parsing_timeout=parsing_timeout), text
    span = extract_answer(text, extract)
    if span is None:
        return [], None
    parsed = parse(span, parsing_timeout=parsing_timeout)
    if not parsed and "$" not in span:
        parsed = parse(f"${span}$", parsing_timeout=parsing_timeout)
    return parsed, span


@register_reward("math_verify_equiv", executor="process")
def math_verify_equiv(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    answer_key: str = "answer",
    extract: str = "auto",
    parsing_timeout: int = 10,
    verify_timeout: int = 5,
) -> RewardOutput:
    """Mathematical equivalence of the extracted answer and the gold: 1[verify(parse(gold), parse(pred))].

    Uses the `math-verify` library (LaTeX and expression parsing, sympy
    equivalence). With extract="auto", \\boxed{} is tried first (TRL's
    configuration), then an <answer> tag or the whole text. An unparseable
    gold answer gives None.

    Args:
      answer_key: field holding the gold answer (a string or list of strings).
      extract: extraction mode (module docstring).
      parsing_timeout: seconds per parse (TRL: 10); applies in a main thread
        (the process pool's workers), see `_timeouts`.
      verify_timeout: seconds per comparison (TRL: 5).

    Returns:
      RewardOutput with scores [B] in {0, 1, None} and the extracted
      prediction as diagnostics["extracted"].

    Source: TRL `accuracy_reward`; verl; "math-verify" (Hugging Face).
    """
    from math_verify import verify

    p_timeout, v_timeout = _timeouts(parsing_timeout, verify_timeout)
    scores, extracted = [], []
    for completion, field in zip(completions, fields):
        golds = _golds(field, answer_key)
        gold_parsed = [g for g in (_parse_gold(x, p_timeout) for x in golds or []) if g]
        if not gold_parsed:
            scores.append(None)
            extracted.append(None)
            continue
        pred, span = _parse_prediction(completion, extract, p_timeout)
        extracted.append(str(pred[-1]) if pred else span)
        if not pred:
            scores.append(0.0)
            continue
        ok = any(verify(g, pred, timeout_seconds=v_timeout) for g in gold_parsed)
        scores.append(float(ok))
    return RewardOutput(scores, diagnostics={"extracted": extracted})


@register_reward("exact_match")
def exact_match(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    answer_key: str = "answer",
    extract: str = "none",
    lowercase: bool = True,
    collapse_spaces: bool = True,
    strip_period: bool = True,
) -> RewardOutput:
    """String equality after normalisation: 1[norm(pred) = norm(gold)].

    norm: strip, lowercase, collapse whitespace, drop a trailing "." (each
    switchable). " Paris." vs "paris" → 1.

    Args:
      answer_key: field holding the gold answer (a string or list of strings).
      extract: extraction mode applied to the completion (module docstring).
      lowercase, collapse_spaces, strip_period: normalisation switches.

    Returns:
      RewardOutput with scores [B] in {0, 1, None (no gold)}.

    Source: tunix and verl exact-match rewards.
    """
    norm = dict(lowercase=lowercase, collapse_spaces=collapse_spaces, strip_period=strip_period)
    scores, extracted = [], []
    for completion, field in zip(completions, fields):
        golds = _golds(field, answer_key)
        span = extract_answer(completion, extract)
        extracted.append(span)
        if golds is None:
            scores.append(None)
        elif span is None:
            scores.append(0.0)
        else:
            pred = normalize_text(span, **norm)
            scores.append(float(any(pred == normalize_text(g, **norm) for g in golds)))
    return RewardOutput(scores, diagnostics={"extracted": extracted})


def parse_number(s: str) -> float | None:
    """A float from "42", "-3.5", "1,234", "1e-3" or "3/4"; None otherwise."""
    s = s.strip().replace(",", "").rstrip(".")
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s[1:-1].strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        return float(fractions.Fraction(s))
    except (ValueError, ZeroDivisionError):
        return None


@register_reward("numeric_match")
def numeric_match(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    answer_key: str = "answer",
    extract: str = "auto",
    atol: float = 1e-6,
    rtol: float = 0.0,
) -> RewardOutput:
    """Numeric equality within tolerance: 1[|pred − gold| ≤ atol + rtol·|gold|].

    For procedural tasks with numeric answers. The prediction is the extracted
    span if it is a number itself ("12", "-3.5", "3/4"), else the last number
    in it (so "auto" finds "<answer>12</answer>", "\\boxed{12}" or the last
    number of the text). A gold answer that is not a number gives None.

    Args:
      answer_key: field holding the gold number (or list of acceptable ones).
      extract: extraction mode applied before taking the last number.
      atol, rtol: absolute and relative tolerance.

    Returns:
      RewardOutput with scores [B] in {0, 1, None}.
    """
    scores, extracted = [], []
    for completion, field in zip(completions, fields):
        golds = _golds(field, answer_key)
        gold_values = [v for v in (parse_number(g) for g in golds or []) if v is not None]
        span = extract_answer(completion, extract)
        pred = None
        if span is not None:
            pred = parse_number(span)
            if pred is None:
                number = extract_last_number(span)
                pred = parse_number(number) if number is not None else None
        extracted.append(pred)
        if not gold_values:
            scores.append(None)
            continue
        if pred is None or not math.isfinite(pred):
            scores.append(0.0)
            continue
        ok = any(abs(pred - g) <= atol + rtol * abs(g) for g in gold_values)
        scores.append(float(ok))
    return RewardOutput(scores, diagnostics={"extracted": extracted})
