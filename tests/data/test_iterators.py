"""Iterators: deterministic batches, exact resume from the saved state."""

import json

import pytest

from rewardjax.data.formats import PromptRecord, write_jsonl
from rewardjax.data.iterators import BatchIterator, DemonstrationIterator, PromptIterator
from rewardjax.data.tasks import make_task


def test_task_stream_resumes_exactly():
    task = make_task("arithmetic_chain")
    straight = PromptIterator(task, batch_size=4, seed=2)
    batches = [next(straight) for _ in range(5)]
    assert batches[0] == [task.problem(i, seed=2) for i in range(4)]
    first = PromptIterator(task, batch_size=4, seed=2)
    next(first), next(first)
    state = json.loads(json.dumps(first.get_state()))
    assert state == {"index": 8, "seed": 2}
    resumed = PromptIterator(task, batch_size=4, seed=2).set_state(state)
    assert [next(resumed) for _ in range(3)] == batches[2:]


def test_test_split_iterator():
    task = make_task("countdown")
    it = PromptIterator(task, batch_size=3, split="test")
    assert next(it) == [task.problem(i, split="test") for i in range(3)]


def test_dataset_epochs_are_permutations_and_resume(tmp_path):
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [PromptRecord(f"q{i}", str(i)) for i in range(5)])
    it = PromptIterator(path, batch_size=2, seed=0)
    seen = [p.prompt for _ in range(5) for p in next(it)]  # 10 items = 2 epochs
    assert sorted(seen[:5]) == sorted(seen[5:]) == [f"q{i}" for i in range(5)]
    assert seen[:5] != seen[5:]  # each epoch has its own order
    again = PromptIterator(path, batch_size=2, seed=0).set_state({"index": 4, "seed": 0})
    assert [p.prompt for p in next(again)] == seen[4:6]
    ordered = PromptIterator(path, batch_size=5, shuffle=False)
    assert [p.prompt for p in next(ordered)] == [f"q{i}" for i in range(5)]
    assert it.epoch == 2 and it.num_items == 5


def test_state_seed_mismatch_and_bad_arguments():
    it = BatchIterator(list(range(3)), batch_size=1, seed=1)
    with pytest.raises(ValueError, match="saved with seed 0, this iterator has seed 1"):
        it.set_state({"index": 0, "seed": 0})
    with pytest.raises(ValueError, match="empty dataset"):
        BatchIterator([], batch_size=1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        BatchIterator([1], batch_size=0)


def test_demonstration_iterator_matches_generator_stream():
    from rewardjax.data.generators import demonstrations

    task = make_task("long_addition")
    it = DemonstrationIterator(task, batch_size=3, error_rate=0.5, seed=4)
    next(it)
    assert next(it) == demonstrations(task, start=3, num=3, error_rate=0.5, seed=4)
