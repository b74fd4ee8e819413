"""Where RL prompts come from: a procedural task, or a prompt file with gold answers or tests.

All give the trainer the same surface: `next(n)` training problems, a
resumable `state()`, held-out `test_problems(n)`, and a `task` whose
`grade(problem, completion)` returns a `Grade`. A prompt file is the
project's JSONL (`{"prompt", "answer"}` rows) or a published dataset read by
`task.reader` (`rewardjax.data.published`: GSM8K, MATH, HumanEval, MBPP). Its
grader checks the final answer with math-verify, or, for the code formats,
runs the row's tests in the sandbox; neither has step labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewardjax.data import published
from rewardjax.data.formats import PromptRecord, load_prompt_dataset
from rewardjax.data.iterators import PromptIterator
from rewardjax.data.tasks.base import Grade, Problem
from rewardjax.registry import TASKS
from rewardjax.training.rollout import encode_prompt


class AnswerGrader:
    """Grades free-form completions against `problem.answer` with math-verify.

    Args:
      extract: answer extraction mode of `rewardjax.rewards.math.extract_answer`
        ("auto", "boxed", "answer_tag", "last_number").
    """

    name = "jsonl_answers"
    kind = "math"

    def __init__(self, *, extract: str = "auto"):
        self.extract = extract

    def grade(self, problem: Problem, completion: str) -> Grade:
        from rewardjax.rewards import math as math_rewards

        answer = math_rewards.extract_answer(completion, self.extract)
        correct = False
        if answer is not None:
            out = math_rewards.exact_match(
                [problem.prompt], [completion], [{"answer": problem.answer}], extract=self.extract
            )
            scores = out.scores if hasattr(out, "scores") else out
            correct = bool(scores[0]) or _verify(answer, problem.answer)
        return Grade(
            correct=correct,
            answer=answer,
            step_correct=[],
            step_valid=[],
            first_error=None,
            num_steps=0,
            well_formed=answer is not None,
            num_reference_steps=0,
        )


def _verify(answer: str, gold: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(gold), parse(answer)))
    except Exception:  # math-verify raises on unparsable input; that is a wrong answer
        return False


class CodeTestsGrader:
    """Grades code completions by running the problem's tests in the sandbox (all must pass).

    The problem's fields are those `code_tests_sandbox` reads (tests, style,
    entry_point, prefix), as the published code readers write them.

    Args:
      extract: how the program is found in a completion (`rewards.code.extract_code`).
    """

    name = "code_tests"
    kind = "code"

    def __init__(self, *, extract: str = "last_block"):
        self.extract = extract

    def grade(self, problem: Problem, completion: str) -> Grade:
        from rewardjax.rewards.code import code_reward

        out = code_reward(
            [problem.prompt], [completion], [problem.fields], mode="all", extract=self.extract
        )
        correct = out.scores[0] == 1.0
        return Grade(
            correct=correct,
            answer=None,
            step_correct=[],
            step_valid=[],
            first_error=None,
            num_steps=0,
            well_formed=bool(completion.strip()),
            num_reference_steps=0,
        )


_GRADERS = {"math": AnswerGrader, "code": CodeTestsGrader}


def load_problems(
    path: str, reader: str = "", fields=None
) -> tuple[list[Problem], list[str] | None]:
    """Problems of a prompt file and, for a published format, each row's "path:line".

    Args:
      path: the project's JSONL of {"prompt", "answer"} rows, or a published dataset.
      reader: its published format (`rewardjax.data.published`; empty: the JSONL).
      fields: the reader's field renames.
    """
    if not reader:
        return load_prompt_dataset(path), None
    data = published.read_published(reader, path, fields=dict(fields or {}))
    return [r.to_problem(at) for r, at in zip(data.records, data.where)], data.where


class PromptTooLongError(ValueError):
    """A prompt row that cannot fit the sampler's cache with its completion budget."""


class PromptSource:
    """Training prompts (resumable) and held-out problems for one run.

    Args:
      task_cfg: the config's `task` block: name + kwargs of a procedural task,
        or data_path (+ test_path) of JSONL prompt files.
      batch_size: prompts per `next` call.
      seed: task seed and shuffling seed.
    """

    def __init__(self, task_cfg, *, batch_size: int, seed: int):
        self.seed = seed
        self._batch_size = batch_size
        self._train: list[Problem] | None = None
        self._from_file = bool(task_cfg.data_path)
        if task_cfg.data_path:
            self.task = _grader(task_cfg)
            self._train, train_where = load_problems(
                task_cfg.data_path, task_cfg.reader, task_cfg.reader_fields
            )
            self._iterator = PromptIterator(self._train, batch_size=batch_size, seed=seed)
            self._test, test_where = None, None
            if task_cfg.test_path:
                self._test, test_where = load_problems(
                    task_cfg.test_path, task_cfg.test_reader, task_cfg.test_reader_fields
                )
            self._paths = {"train": task_cfg.data_path, "test": task_cfg.test_path}
            self._where = {"train": train_where, "test": test_where}
        else:
            self.task = TASKS.get(task_cfg.name)(**task_cfg.kwargs)
            self._test = None
            if task_cfg.pool_size < 0:
                raise ValueError(f"task.pool_size={task_cfg.pool_size} must be >= 0")
            if task_cfg.pool_size:
                # A fixed pool, read in shuffled epochs: prompts recur, so their
                # statistics can steer a curriculum.
                self._train = self.task.problems(0, task_cfg.pool_size, split="train", seed=seed)
                self._iterator = PromptIterator(self._train, batch_size=batch_size, seed=seed)
            else:
                self._iterator = PromptIterator(
                    self.task, batch_size=batch_size, split="train", seed=seed
                )

    def check_lengths(
        self, tokenizer, *, max_new_tokens: int, max_length: int, skip: bool
    ) -> dict[str, int]:
        """Prompt-file rows whose tokens + `max_new_tokens` exceed `max_length` (the cache).

        Found at load, not mid-run: with `skip` they are dropped and counted,
        otherwise the first one is an error naming its file and line. Returns
        {"skipped_train": n, "skipped_test": m}.
        """
        budget = max_length - max_new_tokens
        counts = {}
        for split in ("train", "test"):
            problems = self._train if split == "train" else self._test
            if problems is None or not self._from_file:  # procedural prompts are short
                counts[f"skipped_{split}"] = 0
                continue
            kept = []
            for row, p in enumerate(problems):
                n = len(encode_prompt(tokenizer, p))
                if n <= budget:
                    kept.append(p)
                elif not skip:
                    where = self._where[split]
                    path = self._paths[split]
                    raise PromptTooLongError(
                        f"{where[row] if where else f'{path}, line {_line_of(path, row)}'}: "
                        f"prompt of {n} tokens + rollout.max_new_tokens={max_new_tokens} "
                        f"exceeds the model's {max_length} positions; shorten it, lower "
                        "max_new_tokens, or set task.skip_long_prompts=True to skip such rows"
                    )
            counts[f"skipped_{split}"] = len(problems) - len(kept)
            if not kept:
                raise PromptTooLongError(f"every {split} prompt is too long for the cache")
            if split == "train" and len(kept) < len(problems):
                self._train = kept
                self._iterator = PromptIterator(kept, batch_size=self._batch_size, seed=self.seed)
            elif split == "test":
                self._test = kept
        return counts

    def next(self) -> list[Problem]:
        return next(self._iterator)

    def pool(self) -> list[Problem] | None:
        """The finite list of training prompts (a file, or task.pool_size), or None (endless)."""
        return self._train

    def state(self) -> dict[str, Any]:
        return self._iterator.get_state()

    def restore(self, state: Mapping[str, Any]) -> None:
        self._iterator.set_state(state)

    def test_problems(self, n: int) -> list[Problem]:
        if self._test is not None:
            return self._test[:n]
        if isinstance(self.task, AnswerGrader):
            raise ValueError(
                "evaluation needs task.test_path when training prompts come from a JSONL file"
            )
        return self.task.problems(0, n, split="test", seed=self.seed)


def _grader(task_cfg):
    """The grader of a prompt file: by its published format's kind (math-verify without one)."""
    readers = {"reader": task_cfg.reader}
    if task_cfg.test_path:
        readers["test_reader"] = task_cfg.test_reader
    graders = {}
    for key, name in readers.items():
        try:
            graders[key] = grader_for(name)
        except ValueError as e:
            raise ValueError(f"config task.{key}={e}") from None
    kinds = {g.kind for g in graders.values()}
    if len(kinds) > 1:
        raise ValueError(
            f"config task.reader={task_cfg.reader!r} and task.test_reader="
            f"{task_cfg.test_reader!r} are graded differently ({' and '.join(sorted(kinds))}); "
            "train and test prompts must be the same kind of task"
        )
    return graders["reader"]


def grader_for(reader: str) -> AnswerGrader | CodeTestsGrader:
    """The grader of a prompt file of a published format (math-verify for the project's JSONL)."""
    if reader and published.get_reader(reader).record_type is not PromptRecord:
        raise ValueError(
            f"{reader!r} holds {published.get_reader(reader).format}, not prompts; prompt "
            f"formats: {', '.join(published.prompt_formats())}"
        )
    return _GRADERS[published.get_reader(reader).grader if reader else "math"]()


def _line_of(path: str, row: int) -> int:
    """The 1-based line of the row-th non-empty line of a JSONL file."""
    with open(path, encoding="utf-8") as f:
        lines = [i for i, line in enumerate(f, start=1) if line.strip()]
    return lines[row]
