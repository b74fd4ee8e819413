"""Where RL prompts come from: a procedural task, or a JSONL prompt file with gold answers.

Both give the trainer the same surface: `next(n)` training problems, a
resumable `state()`, held-out `test_problems(n)`, and a `task` whose
`grade(problem, completion)` returns a `Grade` (the JSONL grader checks the
final answer with math-verify; it has no step labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewardjax.data.formats import load_prompt_dataset
from rewardjax.data.iterators import PromptIterator
from rewardjax.data.tasks.base import Grade, Problem
from rewardjax.registry import TASKS


class AnswerGrader:
    """Grades free-form completions against `problem.answer` with math-verify.

    Args:
      extract: answer extraction mode of `rewardjax.rewards.math.extract_answer`
        ("auto", "boxed", "answer_tag", "last_number").
    """

    name = "jsonl_answers"

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
        if task_cfg.data_path:
            self.task = AnswerGrader()
            self._iterator = PromptIterator(task_cfg.data_path, batch_size=batch_size, seed=seed)
            self._test = load_prompt_dataset(task_cfg.test_path) if task_cfg.test_path else None
        else:
            self.task = TASKS.get(task_cfg.name)(**task_cfg.kwargs)
            self._iterator = PromptIterator(
                self.task, batch_size=batch_size, split="train", seed=seed
            )
            self._test = None

    def next(self) -> list[Problem]:
        return next(self._iterator)

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
