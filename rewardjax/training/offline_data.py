"""Offline datasets for the DPO, reward-model and PRM kinds: records → fixed-shape arrays.

A dataset is a JSONL file of its format (`data.train_path`, `data.test_path`)
or, with no path, records generated from the procedural task with exact
labels (`data.num_train`, `data.num_test`; `rewardjax.data.generators`).
It is encoded once into arrays [N, ...] of fixed lengths (one compile for the
whole run), and batches are rows drawn by a `BatchIterator` over row indices
(shuffled per epoch; its state is one integer).

  pairs = load_records(c.data, task, "preference_pairs", split="train", seed=0)
  arrays = encode_pairs(tokenizer, pairs, prompt_length=16, completion_length=48, source="train")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardjax.data import generators
from rewardjax.data.formats import PreferencePair, StepLabels, read_jsonl
from rewardjax.data.iterators import BatchIterator
from rewardjax.data.tokenize import encode_completions, encode_steps
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.model_rewards import check_steps

__all__ = [
    "ArrayBatches",
    "encode_pairs",
    "encode_step_records",
    "first_error_label",
    "load_records",
    "outcome_label",
]


def load_records(data_cfg, task, fmt: str, *, split: str, seed: int) -> list[Any]:
    """Records of `fmt` for `split`: from data.{train,test}_path, else generated from `task`.

    fmt is "preference_pairs", "step_labels" or "ranked_lists".
    """
    path = data_cfg.train_path if split == "train" else data_cfg.test_path
    if path:
        return read_jsonl(path, fmt)
    if task is None:
        raise ValueError(
            f"config data.{split}_path is empty and there is no task to generate {fmt} from"
        )
    num = data_cfg.num_train if split == "train" else data_cfg.num_test
    if fmt == "preference_pairs":
        return generators.preference_pairs(task, num=num, split=split, seed=seed)
    if fmt == "step_labels":
        return generators.step_labels(
            task, num=num, error_rate=data_cfg.error_rate, split=split, seed=seed
        )
    if fmt == "ranked_lists":
        return generators.ranked_lists(task, num=num, num_responses=4, split=split, seed=seed)
    raise ValueError(f"unknown record format {fmt!r}")


def _source_error(source: str, e: Exception, key: str) -> ValueError:
    return ValueError(f"{source}: {e} (raise config {key})")


def encode_pairs(
    tokenizer: Tokenizer,
    pairs: Sequence[PreferencePair],
    *,
    prompt_length: int,
    completion_length: int,
    source: str,
) -> dict[str, np.ndarray]:
    """Arrays of N pairs.

    Returns:
      prompt_tokens, prompt_mask [N, L]; chosen_tokens, chosen_mask,
      rejected_tokens, rejected_mask [N, T] (EOS included); margin [N]
      (0 where absent); tie [N] (1.0 on tie pairs).
    """
    for i, p in enumerate(pairs):
        if not isinstance(p, PreferencePair):
            raise ValueError(f"{source}: record {i} is a {type(p).__name__}, not a PreferencePair")
    prompts = [p.prompt for p in pairs]
    out: dict[str, np.ndarray] = {}
    for side in ("chosen", "rejected"):
        try:
            enc = encode_completions(
                tokenizer,
                prompts,
                [getattr(p, side) for p in pairs],
                max_prompt_len=prompt_length,
                max_completion_len=completion_length,
                add_bos=tokenizer.default_add_bos,
            )
        except ValueError as e:
            raise _source_error(
                f"{source} ({side})", e, "data.prompt_length / data.completion_length"
            ) from None
        out["prompt_tokens"], out["prompt_mask"] = enc["prompt_tokens"], enc["prompt_mask"]
        out[f"{side}_tokens"], out[f"{side}_mask"] = enc["tokens"], enc["mask"]
    out["margin"] = np.array([p.margin or 0.0 for p in pairs], np.float32)
    out["tie"] = np.array([float(p.tie) for p in pairs], np.float32)
    return out


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


def encode_step_records(
    tokenizer: Tokenizer,
    records: Sequence[StepLabels],
    *,
    prompt_length: int,
    completion_length: int,
    max_steps: int,
    separator: str,
    source: str,
) -> dict[str, np.ndarray]:
    """Arrays of N step-labelled solutions.

    Returns:
      the keys of `encode_steps` (prompt_tokens, prompt_mask, tokens, mask,
      step_end, step_mask [N, S]), step_labels [N, S] (hard or soft), outcome
      [N] (`outcome_label`) and first_error [N] (`first_error_label`).
    """
    for i, r in enumerate(records):
        if not isinstance(r, StepLabels):
            raise ValueError(f"{source}: record {i} is a {type(r).__name__}, not a StepLabels")
    check_steps([r.steps for r in records], separator, where=f"{source}: record")
    try:
        out = encode_steps(
            tokenizer,
            [r.prompt for r in records],
            [r.steps for r in records],
            max_prompt_len=prompt_length,
            max_completion_len=completion_length,
            max_steps=max_steps,
            separator=separator,
            add_bos=tokenizer.default_add_bos,
        )
    except ValueError as e:
        raise _source_error(
            source, e, "data.prompt_length / data.completion_length / data.max_steps"
        ) from None
    labels = np.zeros(out["step_mask"].shape, np.float32)
    for i, r in enumerate(records):
        labels[i, : len(r.labels)] = r.labels
    out["step_labels"] = labels
    out["outcome"] = np.array([outcome_label(r) for r in records], np.float32)
    out["first_error"] = np.array([first_error_label(r) for r in records], np.int32)
    return out


class ArrayBatches:
    """Batches of rows of a dict of [N, ...] arrays; resumable (state = next row index).

    Args:
      arrays: the encoded dataset.
      batch_size: rows per batch.
      seed: seed of the per-epoch permutations.
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, batch_size: int, seed: int):
        self.arrays = arrays
        n = next(iter(arrays.values())).shape[0]
        self._rows = BatchIterator(list(range(n)), batch_size=batch_size, seed=seed)

    @property
    def num_rows(self) -> int:
        return self._rows.num_items

    def __next__(self) -> dict[str, np.ndarray]:
        idx = np.asarray(next(self._rows))
        return {k: v[idx] for k, v in self.arrays.items()}

    def get_state(self) -> dict[str, int]:
        return self._rows.get_state()

    def set_state(self, state) -> None:
        self._rows.set_state(state)
