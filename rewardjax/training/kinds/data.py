"""Datasets of the offline kinds (dpo, rm, prm, implicit_prm): records → fixed-shape arrays.

A dataset is a JSONL file of its format (`data.train_path`, `data.test_path`)
or, with no path, records generated from the procedural task with exact
labels (`data.num_train`, `data.num_test`; `rewardjax.data.generators`).
It is encoded once into arrays [N, ...] of fixed lengths (one compile for the
whole run), and batches are rows drawn by a `BatchIterator` over row indices
(shuffled per epoch; its state is one integer).

  pairs = load_records(task, "preference_pairs", path="", num=64, split="train", seed=0)
  arrays = encode_pairs(tokenizer, pairs, prompt_length=16, completion_length=48, source="train")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.data import generators, published
from rewardjax.data.formats import (
    DataFormatError,
    PreferencePair,
    RankedList,
    Ratings,
    StepLabels,
    read_jsonl,
)
from rewardjax.data.iterators import BatchIterator
from rewardjax.data.steps import check_steps, first_error_label, outcome_label
from rewardjax.data.tokenize import encode_completions, encode_steps
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.rollout import prompt_messages

__all__ = [
    "LIST_TARGETS",
    "ArrayBatches",
    "JointBatches",
    "encode_lists",
    "encode_pairs",
    "encode_ratings",
    "encode_step_records",
    "encode_train_pairs",
    "list_targets",
    "lists_of_split",
    "load_records",
    "policy_pairs",
    "prompt_texts",
    "ratings_of_split",
    "read_published_records",
    "reader_of",
    "record_lines",
    "step_records",
    "train_pairs",
    "validation_step_labels",
]

PAIR_SOURCES = ("task", "policy")


def load_records(
    task,
    fmt: str,
    *,
    path: str = "",
    num: int,
    split: str,
    seed: int,
    error_rate: float = 0.5,
    list_size: int = 4,
    reader: str = "",
    reader_fields: Mapping[str, str] | None = None,
) -> list[Any]:
    """Records of `fmt`: read from the file `path`, else generated from `task`.

    Args:
      task: the procedural task that generates records when `path` is empty.
      fmt: "preference_pairs", "step_labels", "ranked_lists" or "ratings".
      path: a JSONL file of `fmt` (config data.train_path / data.test_path).
      num: records to generate (ignored when reading `path`).
      split: "train" or "test" problems of the task.
      seed: seed of the generation.
      error_rate: share of step-labelled solutions (and of rated responses) with
        an injected error.
      list_size: responses of each generated ranked list.
      reader: the published format of `path` (`rewardjax.data.published`, config
        data.reader / data.test_reader); empty: the project's JSONL of `fmt`.
      reader_fields: the reader's field renames (data.reader_fields / test_reader_fields).
    """
    if path and reader:
        return read_published_records(reader, path, fmt, fields=reader_fields)
    if path:
        return read_jsonl(path, fmt)
    if task is None:
        raise ValueError(
            f"config data.{split}_path is empty and there is no task to generate {fmt} from"
        )
    if fmt == "preference_pairs":
        return generators.preference_pairs(task, num=num, split=split, seed=seed)
    if fmt == "step_labels":
        return generators.step_labels(task, num=num, error_rate=error_rate, split=split, seed=seed)
    if fmt == "ranked_lists":
        return generators.ranked_lists(
            task, num=num, num_responses=list_size, split=split, seed=seed
        )
    if fmt == "ratings":
        return generators.ratings(task, num=num, error_rate=error_rate, split=split, seed=seed)
    raise ValueError(f"unknown record format {fmt!r}")


def prompt_texts(tokenizer: Tokenizer, records: Sequence[Any]) -> list[str]:
    """The records' prompts as the tokenizer's prompt format writes them (`render_prompt`)."""
    return [tokenizer.render_prompt(r.prompt, prompt_messages(r)) for r in records]


def reader_of(data_cfg, split: str) -> dict[str, Any]:
    """load_records' reader keywords for the file of `split`: data.reader / data.test_reader."""
    if split == "train":
        return dict(reader=data_cfg.reader, reader_fields=data_cfg.reader_fields)
    return dict(reader=data_cfg.test_reader, reader_fields=data_cfg.test_reader_fields)


def read_published_records(
    reader: str, path: str, fmt: str, *, fields: Mapping[str, str] | None = None
) -> list[Any]:
    """The records of a published file, which must hold `fmt` (the run's record format)."""
    found = published.get_reader(reader).format
    if found != fmt:
        raise ValueError(
            f"{path}: the {reader} format holds {found}, but this run reads {fmt} "
            f"(formats of {fmt}: {', '.join(published.formats_of(fmt)) or 'none'})"
        )
    return published.read_published(reader, path, fields=fields).records


def train_pairs(data_cfg, task, *, seed: int, model_config, params, tokenizer) -> list[Any]:
    """Training preference pairs of the dpo and rm kinds, by `data.pairs_from`.

    "task": data.train_path, else generated by the task (reference ≻ one
      injected error, `generators.preference_pairs`).
    "policy": the initial model's own samples, graded by the task's checker:
      data.policy_samples completions for each of data.num_train train
      problems (temperature data.policy_temperature), one pair per problem
      whose samples hold both outcomes (`policy_pairs`). The held-out test
      pairs stay the task's either way.

    The task's injected errors are wrong results only; a policy also miscopies
    operands and misstates the answer line, which an ORM trained on injected
    errors alone does not learn to catch (BENCHMARKS.md, test-time selection).
    """
    source = data_cfg.pairs_from
    if source not in PAIR_SOURCES:
        raise ValueError(f"config data.pairs_from={source!r}; known: {', '.join(PAIR_SOURCES)}")
    if source == "task":
        return load_records(
            task,
            "preference_pairs",
            path=data_cfg.train_path,
            num=data_cfg.num_train,
            split="train",
            seed=seed,
            **reader_of(data_cfg, "train"),
        )
    if data_cfg.train_path:
        raise ValueError(
            "config data.pairs_from='policy' samples pairs: leave data.train_path empty"
        )
    if task is None:
        raise ValueError("config data.pairs_from='policy' needs a task to grade the samples")
    import jax

    from rewardjax.training.rollout import sample_and_grade

    problems = task.problems(0, data_cfg.num_train, split="train", seed=seed)
    candidates = sample_and_grade(
        model_config,
        params,
        tokenizer,
        task,
        problems,
        rng=jax.random.key(seed),
        n=data_cfg.policy_samples,
        # A sample cut at the budget is encoded with an EOS it never emitted:
        # one token is kept free for it (a 24-token sample encoded to 25 tokens).
        max_new_tokens=max(1, data_cfg.completion_length - 1),
        temperature=data_cfg.policy_temperature,
        batch_prompts=min(len(problems), 64),
    )
    pairs = policy_pairs(problems, candidates, seed=seed)
    if not pairs:
        raise ValueError(
            f"data.pairs_from='policy': none of {len(problems)} problems got both a correct and "
            f"an incorrect completion in {data_cfg.policy_samples} samples; start from a policy "
            "that solves some of them (model.path) or raise data.policy_samples"
        )
    return pairs


def encode_train_pairs(
    config, task, *, tokenizer, model_config, params, weight_field: str = ""
) -> dict[str, np.ndarray]:
    """The dpo and rm kinds' training pairs (`train_pairs`), encoded by `encode_pairs`."""
    c = config
    sampled = c.data.pairs_from == "policy"
    source = c.data.train_path or ("policy-sampled" if sampled else "generated") + " train pairs"
    pairs = train_pairs(
        c.data, task, seed=c.seed, model_config=model_config, params=params, tokenizer=tokenizer
    )
    return encode_pairs(
        tokenizer,
        pairs,
        prompt_length=c.data.prompt_length,
        completion_length=c.data.completion_length,
        source=source,
        weight_field=weight_field,
    )


def policy_pairs(problems, candidates, *, seed: int) -> list[PreferencePair]:
    """One pair per problem from graded samples: a correct ≻ an incorrect completion.

    Args:
      problems: the P problems sampled for.
      candidates: their graded samples (`rollout.EvalResult`: texts [P][n],
        correct [P, n]).
      seed: seed of the draw of the two completions within each problem.

    Returns:
      Pairs (margin 1.0) for the problems whose n samples hold both outcomes,
      in problem order; `fields` carry uid, answer and the problem's share of
      correct samples.
    """
    rng = np.random.default_rng(seed)
    out = []
    for problem, texts, correct in zip(problems, candidates.texts, candidates.correct):
        good = sorted({t for t, c in zip(texts, correct) if c})
        bad = sorted({t for t, c in zip(texts, correct) if not c})
        if not good or not bad:
            continue
        out.append(
            PreferencePair(
                prompt=problem.prompt,
                chosen=good[rng.integers(len(good))],
                rejected=bad[rng.integers(len(bad))],
                margin=1.0,
                fields={
                    "uid": problem.uid,
                    "answer": problem.answer,
                    "pass_rate": float(np.mean(correct)),
                },
            )
        )
    return out


def _source_error(source: str, e: Exception, key: str) -> ValueError:
    return ValueError(f"{source}: {e} (raise config {key})")


def encode_pairs(
    tokenizer: Tokenizer,
    pairs: Sequence[PreferencePair],
    *,
    prompt_length: int,
    completion_length: int,
    source: str,
    weight_field: str = "",
) -> dict[str, np.ndarray]:
    """Arrays of N pairs.

    Returns:
      prompt_tokens, prompt_mask [N, L]; chosen_tokens, chosen_mask,
      rejected_tokens, rejected_mask [N, T] (EOS included); margin [N]
      (0 where absent); tie [N] (1.0 on tie pairs); with `weight_field`,
      weight [N] read from that key of every record (finite, ≥ 0).
    """
    for i, p in enumerate(pairs):
        if not isinstance(p, PreferencePair):
            raise ValueError(f"{source}: record {i} is a {type(p).__name__}, not a PreferencePair")
    prompts = prompt_texts(tokenizer, pairs)
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
    if weight_field:
        weights = []
        for i, p in enumerate(pairs):
            w = p.fields.get(weight_field)
            if not isinstance(w, int | float) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
                raise ValueError(
                    f"{source}: record {i} needs a finite weight >= 0 in its field "
                    f"{weight_field!r} (objective.pair_weights), got {w!r}"
                )
            weights.append(float(w))
        out["weight"] = np.array(weights, np.float32)
    return out


# objective.target of dpo on ranked lists: how q over the K kept candidates is built.
LIST_TARGETS = ("top1", "softmax_scores", "ranking")


def record_lines(path: str) -> list[int]:
    """1-based line numbers of the records of a JSONL file (blank lines hold none)."""
    with open(path, encoding="utf-8") as f:
        return [i for i, line in enumerate(f, start=1) if line.strip()]


def list_targets(
    lists: Sequence[RankedList],
    *,
    list_size: int,
    target: str,
    temperature: float = 1.0,
    where: Sequence[str],
) -> tuple[list[list[str]], np.ndarray]:
    """The K = `list_size` candidates of each list, best first, and their target q.

    A list with more responses keeps its top K by `RankedList.order()`; one
    with fewer is an error naming `where[i]` (file:line or record index).

      top1            q = one-hot on the best response
      softmax_scores  q_k = softmax(s / temperature)_k over the kept scores
      ranking         q_k ∝ 1/rank_k (rank 1 = best), normalised: harmonic
                      rank weights, a listwise target from the order alone
                      (the score gaps are ignored; tied scores keep the
                      order's tie-break)

    Args:
      lists: N ranked lists.
      list_size: K >= 2.
      target: one of LIST_TARGETS.
      temperature: of softmax_scores (> 0).
      where: N labels of the records, for errors.

    Returns:
      (N lists of K responses best first, q [N, K] float32, rows summing to 1).
    """
    if target not in LIST_TARGETS:
        raise ValueError(f"config objective.target={target!r}; known: {', '.join(LIST_TARGETS)}")
    if target == "softmax_scores" and not temperature > 0:
        raise ValueError(f"config objective.target_temperature={temperature!r} must be > 0")
    candidates, targets = [], []
    harmonic = 1.0 / np.arange(1, list_size + 1)
    for r, label in zip(lists, where, strict=True):
        if not isinstance(r, RankedList):
            raise ValueError(f"{label}: a {type(r).__name__}, not a RankedList")
        if len(r.responses) < list_size:
            raise ValueError(
                f"{label}: {len(r.responses)} responses, fewer than data.list_size={list_size} "
                "(every list of a run has K = data.list_size candidates)"
            )
        keep = r.order()[:list_size]
        candidates.append([r.responses[k] for k in keep])
        if target == "top1":
            q = np.eye(list_size)[0]
        elif target == "ranking":
            q = harmonic / harmonic.sum()
        else:
            if r.scores is None:
                raise ValueError(
                    f"{label}: objective.target='softmax_scores' needs 'scores' in every list"
                )
            z = np.array([r.scores[k] for k in keep], np.float64) / temperature
            q = np.exp(z - z.max())
            q /= q.sum()
        targets.append(q)
    return candidates, np.array(targets, np.float32).reshape(len(candidates), list_size)


def encode_lists(
    tokenizer: Tokenizer,
    lists: Sequence[RankedList],
    *,
    list_size: int,
    target: str,
    temperature: float,
    prompt_length: int,
    completion_length: int,
    source: str,
    lines: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Arrays of N ranked lists of K = `list_size` candidates (`list_targets`).

    Args:
      lines: the records' line numbers in the file `source` (errors name
        `source:line`); None for generated lists (errors name the record index).

    Returns:
      prompt_tokens, prompt_mask [N, L]; list_tokens, list_mask [N, K, T]
      (candidates best first, EOS included); target [N, K] (q).
    """
    if lines is None:
        where = [f"{source}: record {i}" for i in range(len(lists))]
    else:
        where = [f"{source}:{line}" for line in lines]
    candidates, q = list_targets(
        lists, list_size=list_size, target=target, temperature=temperature, where=where
    )
    try:
        enc = encode_completions(
            tokenizer,
            [t for t in prompt_texts(tokenizer, lists) for _ in range(list_size)],
            [text for row in candidates for text in row],
            max_prompt_len=prompt_length,
            max_completion_len=completion_length,
            add_bos=tokenizer.default_add_bos,
        )
    except ValueError as e:
        raise _source_error(source, e, "data.prompt_length / data.completion_length") from None
    n = len(lists)
    return {
        "prompt_tokens": enc["prompt_tokens"][::list_size],
        "prompt_mask": enc["prompt_mask"][::list_size],
        "list_tokens": enc["tokens"].reshape(n, list_size, -1),
        "list_mask": enc["mask"].reshape(n, list_size, -1),
        "target": q,
    }


def _records_of_split(
    config,
    task,
    fmt: str,
    split: str,
    *,
    paths: tuple[str, str] = ("train_path", "test_path"),
    readers: bool = True,
    **kwargs,
) -> tuple[str, list]:
    """(path, records) of `split`: the data block's file for it, else generated from the task.

    paths: the data keys of the train and test files; readers: whether the
    block's `reader` fields (published formats) apply; kwargs: to `load_records`.
    """
    c = config
    path = c.data[paths[0]] if split == "train" else c.data[paths[1]]
    if readers:
        kwargs.update(reader_of(c.data, split))
    records = load_records(
        task,
        fmt,
        path=path,
        num=c.data.num_train if split == "train" else c.data.num_test,
        split=split,
        seed=c.seed,
        **kwargs,
    )
    return path, records


def lists_of_split(config, task, tokenizer: Tokenizer, split: str) -> dict[str, np.ndarray]:
    """The dpo kind's ranked lists of `split` (data.format="lists"), encoded by `encode_lists`."""
    c = config
    path, lists = _records_of_split(c, task, "ranked_lists", split, list_size=c.data.list_size)
    return encode_lists(
        tokenizer,
        lists,
        list_size=c.data.list_size,
        target=c.objective.target,
        temperature=c.objective.target_temperature,
        prompt_length=c.data.prompt_length,
        completion_length=c.data.completion_length,
        source=path or f"generated {split} lists",
        # A published file's rows are named by its reader; errors here name the record.
        lines=record_lines(path) if path and not reader_of(c.data, split)["reader"] else None,
    )


def encode_ratings(
    tokenizer: Tokenizer,
    records: Sequence[Ratings],
    *,
    attributes: Sequence[str],
    prompt_length: int,
    completion_length: int,
    source: str,
    lines: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Arrays of N rated responses, K = len(attributes) ratings each.

    Args:
      lines: the records' line numbers in the file `source` (errors name
        `source:line`); None for generated records (errors name the index).

    Returns:
      prompt_tokens, prompt_mask [N, L]; tokens, mask [N, T] (EOS included);
      ratings [N, K] in the order of `attributes`; rating_mask [N, K] (1.0
      where the record rates that attribute).
    """
    values, present = [], []
    for i, r in enumerate(records):
        where = f"{source}: record {i}" if lines is None else f"{source}:{lines[i]}"
        if not isinstance(r, Ratings):
            raise ValueError(f"{where}: a {type(r).__name__}, not a Ratings record")
        try:
            v, m = r.values(attributes)
        except DataFormatError as e:
            raise ValueError(f"{where}: {e} (config data.attributes)") from None
        values.append(v)
        present.append(m)
    try:
        enc = encode_completions(
            tokenizer,
            prompt_texts(tokenizer, records),
            [r.response for r in records],
            max_prompt_len=prompt_length,
            max_completion_len=completion_length,
            add_bos=tokenizer.default_add_bos,
        )
    except ValueError as e:
        raise _source_error(source, e, "data.prompt_length / data.completion_length") from None
    k = len(attributes)
    enc["ratings"] = np.array(values, np.float32).reshape(len(records), k)
    enc["rating_mask"] = np.array(present, np.float32).reshape(len(records), k)
    return enc


def ratings_of_split(config, task, tokenizer: Tokenizer, split: str) -> dict[str, np.ndarray]:
    """The rm kind's rated responses of `split` (data.ratings_path / ratings_test_path or generated)."""
    c = config
    path, records = _records_of_split(
        c,
        task,
        "ratings",
        split,
        paths=("ratings_path", "ratings_test_path"),
        readers=False,
        error_rate=c.data.error_rate,
    )
    return encode_ratings(
        tokenizer,
        records,
        attributes=list(c.data.attributes),
        prompt_length=c.data.prompt_length,
        completion_length=c.data.completion_length,
        source=path or f"generated {split} ratings",
        lines=record_lines(path) if path else None,
    )


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
            prompt_texts(tokenizer, records),
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


def step_records(config, tokenizer: Tokenizer, task, split: str) -> tuple[list, dict]:
    """The prm and implicit_prm kinds' step-labelled solutions of `split`, and their arrays."""
    c = config
    path, records = _records_of_split(c, task, "step_labels", split, error_rate=c.data.error_rate)
    arrays = encode_step_records(
        tokenizer,
        records,
        prompt_length=c.data.prompt_length,
        completion_length=c.data.completion_length,
        max_steps=c.data.max_steps,
        separator=c.data.step_separator,
        source=path or f"generated {split} step labels",
    )
    return records, arrays


def validation_step_labels(config, task) -> list:
    """Solutions for tuning τ: generated from the train split with another seed (procedural data only)."""
    if config.data.test_path or not config.eval.num_records:
        return []
    return load_records(
        task,
        "step_labels",
        num=config.eval.num_records,
        split="train",
        seed=config.seed + 1,
        error_rate=config.data.error_rate,
    )


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


class JointBatches:
    """Batches of several datasets drawn side by side: one dict, each part's keys prefixed.

    Args:
      parts: prefix → ArrayBatches (e.g. {"": pairs, "rated_": ratings}).
    """

    def __init__(self, parts: dict[str, ArrayBatches]):
        self.parts = parts

    @property
    def num_rows(self) -> int:
        return min(p.num_rows for p in self.parts.values())

    def __next__(self) -> dict[str, np.ndarray]:
        out = {}
        for prefix, part in self.parts.items():
            out.update({prefix + k: v for k, v in next(part).items()})
        return out

    def get_state(self) -> dict:
        return {prefix or "_": p.get_state() for prefix, p in self.parts.items()}

    def set_state(self, state) -> None:
        for prefix, p in self.parts.items():
            p.set_state(state[prefix or "_"])
