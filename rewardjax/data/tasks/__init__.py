"""Procedural verifiable tasks, registered in `TASKS` (see `base` for the grading rules).

task = make_task("countdown", num_numbers=3)
problem = task.problem(0, split="train", seed=0)
grade = task.grade(problem, completion)
"""

from typing import Any

from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain
from rewardjax.data.tasks.base import Grade, Problem, Task, problem_columns, split_of
from rewardjax.data.tasks.code_functions import CodeFunctions
from rewardjax.data.tasks.countdown import Countdown
from rewardjax.data.tasks.judge import JudgeTask
from rewardjax.data.tasks.long_addition import LongAddition
from rewardjax.registry import TASKS


def make_task(name: str, **kwargs: Any) -> Task:
    """`TASKS.get(name)(**kwargs)`: a task by registry key and difficulty keywords."""
    return TASKS.get(name)(**kwargs)


__all__ = [
    "TASKS",
    "ArithmeticChain",
    "CodeFunctions",
    "Countdown",
    "Grade",
    "JudgeTask",
    "LongAddition",
    "Problem",
    "Task",
    "make_task",
    "problem_columns",
    "split_of",
]
