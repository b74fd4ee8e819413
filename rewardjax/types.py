"""Shared containers and the shape glossary.

Shape letters used across the codebase (mechanisms.md §0):
  P  prompts                     G  group size (completions per prompt)
  B  rows = P·G, group-contiguous (row = p·G + g)
  L  prompt tokens (left-padded)  T  completion tokens (right-padded)
  V  vocabulary                  D  model width
  S  reasoning steps per response N  inference candidates
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array
PyTree = Any


class SampleOutput(NamedTuple):
    """What `rewardjax.sampling.generate` returns.

    Attributes:
      tokens: [B, T] int32 completion tokens, right-padded with `pad_id`.
      logprobs: [B, T] float32 log-prob of each sampled token under the
        sampling distribution (after temperature / top-k / top-p), 0 on padding.
      mask: [B, T] float32, 1.0 on completion tokens including the EOS.
      lengths: [B] int32 number of completion tokens (EOS included).
      prompt_index: [B] int32 index of the prompt each row was sampled from.
    """

    tokens: Array
    logprobs: Array
    mask: Array
    lengths: Array
    prompt_index: Array
