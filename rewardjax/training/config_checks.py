"""Range checks of a trainer config, run before anything is loaded or compiled.

A value out of range fails at once with the key and the allowed range,
instead of deep inside a sampler or an iterator with a message about
something else (`range() arg 3 must not be zero`, `n=0 must be >= 1`).

  check_ranges(config)     # raises ConfigError("config rollout.group_size=0: ...")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A config value outside its allowed range (the message names the key)."""


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
        f"an integer ≥ {low}",
    )


def _number(low: float, high: float = math.inf, *, open_low: bool = False):
    def ok(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        return (v > low if open_low else v >= low) and v <= high

    left = "(" if open_low else "["
    right = "]" if math.isfinite(high) else ")"
    return ok, f"a number in {left}{low}, {high if math.isfinite(high) else '∞'}{right}"


def _published_format() -> tuple[Callable[[Any], bool], str]:
    from rewardjax.data.published import READERS

    return (
        lambda v: v == "" or (isinstance(v, str) and v in READERS),
        f"empty (the project's JSONL) or a published format: {', '.join(READERS)}",
    )


def _renames() -> tuple[Callable[[Any], bool], str]:
    def ok(v) -> bool:
        try:
            items = dict(v).items()
        except (TypeError, ValueError):
            return False
        return all(isinstance(k, str) and isinstance(c, str) and c for k, c in items)

    return ok, "a dict of the reader's field → the file's column, e.g. {'question': 'query'}"


# key path → (predicate, allowed range in words). A key absent from a config
# (another trainer's) is not checked.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "steps": _int_at_least(0),
    "seed": _int_at_least(0),
    "batch_size": _int_at_least(1),
    "microbatches": _int_at_least(1),
    "max_consecutive_skips": _int_at_least(1),
    "rollout.prompts_per_step": _int_at_least(1),
    "rollout.group_size": _int_at_least(1),
    "rollout.max_new_tokens": _int_at_least(1),
    "rollout.temperature": _number(0.0, open_low=True),
    "rollout.top_p": _number(0.0, 1.0, open_low=True),
    "rollout.top_k": _int_at_least(0),
    "rollout.cache_block": _int_at_least(0),
    "rollout.compact_min_rows": _int_at_least(0),
    "updates.epochs": _int_at_least(1),
    "updates.minibatches": _int_at_least(1),
    "updates.forward_chunk": _int_at_least(1),
    "optim.learning_rate": _number(0.0),
    "optim.warmup_steps": _int_at_least(0),
    "optim.total_steps": _int_at_least(0),
    "optim.end_factor": _number(0.0, 1.0),
    "optim.weight_decay": _number(0.0),
    "optim.max_grad_norm": _number(0.0),
    "optim.b1": _number(0.0, 1.0),
    "optim.b2": _number(0.0, 1.0),
    "loss.kwargs.clip_low": _number(0.0),
    "loss.kwargs.clip_high": _number(0.0),
    "kl.coef": _number(0.0),
    "entropy_coef": _number(-math.inf),
    "critic.coef": _number(0.0),
    "prime.beta": _number(0.0, open_low=True),
    # 0 = the policy's optim.learning_rate.
    "prime.learning_rate": _number(0.0),
    "prime.updates": _int_at_least(1),
    "laser.kl_coef": _number(0.0, open_low=True),
    "laser.coef": _number(0.0),
    "eval.every": _int_at_least(0),
    "eval.num_problems": _int_at_least(1),
    "eval.num_samples": _int_at_least(1),
    "eval.batch_prompts": _int_at_least(1),
    "eval.max_new_tokens": _int_at_least(1),
    # 0 = greedy decoding; RL rollouts need a distribution (> 0).
    "eval.temperature": _number(0.0),
    "data.completion_length": _int_at_least(1),
    "data.prompt_length": _int_at_least(1),
    "data.num_train": _int_at_least(1),
    "data.num_test": _int_at_least(1),
    "data.error_rate": _number(0.0, 1.0),
    "data.reader": _published_format(),
    "data.test_reader": _published_format(),
    "data.reader_fields": _renames(),
    "data.test_reader_fields": _renames(),
    "task.reader": _published_format(),
    "task.test_reader": _published_format(),
    "task.reader_fields": _renames(),
    "task.test_reader_fields": _renames(),
    "lora.rank": _int_at_least(0),
    "lora.alpha": _number(0.0, open_low=True),
    "log.every": _int_at_least(1),
    "checkpoint.every": _int_at_least(0),
    "checkpoint.keep": _int_at_least(1),
    "curation.max_rounds": _int_at_least(1),
}


def _lookup(config, path: str) -> tuple[bool, Any]:
    node = config
    for key in path.split("."):
        try:
            if key not in node:
                return False, None
            node = node[key]
        except TypeError:  # a leaf where the path expects a block
            return False, None
    return True, node


def check_ranges(config) -> None:
    """Raises ConfigError naming the first key whose value is outside its range."""
    for path, (ok, allowed) in RANGES.items():
        present, value = _lookup(config, path)
        if present and not ok(value):
            raise ConfigError(f"config {path}={value!r} is out of range: it must be {allowed}")
