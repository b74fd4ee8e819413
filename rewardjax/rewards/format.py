"""Format rewards: tag structure of a completion."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rewardjax.rewards.base import register_reward


@register_reward("format_think")
def format_think(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    open_tag: str = "<think>",
    close_tag: str = "</think>",
    think_in_prompt: bool = False,
    require_answer: bool = False,
) -> list[float]:
    """1 if exactly one think block opens the completion, else 0.

    r = 1[the completion starts with `open_tag`, holds exactly one `open_tag`
    and one `close_tag`, in that order]. Two blocks → 0.

    Args:
      open_tag, close_tag: the block's tags.
      think_in_prompt: the chat template already opened the block at the end of
        the prompt: the completion must hold exactly one `close_tag` and no
        `open_tag`.
      require_answer: also require non-blank text after `close_tag`.

    Returns:
      [B] scores in {0, 1}.

    Source: TRL `think_format_reward`; strict formats in BR-RM and SPARK.
    """
    scores = []
    for c in completions:
        text = c.strip()
        n_open, n_close = text.count(open_tag), text.count(close_tag)
        if think_in_prompt:
            ok = n_open == 0 and n_close == 1
        else:
            ok = (
                text.startswith(open_tag)
                and n_open == 1
                and n_close == 1
                and text.index(close_tag) > text.index(open_tag)
            )
        if ok and require_answer:
            ok = bool(text.split(close_tag, 1)[1].strip())
        scores.append(float(ok))
    return scores


@register_reward("format_pattern")
def format_pattern(
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Sequence[Mapping[str, Any]],
    *,
    pattern: str = r"<think>.*?</think>\s*<answer>.*?</answer>",
    full_match: bool = True,
    strip: bool = True,
) -> list[float]:
    """1 if the completion matches a configurable regex (DOTALL), else 0.

    The default pattern is the R1 format "<think>…</think><answer>…</answer>".

    Args:
      pattern: Python regular expression, compiled with re.DOTALL.
      full_match: the whole completion must match (else: a match anywhere).
      strip: strip surrounding whitespace first.

    Returns:
      [B] scores in {0, 1}.

    Source: DeepSeek-R1 format reward; TRL `format_reward`.
    """
    regex = re.compile(pattern, re.DOTALL)
    match = regex.fullmatch if full_match else regex.search
    return [float(match(c.strip() if strip else c) is not None) for c in completions]
