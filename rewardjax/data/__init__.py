"""Data: procedural tasks, offline formats, generators, iterators and curation.

TFDS builders live in `rewardjax.data.tfds_builders` (imported on demand: it
pulls in tensorflow_datasets).
"""

from rewardjax.data import curation, formats, generators, iterators, published, tasks, tokenize
from rewardjax.data.curation import (
    PromptStats,
    dynamic_sampling,
    fill_groups,
    pass_rate_filter,
    select_groups,
)
from rewardjax.data.formats import (
    FORMATS,
    DataFormatError,
    PreferencePair,
    PromptRecord,
    RankedList,
    StepLabels,
    load_prompt_dataset,
    read_jsonl,
    write_jsonl,
)
from rewardjax.data.iterators import BatchIterator, DemonstrationIterator, PromptIterator
from rewardjax.data.tasks import Grade, Problem, Task, make_task, problem_columns
from rewardjax.data.tokenize import encode_completions, encode_steps

__all__ = [
    "FORMATS",
    "BatchIterator",
    "DataFormatError",
    "DemonstrationIterator",
    "Grade",
    "PreferencePair",
    "Problem",
    "PromptIterator",
    "PromptRecord",
    "PromptStats",
    "RankedList",
    "StepLabels",
    "Task",
    "curation",
    "dynamic_sampling",
    "encode_completions",
    "encode_steps",
    "fill_groups",
    "formats",
    "generators",
    "iterators",
    "load_prompt_dataset",
    "make_task",
    "pass_rate_filter",
    "problem_columns",
    "published",
    "read_jsonl",
    "select_groups",
    "tasks",
    "tokenize",
    "write_jsonl",
]
