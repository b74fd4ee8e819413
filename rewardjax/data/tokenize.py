"""Text records to padded token arrays in the layout of the RL batch.

Prompts are left-padded ([B, L]) so that a completion starts at the same column
for every row; completions are right-padded ([B, T]) with `mask` = 1.0 on
completion tokens including the EOS (mechanisms.md §0).

  batch = encode_completions(tok, prompts, completions, max_prompt_len=32, max_completion_len=48)
  batch = encode_steps(tok, prompts, steps, max_prompt_len=32, max_completion_len=48, max_steps=8)
  batch["step_end"]   # [B, S] index into the completion of each step's last token

A row longer than its bucket is an error naming the row: silently cutting a
completion would train on a different text than the one graded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rewardjax.tokenizers import Tokenizer

__all__ = ["encode_completions", "encode_steps"]


def _check_batch(prompts: Sequence[str], other: Sequence, name: str) -> None:
    if isinstance(prompts, str) or isinstance(other, str):
        raise ValueError("pass lists of strings, not a single string")
    if len(prompts) != len(other):
        raise ValueError(f"{len(prompts)} prompts but {len(other)} {name}")
    if not prompts:
        raise ValueError("empty batch")


def _right_pad(
    rows: list[list[int]], length: int, pad_id: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(rows), length), pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.float32)
    for i, r in enumerate(rows):
        if len(r) > length:
            raise ValueError(f"row {i}: {what} has {len(r)} tokens, more than {length}")
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1.0
    return ids, mask


def encode_completions(
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    max_prompt_len: int,
    max_completion_len: int,
    add_eos: bool = True,
    add_bos: bool = False,
) -> dict[str, np.ndarray]:
    """Encodes (prompt, completion) pairs for SFT, DPO, reward models and RL.

    Returns:
      prompt_tokens: [B, L] int32, left-padded with pad_id (L = max_prompt_len).
      prompt_mask: [B, L] float32.
      tokens: [B, T] int32 completion (+ EOS), right-padded (T = max_completion_len).
      mask: [B, T] float32, 1.0 on completion tokens including the EOS.
    """
    _check_batch(prompts, completions, "completions")
    prompt_tokens, prompt_mask = tokenizer.batch_encode(
        prompts, max_length=max_prompt_len, left_pad=True, add_bos=add_bos
    )
    eos = [tokenizer.eos_id] if add_eos else []
    rows = [tokenizer.encode(c) + eos for c in completions]
    tokens, mask = _right_pad(rows, max_completion_len, tokenizer.pad_id, "completion")
    return {
        "prompt_tokens": prompt_tokens,
        "prompt_mask": prompt_mask,
        "tokens": tokens,
        "mask": mask,
    }


def encode_steps(
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    steps: Sequence[Sequence[str]],
    *,
    max_prompt_len: int,
    max_completion_len: int,
    max_steps: int,
    separator: str = "\n",
    add_eos: bool = True,
    add_bos: bool = False,
) -> dict[str, np.ndarray]:
    """Encodes step-split solutions and locates each step's last token (for PRMs).

    The completion is `step_0 + separator + step_1 + ... + step_{S-1}` (+ EOS).
    Each `step_k + separator` is encoded on its own, so step boundaries never
    fall inside a token; a step ends at its separator token, the last step at
    the EOS (or its own last token without EOS).

    Returns:
      The keys of `encode_completions`, plus
      step_end: [B, S] int32 completion index of each step's last token (0 on padding).
      step_mask: [B, S] float32, 1.0 on real steps (S = max_steps).
    """
    _check_batch(prompts, steps, "step lists")
    prompt_tokens, prompt_mask = tokenizer.batch_encode(
        prompts, max_length=max_prompt_len, left_pad=True, add_bos=add_bos
    )
    step_end = np.zeros((len(steps), max_steps), np.int32)
    step_mask = np.zeros((len(steps), max_steps), np.float32)
    rows = []
    for i, row_steps in enumerate(steps):
        if isinstance(row_steps, str) or not row_steps:
            raise ValueError(f"row {i}: steps must be a non-empty list of strings")
        if len(row_steps) > max_steps:
            raise ValueError(f"row {i}: {len(row_steps)} steps, more than max_steps={max_steps}")
        ids: list[int] = []
        for k, step in enumerate(row_steps):
            last = k == len(row_steps) - 1
            piece = tokenizer.encode(step if last else step + separator)
            if last and add_eos:
                piece = [*piece, tokenizer.eos_id]
            if not piece:
                raise ValueError(f"row {i}: step {k} encodes to no tokens")
            ids.extend(piece)
            step_end[i, k] = len(ids) - 1
            step_mask[i, k] = 1.0
        rows.append(ids)
    tokens, mask = _right_pad(rows, max_completion_len, tokenizer.pad_id, "completion")
    return {
        "prompt_tokens": prompt_tokens,
        "prompt_mask": prompt_mask,
        "tokens": tokens,
        "mask": mask,
        "step_end": step_end,
        "step_mask": step_mask,
    }
