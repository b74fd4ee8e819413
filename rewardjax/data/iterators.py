"""Deterministic, resumable batch iterators whose state is one integer.

  it = PromptIterator(task, batch_size=16, split="train", seed=0)
  problems = next(it)                 # list[Problem] of 16
  state = it.get_state()              # {"index": 16, "seed": 0}: save with the checkpoint
  it = PromptIterator(task, batch_size=16, seed=0).set_state(state)   # resumes exactly

Item i of the stream is a pure function of (source, seed, i):
- a procedural task gives `task.problem(i, split=..., seed=...)` (an endless stream);
- a finite sequence (a JSONL dataset, a list of records) is read in epochs,
  each a permutation seeded by (seed, epoch), or in order with shuffle=False.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from rewardjax.data.formats import load_prompt_dataset
from rewardjax.data.generators import example_rng
from rewardjax.data.tasks.base import Problem, Task

__all__ = ["BatchIterator", "DemonstrationIterator", "PromptIterator"]

T = TypeVar("T")


class BatchIterator(Generic[T]):
    """Batches of items from an indexable source; state = the next item index.

    Args:
      source: a sequence (finite, read in epochs) or a function index -> item
        (endless).
      batch_size: items per batch.
      seed: seed of the per-epoch permutations.
      shuffle: permute each epoch of a finite source.
    """

    def __init__(
        self,
        source: Sequence[T] | Callable[[int], T],
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not callable(source) and len(source) == 0:
            raise ValueError("the data source is empty (an empty dataset)")
        self._source = source
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.index = 0
        self._epoch = -1
        self._perm: np.ndarray | None = None

    @property
    def num_items(self) -> int | None:
        """Items per epoch, or None for an endless source."""
        return None if callable(self._source) else len(self._source)

    @property
    def epoch(self) -> int:
        """The epoch the next item comes from (0 for endless sources)."""
        n = self.num_items
        return 0 if n is None else self.index // n

    def item(self, index: int) -> T:
        """Item `index` of the stream (independent of the iterator's position)."""
        if callable(self._source):
            return self._source(index)
        n = len(self._source)
        epoch, position = divmod(index, n)
        if not self.shuffle:
            return self._source[position]
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._epoch = epoch
        return self._source[int(self._perm[position])]

    def __iter__(self) -> BatchIterator[T]:
        return self

    def __next__(self) -> list[T]:
        batch = [self.item(i) for i in range(self.index, self.index + self.batch_size)]
        self.index += self.batch_size
        return batch

    def get_state(self) -> dict[str, int]:
        """JSON-serialisable position: `{"index": next item, "seed": seed}`."""
        return {"index": self.index, "seed": self.seed}

    def set_state(self, state: Mapping[str, Any]) -> BatchIterator[T]:
        """Moves to a saved position; returns self."""
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"iterator state was saved with seed {state['seed']}, this iterator has "
                f"seed {self.seed}; resuming would read a different stream"
            )
        self.index = int(state["index"])
        return self


class PromptIterator(BatchIterator[Problem]):
    """Batches of Problems for RL, from a task, a JSONL prompt file or a list.

    Args:
      source: a `Task`; a path to a JSONL prompt dataset (`prompt`, `answer`,
        optional fields); or a sequence of Problems.
      batch_size: prompts per batch (P).
      split: the task split ("train" or "test"); ignored for datasets.
      seed: task seed / shuffling seed.
      shuffle: permute each epoch of a finite dataset.
    """

    def __init__(
        self,
        source: Task | str | os.PathLike | Sequence[Problem],
        *,
        batch_size: int,
        split: str = "train",
        seed: int = 0,
        shuffle: bool = True,
    ):
        if isinstance(source, Task):
            task = source

            def problem(index: int) -> Problem:
                return task.problem(index, split=split, seed=seed)

            items: Sequence[Problem] | Callable[[int], Problem] = problem
        elif isinstance(source, str | os.PathLike):
            items = load_prompt_dataset(source)
        else:
            items = list(source)
        super().__init__(items, batch_size=batch_size, seed=seed, shuffle=shuffle)


class DemonstrationIterator(BatchIterator[tuple[Problem, str]]):
    """Batches of (problem, demonstration) for SFT on a task; endless, resumable.

    Demonstration i is `task.demonstration(problem_i, rng_i, error_rate=...)`
    with rng_i seeded by (seed, i), the same stream as
    `rewardjax.data.generators.demonstrations`.
    """

    def __init__(
        self,
        task: Task,
        *,
        batch_size: int,
        error_rate: float = 0.0,
        split: str = "train",
        seed: int = 0,
    ):
        def example(index: int) -> tuple[Problem, str]:
            p = task.problem(index, split=split, seed=seed)
            rng = example_rng(seed, index, "demonstration")
            return p, task.demonstration(p, rng, error_rate=error_rate)

        super().__init__(example, batch_size=batch_size, seed=seed)
