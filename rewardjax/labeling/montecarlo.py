"""Monte Carlo step labels: the value of each step prefix under a completer policy.

For a solution with steps s_0 … s_{S−1}, the prefix up to step s is the prompt
followed by steps 0..s and a separator. K completions are sampled from it by a
completer policy and graded; the prefix value is the fraction graded correct
(Math-Shepherd, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without
Human Annotations"):

  soft label   ŷ_s = (1/K)·Σ_k 1[completion k from prefix s is correct]
  hard label   y_s = 1[ŷ_s > τ]     (τ = 0: any of the K is correct)
  first error  the first s whose value is at most τ (None when there is none)

τ = 0 is Math-Shepherd's hard estimation. A completer that recovers from a
wrong prefix (recomputing from the question) gives wrong steps small positive
values, which τ = 0 calls right; `tune_threshold` picks τ on solutions with
known first errors, for labelling others.

The last prefix is the whole solution: its value is its own grade, with no
rollouts. Prefixes go to the sampler many at a time, each prefilled once for
its K samples (`sampling.generate(..., n=K)`).

`first_error_search` finds the first error by binary search over the steps
(OmegaPRM, "Improve Mathematical Reasoning in Language Models by Automated
Process Supervision"): a solution graded correct is taken to have none, and
for one graded wrong each round evaluates one prefix, in ⌈log2 S⌉ rounds
instead of S − 1 prefixes.

  completer = Completer.load("/tmp/sft/hf", tokenizer=tok, max_new_tokens=48)
  values = monte_carlo_values(completer, problems, steps, k=8, grade=grade_fn, rng=key)
  values.first_errors()                       # [None, 1, 2, ...]
  found = first_error_search(completer, problems, steps, k=8, grade=grade_fn, rng=key)
  found.rollouts / values.rollouts            # OmegaPRM's share of Math-Shepherd's rollouts
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from rewardjax import models, parallel, sampling
from rewardjax.data.formats import StepLabels
from rewardjax.data.steps import check_steps
from rewardjax.labeling.consensus import first_error_accuracy
from rewardjax.models.config import ModelConfig
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.rollout import decode_completions, prompt_messages

__all__ = [
    "Completer",
    "FirstErrorSearch",
    "PrefixValues",
    "first_error_of_values",
    "first_error_search",
    "grade_solutions",
    "hard_labels",
    "monte_carlo_values",
    "prefix_text",
    "step_labels",
    "tune_threshold",
]

# grade(problem, completion text) -> correct. A grader may raise; see `on_grader_error`.
Grader = Callable[[Any, str], bool]


def prefix_text(steps: Sequence[str], upto: int, separator: str) -> str:
    """The completion text of steps 0..upto, ending in the separator (the completer goes on)."""
    return separator.join(steps[: upto + 1]) + separator


@dataclasses.dataclass(frozen=True)
class Completer:
    """The policy that rolls out from step prefixes.

    Attributes:
      config, params: the completer's model.
      tokenizer: its tokenizer.
      max_new_tokens: rollout budget after a prefix.
      temperature, top_p: sampling settings of the rollouts.
      batch_prefixes: prefixes per sampler call (each with its K samples);
        every call has this many rows, so a run compiles once per length bucket.
    """

    config: ModelConfig
    params: Any
    tokenizer: Tokenizer
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    batch_prefixes: int = 64

    @classmethod
    def load(cls, path: str, *, tokenizer: Tokenizer, **kwargs) -> Completer:
        """A completer from an exported causal LM directory."""
        config, params = models.load_hf(path, heads=("lm",))
        return cls(config, jax.tree.map(np.asarray, params), tokenizer, **kwargs)

    def encode(self, prompt, prefix: str = "") -> list[int]:
        """Ids of a prompt as the policy sees it, then the completion text `prefix` written so far.

        The prompt (a string, or a record with `prompt` and `fields`) goes
        through the tokenizer's `prompt_format` (chat template, system, suffix);
        the prefix follows the rendered prompt, inside the reply, never inside
        the user turn.
        """
        if isinstance(prompt, str):
            head = self.tokenizer.render_prompt(prompt)
        else:
            head = self.tokenizer.render_prompt(prompt.prompt, prompt_messages(prompt))
        return self.tokenizer.encode(head + prefix, add_bos=self.tokenizer.default_add_bos)

    def check_lengths(
        self, prompts: Sequence, where: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> None:
        """Every prompt + prefix + the rollout budget must fit the model's cache: one error naming the first that does not."""
        limit = self.config.max_position_embeddings
        prefixes = [""] * len(prompts) if prefixes is None else prefixes
        for prompt, prefix, name in zip(prompts, prefixes, where, strict=True):
            length = len(self.encode(prompt, prefix))
            if length + self.max_new_tokens > limit:
                raise ValueError(
                    f"{name}: the prefix is {length} tokens, and with max_new_tokens="
                    f"{self.max_new_tokens} it exceeds the completer's {limit} positions"
                )

    def continuations(
        self,
        prompts: Sequence,
        *,
        k: int,
        rng: jax.Array,
        prefixes: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """K sampled continuation texts for each prompt, in prompt order.

        Args:
          prompts: [N] prompts (strings, or records such as a task's Problem).
          k: rollouts per prompt.
          rng: PRNG key.
          prefixes: [N] completion text already written after each prompt (a
            step prefix); None: none.
        """
        if k < 1:
            raise ValueError(f"k={k}: each prefix needs at least one rollout")
        prefixes = [""] * len(prompts) if prefixes is None else list(prefixes)
        if len(prefixes) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(prefixes)} prefixes")
        ids = [self.encode(p, x) for p, x in zip(prompts, prefixes)]
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a call
        out: list[list[str]] = [[] for _ in prompts]
        size = self.batch_prefixes
        for start in range(0, len(order), size):
            rows = list(order[start : start + size])
            # Pad a call with copies up to a power of two (at most batch_prefixes):
            # few shapes, and a search's late rounds with few prefixes stay small.
            width = min(size, 1 << (len(rows) - 1).bit_length())
            padded = rows + [rows[-1]] * (width - len(rows))
            call = [ids[i] for i in padded]
            tokens, mask = sampling.pad_prompts(
                call,
                pad_id=self.tokenizer.pad_id,
                length=sampling.bucket(max(len(x) for x in call), sampling.DEFAULT_BUCKETS),
            )
            rng, key = jax.random.split(rng)
            sample = sampling.generate(
                self.config,
                self.params,
                (tokens, mask),
                rng=key,
                n=k,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                eos_ids=self.tokenizer.stop_ids,
                pad_id=self.tokenizer.pad_id,
            )
            sample = parallel.gather_to_host(sample)
            texts = decode_completions(self.tokenizer, sample.tokens, sample.lengths)
            for j, i in enumerate(rows):
                out[i] = texts[j * k : (j + 1) * k]
        return out


def _grade(grade: Grader, problem, text: str, where: str, on_error: str) -> bool | None:
    """One grade; a grader exception is an error naming the row, or None (a counted skip)."""
    try:
        return bool(grade(problem, text))
    except Exception as e:
        if on_error == "skip":
            return None
        raise RuntimeError(
            f"{where}: the grader raised {type(e).__name__}: {e} "
            "(on_grader_error='skip' skips such solutions and counts them)"
        ) from e


def _prefix_value(grade, problems, solutions, i, upto, continuations, separator, on_error):
    """Solution i's prefix value at step `upto`: the share of its continuations graded
    correct; None when the grader raised and on_error is "skip"."""
    head = prefix_text(solutions[i], upto, separator)
    problem, where = problems[i], f"solution {i} step {upto}"
    grades = [_grade(grade, problem, head + c, where, on_error) for c in continuations]
    return None if any(g is None for g in grades) else float(np.mean(grades))


def _check_inputs(problems, solutions, k: int, separator: str, on_grader_error: str) -> None:
    if k < 1:
        raise ValueError(f"k={k}: each prefix needs at least one rollout")
    if on_grader_error not in ("raise", "skip"):
        raise ValueError(f"on_grader_error={on_grader_error!r}; known: raise, skip")
    if len(problems) != len(solutions):
        raise ValueError(f"{len(problems)} problems but {len(solutions)} solutions")
    check_steps(solutions, separator, where="solution")


def grade_solutions(
    problems: Sequence[Any],
    solutions: Sequence[Sequence[str]],
    *,
    grade: Grader,
    separator: str = "\n",
    on_grader_error: str = "raise",
) -> list[bool | None]:
    """Each whole solution's grade (None: the grader raised and `on_grader_error='skip'`)."""
    return [
        _grade(grade, p, separator.join(steps), f"solution {i}", on_grader_error)
        for i, (p, steps) in enumerate(zip(problems, solutions))
    ]


@dataclasses.dataclass
class PrefixValues:
    """Monte Carlo prefix values of a set of solutions.

    Attributes:
      values: per solution, [S] floats: the fraction of K rollouts from each
        step prefix graded correct (the last: the solution's own grade).
        NaN for a prefix that was not evaluated; None for a skipped solution.
      k: rollouts per prefix.
      rollouts: completions sampled in all.
      prefixes: prefixes rolled out from.
      seconds: wall time of the sampling and grading.
      skipped: {reason: count} of solutions left without labels.
    """

    values: list[np.ndarray | None]
    k: int
    rollouts: int
    prefixes: int
    seconds: float
    skipped: dict[str, int]

    def first_errors(self, threshold: float = 0.0) -> list[int | None]:
        """First step whose value is at most `threshold`, per solution (None: none, or skipped)."""
        return [None if v is None else first_error_of_values(v, threshold) for v in self.values]

    def labels(self, mode: str = "hard", threshold: float = 0.0) -> list[list[float] | None]:
        """Per-step labels: "hard" 1[value > threshold], "soft" the value itself."""
        if mode not in ("hard", "soft"):
            raise ValueError(f"label mode {mode!r}; known: hard, soft")
        _check_threshold(threshold)
        out = []
        for v in self.values:
            if v is None:
                out.append(None)
            elif mode == "hard":
                out.append(hard_labels(v, threshold))
            else:
                out.append([float(x) for x in v])
        return out


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold < 1.0:
        raise ValueError(
            f"threshold={threshold}: a prefix value at most the threshold is an error, "
            "so it must lie in [0, 1) (1 would call every step wrong)"
        )


def hard_labels(values: Sequence[float], threshold: float = 0.0) -> list[float]:
    """Per-step hard labels of prefix values: 1[value > threshold] (NaN: 0)."""
    _check_threshold(threshold)
    return [float(x > threshold) for x in values]


def first_error_of_values(values: np.ndarray, threshold: float = 0.0) -> int | None:
    """Index of the first prefix value at most `threshold` (None: every value is above it).

    NaN (a prefix not evaluated) is never an error.
    """
    _check_threshold(threshold)
    below = np.flatnonzero(np.asarray(values, float) <= threshold)
    return int(below[0]) if below.size else None


def tune_threshold(
    values: Sequence[np.ndarray | None],
    exact_first_errors: Sequence[int | None],
    *,
    k: int,
) -> tuple[float, float]:
    """The τ in {0, 1/K, …, (K−1)/K} whose first errors best match known ones.

    Args:
      values: per solution, its prefix values (K rollouts each); None: skipped.
      exact_first_errors: per solution, the true first error (None or −1: none).
      k: rollouts per prefix (the values are multiples of 1/K).

    Returns:
      (τ, first-error accuracy at τ) on these solutions; ties go to the smaller τ.
    """
    if k < 1:
        raise ValueError(f"k={k}: each prefix needs at least one rollout")
    idx = [i for i, v in enumerate(values) if v is not None]
    if not idx:
        raise ValueError("tune_threshold: no labelled solution to tune on")
    best = (0.0, -1.0)
    for j in range(k):
        tau = j / k  # a value is a mean of K 0/1 grades: exactly some j/K in floating point
        predicted = [first_error_of_values(values[i], tau) for i in idx]
        accuracy = first_error_accuracy(
            predicted, [exact_first_errors[i] for i in idx], [len(values[i]) for i in idx]
        )
        if accuracy > best[1]:
            best = (tau, accuracy)
    return best


def monte_carlo_values(
    completer: Completer,
    problems: Sequence[Any],
    solutions: Sequence[Sequence[str]],
    *,
    k: int,
    grade: Grader,
    rng: jax.Array,
    separator: str = "\n",
    on_grader_error: str = "raise",
    max_prefixes: int | None = None,
) -> PrefixValues:
    """Math-Shepherd labels: every step prefix of every solution rolled out K times.

    Args:
      completer: the rollout policy.
      problems: [N] problems (passed to `grade`, and `.prompt` starts each prefix).
      solutions: [N] lists of S_i >= 1 steps (no step holds the separator).
      k: rollouts per prefix, >= 1.
      grade: grade(problem, completion text) -> correct.
      rng: PRNG key of the rollouts.
      separator: joins the steps, and ends each prefix.
      on_grader_error: "raise" (default), or "skip" the solution and count it.
      max_prefixes: value only the first M prefixes of each solution (all
        rolled out when M < S_i: none of them is the whole solution).

    Returns:
      PrefixValues, values[i] of shape [min(S_i, M)].
    """
    _check_inputs(problems, solutions, k, separator, on_grader_error)
    if max_prefixes is not None and max_prefixes < 1:
        raise ValueError(f"max_prefixes={max_prefixes} must be >= 1")
    start = time.perf_counter()
    skipped: dict[str, int] = {}
    outcomes = grade_solutions(
        problems, solutions, grade=grade, separator=separator, on_grader_error=on_grader_error
    )
    counts = [min(len(steps), max_prefixes or len(steps)) for steps in solutions]
    # Every prefix but the whole solution is rolled out; the solution is graded.
    jobs = [
        (i, s)
        for i, steps in enumerate(solutions)
        if outcomes[i] is not None
        for s in range(counts[i])
        if s < len(steps) - 1
    ]
    prompts = [problems[i] for i, _ in jobs]
    prefixes = [prefix_text(solutions[i], s, separator) for i, s in jobs]
    completer.check_lengths(prompts, [f"solution {i} step {s}" for i, s in jobs], prefixes)
    texts = completer.continuations(prompts, k=k, rng=rng, prefixes=prefixes) if jobs else []
    values: list[np.ndarray | None] = []
    for i, steps in enumerate(solutions):
        if outcomes[i] is None:
            skipped["grader_error"] = skipped.get("grader_error", 0) + 1
            values.append(None)
        else:
            v = np.full(counts[i], np.nan)
            if counts[i] == len(steps):
                v[-1] = float(outcomes[i])
            values.append(v)
    for (i, s), continuations in zip(jobs, texts):
        if values[i] is None:
            continue
        value = _prefix_value(
            grade, problems, solutions, i, s, continuations, separator, on_grader_error
        )
        if value is None:
            skipped["grader_error"] = skipped.get("grader_error", 0) + 1
            values[i] = None
            continue
        values[i][s] = value
    return PrefixValues(
        values=values,
        k=k,
        rollouts=len(jobs) * k,
        prefixes=len(jobs),
        seconds=time.perf_counter() - start,
        skipped=skipped,
    )


@dataclasses.dataclass
class FirstErrorSearch:
    """OmegaPRM-style binary search results.

    Attributes:
      first_errors: per solution, the first step whose prefix value is 0, or
        None (graded correct: no error searched for; or skipped).
      values: per solution, [S] prefix values where evaluated, NaN elsewhere.
      rollouts, prefixes, rounds: sampling cost (rounds = sampler passes).
      seconds, skipped: as PrefixValues.
    """

    first_errors: list[int | None]
    values: list[np.ndarray | None]
    k: int
    rollouts: int
    prefixes: int
    rounds: int
    seconds: float
    skipped: dict[str, int]

    def labels(self) -> list[list[float] | None]:
        """Hard labels: 1 before the first error, 0 from it on (the search assumes monotone labels)."""
        out = []
        for fe, v in zip(self.first_errors, self.values):
            if v is None:
                out.append(None)
            else:
                n = len(v)
                first = n if fe is None else fe
                out.append([1.0] * first + [0.0] * (n - first))
        return out


def first_error_search(
    completer: Completer,
    problems: Sequence[Any],
    solutions: Sequence[Sequence[str]],
    *,
    k: int,
    grade: Grader,
    rng: jax.Array,
    separator: str = "\n",
    on_grader_error: str = "raise",
) -> FirstErrorSearch:
    """The first error of each solution by binary search over its step prefixes.

    A solution graded correct is labelled all-correct with no rollouts. For one
    graded wrong, the last prefix (the solution) has value 0, so the first zero
    lies in [lo, hi] = [0, S − 1]; each round rolls out K completions from the
    middle prefix of every unresolved solution (one batched sampler pass):
    value > 0 moves lo past it, value 0 moves hi to it. Labels are assumed
    monotone (a prefix after an error cannot be rescued), as OmegaPRM does.
    Arguments as `monte_carlo_values`.
    """
    _check_inputs(problems, solutions, k, separator, on_grader_error)
    start = time.perf_counter()
    outcomes = grade_solutions(
        problems, solutions, grade=grade, separator=separator, on_grader_error=on_grader_error
    )
    skipped: dict[str, int] = {}
    values: list[np.ndarray | None] = []
    bounds: dict[int, list[int]] = {}
    for i, steps in enumerate(solutions):
        if outcomes[i] is None:
            skipped["grader_error"] = skipped.get("grader_error", 0) + 1
            values.append(None)
            continue
        v = np.full(len(steps), np.nan)
        v[-1] = float(outcomes[i])
        values.append(v)
        if not outcomes[i]:
            bounds[i] = [0, len(steps) - 1]
    longest = [i for i in bounds if len(solutions[i]) > 1]  # the longest prefix searched
    completer.check_lengths(
        [problems[i] for i in longest],
        [f"solution {i}" for i in longest],
        [prefix_text(solutions[i], len(solutions[i]) - 2, separator) for i in longest],
    )
    rollouts = prefixes = rounds = 0
    while True:
        active = [(i, (lo + hi) // 2) for i, (lo, hi) in bounds.items() if lo < hi]
        if not active:
            break
        rounds += 1
        rng, key = jax.random.split(rng)
        texts = completer.continuations(
            [problems[i] for i, _ in active],
            k=k,
            rng=key,
            prefixes=[prefix_text(solutions[i], m, separator) for i, m in active],
        )
        rollouts += k * len(active)
        prefixes += len(active)
        for (i, mid), continuations in zip(active, texts):
            value = _prefix_value(
                grade, problems, solutions, i, mid, continuations, separator, on_grader_error
            )
            if value is None:
                skipped["grader_error"] = skipped.get("grader_error", 0) + 1
                values[i] = None
                del bounds[i]
                continue
            values[i][mid] = value
            if values[i][mid] > 0:
                bounds[i][0] = mid + 1
            else:
                bounds[i][1] = mid
    first_errors = [bounds[i][0] if i in bounds else None for i in range(len(solutions))]
    return FirstErrorSearch(
        first_errors=first_errors,
        values=values,
        k=k,
        rollouts=rollouts,
        prefixes=prefixes,
        rounds=rounds,
        seconds=time.perf_counter() - start,
        skipped=skipped,
    )


def step_labels(
    problems: Sequence[Any],
    solutions: Sequence[Sequence[str]],
    labels: Sequence[Sequence[float] | None],
    first_errors: Sequence[int | None],
    *,
    outcomes: Sequence[bool | None] | None = None,
    fields: Sequence[dict] | None = None,
) -> list[StepLabels]:
    """StepLabels records (the PRM trainer's JSONL format) of the labelled solutions.

    Solutions without labels (skipped) are left out.
    """
    out = []
    for i, (p, steps, lab, fe) in enumerate(zip(problems, solutions, labels, first_errors)):
        if lab is None:
            continue
        correct = None if outcomes is None or outcomes[i] is None else bool(outcomes[i])
        out.append(
            StepLabels(
                prompt=p.prompt,
                steps=list(steps),
                labels=[float(x) for x in lab],
                first_error=fe,
                correct=correct,
                fields=dict(fields[i]) if fields is not None else {},
            )
        )
    return out
