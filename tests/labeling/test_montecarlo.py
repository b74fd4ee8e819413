"""Monte Carlo prefix values and first-error search, on scripted completers and a real sampler."""

import dataclasses

import jax
import numpy as np
import pytest

from rewardjax import models, sampling
from rewardjax.data.steps import split_steps
from rewardjax.data.tasks.arithmetic_chain import ArithmeticChain
from rewardjax.data.tasks.base import Problem
from rewardjax.labeling import (
    Completer,
    first_error_of_values,
    first_error_search,
    monte_carlo_values,
    prefix_text,
    step_labels,
    tune_threshold,
)
from rewardjax.tokenizers import CharTokenizer, PromptFormat
from rewardjax.training.rollout import decode_completions, encode_prompts

TOK = CharTokenizer()


class ScriptedCompleter:
    """Continuations looked up by the step prefix (the text after the prompt)."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def check_lengths(self, prompts, where, prefixes=None):
        pass

    def continuations(self, prompts, *, k, rng, prefixes):
        self.calls.append(len(prompts))
        return [self.script[x][:k] for x in prefixes]


def _problem(uid="p"):
    return Problem(prompt="Q\n", answer="Y", steps=[], uid=uid, fields={})


def _ends_in_y(problem, text):
    return text.rstrip().endswith("Y")


def test_values_labels_and_first_error_by_hand():
    # Solution a, b, c: prefix "a\n" has 3 of 4 good rollouts, "a\nb\n" none;
    # the solution itself ends in "c", so its own grade is 0.
    script = {"a\n": ["Y", "N", "Y", "Y"], "a\nb\n": ["N", "N", "N", "N"]}
    completer = ScriptedCompleter(script)
    out = monte_carlo_values(
        completer, [_problem()], [["a", "b", "c"]], k=4, grade=_ends_in_y, rng=jax.random.key(0)
    )
    np.testing.assert_array_equal(out.values[0], [0.75, 0.0, 0.0])
    assert out.labels("soft") == [[0.75, 0.0, 0.0]]
    assert out.labels("hard") == [[1.0, 0.0, 0.0]]
    assert out.first_errors() == [1]
    assert (out.rollouts, out.prefixes) == (8, 2)
    assert completer.calls == [2]  # both prefixes in one batched call


def test_a_correct_last_step_and_a_late_first_error():
    script = {"a\n": ["Y", "Y"], "a\nb\n": ["N", "Y"]}
    out = monte_carlo_values(
        ScriptedCompleter(script),
        [_problem(), _problem()],
        [["a", "b", "Y"], ["a", "b", "c"]],
        k=2,
        grade=_ends_in_y,
        rng=jax.random.key(0),
    )
    np.testing.assert_array_equal(out.values[0], [1.0, 0.5, 1.0])
    np.testing.assert_array_equal(out.values[1], [1.0, 0.5, 0.0])
    assert out.first_errors() == [None, 2]


def test_a_threshold_calls_small_positive_values_errors():
    # A wrong step the completer sometimes recovers from: value 1/4, not 0.
    script = {"a\n": ["Y", "Y", "Y", "N"], "a\nb\n": ["N", "Y", "N", "N"]}
    out = monte_carlo_values(
        ScriptedCompleter(script),
        [_problem()],
        [["a", "b", "c"]],
        k=4,
        grade=_ends_in_y,
        rng=jax.random.key(0),
    )
    np.testing.assert_array_equal(out.values[0], [0.75, 0.25, 0.0])
    assert out.first_errors() == [2]  # Math-Shepherd's τ = 0 misses step 1
    assert out.first_errors(threshold=0.25) == [1]
    assert out.first_errors(threshold=0.5) == [1]
    assert out.first_errors(threshold=0.75) == [0]
    assert out.labels("hard", threshold=0.25) == [[1.0, 0.0, 0.0]]
    assert out.labels("soft", threshold=0.25) == [[0.75, 0.25, 0.0]]
    assert first_error_of_values(np.array([0.5, np.nan, 0.25]), 0.3) == 2  # NaN: not valued
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            out.first_errors(threshold=bad)


def test_tune_threshold_picks_the_best_level_and_the_smaller_on_ties():
    values = [
        np.array([1.0, 0.25, 0.0]),  # exact first error 1: found for τ in [0.25, 0.5)
        np.array([0.5, 0.25, 1.0]),  # no error: right for τ < 0.25
        np.array([0.75, 0.25, 0.0]),  # first error 1
        None,  # skipped: not counted
    ]
    exact = [1, None, 1, 0]
    # τ = 0: 1 of 3 right; 1/4: 2 of 3; 1/2: 2 of 3 (a tie: the smaller wins); 3/4: 1 of 3.
    tau, accuracy = tune_threshold(values, exact, k=4)
    assert tau == 0.25
    assert accuracy == pytest.approx(2 / 3)
    assert tune_threshold(values[1:2], [-1], k=4) == (0.0, 1.0)
    with pytest.raises(ValueError, match="no labelled solution"):
        tune_threshold([None], [None], k=4)
    with pytest.raises(ValueError, match="k=0"):
        tune_threshold(values, exact, k=0)


def test_max_prefixes_rolls_out_a_cut_solution_instead_of_grading_it():
    script = {"a\n": ["Y", "N"], "a\nb\n": ["Y", "Y"]}
    out = monte_carlo_values(
        ScriptedCompleter(script),
        [_problem()],
        [["a", "b", "c"]],
        k=2,
        grade=_ends_in_y,
        rng=jax.random.key(0),
        max_prefixes=2,
    )
    # The whole solution ("c": graded 0) is past the cut, so prefix 1 is rolled out.
    np.testing.assert_array_equal(out.values[0], [0.5, 1.0])
    assert out.first_errors() == [None] and out.rollouts == 4


def _solutions_with_error(num_steps, error):
    """Steps s0..s{S-1}; step `error` is "bad" (None: no bad step)."""
    return [("bad" if k == error else f"s{k}") for k in range(num_steps)]


class MonotoneCompleter(ScriptedCompleter):
    """A rollout ends well ("Y") exactly when the prefix holds no bad step."""

    def __init__(self):
        super().__init__({})

    def continuations(self, prompts, *, k, rng, prefixes):
        self.calls.append(len(prompts))
        return [["N" if "bad" in x else "Y"] * k for x in prefixes]


def _grade_no_bad(problem, text):
    return "bad" not in text


@pytest.mark.parametrize("num_steps", [1, 2, 3, 4, 5, 8, 9])
def test_search_finds_every_first_error_in_log_rounds(num_steps):
    cases = [_solutions_with_error(num_steps, e) for e in [None, *range(num_steps)]]
    problems = [_problem(str(i)) for i in range(len(cases))]
    found = first_error_search(
        MonotoneCompleter(), problems, cases, k=3, grade=_grade_no_bad, rng=jax.random.key(0)
    )
    assert found.first_errors == [None, *range(num_steps)]
    full = monte_carlo_values(
        MonotoneCompleter(), problems, cases, k=3, grade=_grade_no_bad, rng=jax.random.key(0)
    )
    assert full.first_errors() == found.first_errors
    rounds = int(np.ceil(np.log2(num_steps))) if num_steps > 1 else 0
    assert found.rounds <= rounds
    # At most one prefix per wrong solution per round; the correct one costs nothing.
    assert found.prefixes <= num_steps * rounds
    assert found.rollouts == 3 * found.prefixes
    assert found.rollouts <= full.rollouts
    assert found.labels()[0] == [1.0] * num_steps
    for e in range(num_steps):
        assert found.labels()[e + 1] == [1.0] * e + [0.0] * (num_steps - e)


def _continue_correctly(problem, prefix):
    """The continuation a noise-free completer writes: the remaining operations, from
    the value on the prefix's last line (so an earlier mistake propagates)."""
    terms, ops = problem.fields["terms"], problem.fields["ops"]
    lines = split_steps(prefix)
    value = int(lines[-1].split("=")[1])
    out = []
    for op, term in zip(ops[len(lines) :], terms[len(lines) + 1 :]):
        new = value + term if op == "+" else value - term
        out.append(f"{value}{op}{term}={new}")
        value = new
    return "\n".join([*out, f"A: {value}"])


class ArithmeticCompleter:
    def __init__(self, problems_by_prompt):
        self.problems = problems_by_prompt

    def check_lengths(self, prompts, where, prefixes=None):
        pass

    def continuations(self, prompts, *, k, rng, prefixes):
        out = []
        for p, prefix in zip(prompts, prefixes):
            problem = self.problems[p.prompt]
            out.append([_continue_correctly(problem, prefix)] * k)
        return out


def test_noise_free_completer_recovers_the_task_exact_first_errors():
    task = ArithmeticChain(num_steps=4, ops="+-", max_operand=9)
    rng = np.random.default_rng(0)
    problems, solutions, exact = [], [], []
    for i in range(24):
        p = task.problem(i, split="train", seed=1)
        text = task.demonstration(p, rng, error_rate=0.7)
        problems.append(p)
        solutions.append(split_steps(text))
        exact.append(task.grade(p, text).first_error)
    assert any(e is not None for e in exact) and any(e is None for e in exact)
    completer = ArithmeticCompleter({p.prompt: p for p in problems})

    def grade(problem, text):
        return task.grade(problem, text).correct

    mc = monte_carlo_values(completer, problems, solutions, k=2, grade=grade, rng=jax.random.key(0))
    assert mc.first_errors() == exact
    found = first_error_search(
        completer, problems, solutions, k=2, grade=grade, rng=jax.random.key(0)
    )
    assert found.first_errors == exact
    assert found.rollouts < 0.7 * mc.rollouts
    records = step_labels(problems, solutions, mc.labels("hard"), mc.first_errors())
    assert [r.first_error for r in records] == exact


def test_bad_inputs_are_errors():
    completer = ScriptedCompleter({"a\n": ["Y"]})
    args = dict(grade=_ends_in_y, rng=jax.random.key(0))
    with pytest.raises(ValueError, match="k=0"):
        monte_carlo_values(completer, [_problem()], [["a", "b"]], k=0, **args)
    with pytest.raises(ValueError, match="solution 0: step 0 contains the step separator"):
        monte_carlo_values(completer, [_problem()], [["a\nb", "c"]], k=1, **args)
    with pytest.raises(ValueError, match="non-empty list"):
        first_error_search(completer, [_problem()], [[]], k=1, **args)


def test_a_raising_grader_is_an_error_or_a_counted_skip():
    def grade(problem, text):
        if problem.uid == "boom":
            raise KeyError("no answer field")
        return _ends_in_y(problem, text)

    completer = ScriptedCompleter({"a\n": ["Y", "Y"]})
    problems = [_problem("ok"), _problem("boom")]
    with pytest.raises(RuntimeError, match="solution 1: the grader raised KeyError"):
        monte_carlo_values(
            completer, problems, [["a", "Y"]] * 2, k=2, grade=grade, rng=jax.random.key(0)
        )
    out = monte_carlo_values(
        completer,
        problems,
        [["a", "Y"]] * 2,
        k=2,
        grade=grade,
        rng=jax.random.key(0),
        on_grader_error="skip",
    )
    assert out.skipped == {"grader_error": 1}
    assert out.values[1] is None and out.first_errors() == [None, None]
    records = step_labels(problems, [["a", "Y"]] * 2, out.labels("soft"), out.first_errors())
    assert len(records) == 1 and records[0].labels == [1.0, 1.0]


def _tiny_completer(**kw):
    config = models.preset("tiny", num_layers=1, max_position_embeddings=64).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    params = models.init_params(config, jax.random.key(0), ("lm",))
    return Completer(config, params, TOK, **kw)


def test_batched_greedy_continuations_equal_one_call_per_prefix():
    # Sorting by length, chunking and padding must not mix up which prefix got which text.
    completer = _tiny_completer(max_new_tokens=6, temperature=0.0, batch_prefixes=3)
    prompts = ["Q: 1+2\n1+2=3\n", "Q: 5\n", "Q: 7-3+1\n7-3=4\n4+1=5\n", "Q: 2+2\n", "Q: 9\n9"]
    got = completer.continuations(prompts, k=2, rng=jax.random.key(1))
    for prompt, texts in zip(prompts, got):
        tokens, mask = encode_prompts(TOK, [prompt])
        out = sampling.generate(
            completer.config,
            completer.params,
            (tokens, mask),
            rng=jax.random.key(2),
            max_new_tokens=6,
            temperature=0.0,
            eos_ids=TOK.stop_ids,
            pad_id=TOK.pad_id,
        )
        want = decode_completions(TOK, out.tokens, out.lengths)[0]
        assert texts == [want, want]


def test_the_step_prefix_follows_the_rendered_prompt_not_the_user_turn():
    # A run's prompt format (here a suffix) writes the prompt; the solution's steps
    # come after it, as the policy wrote them: "Q: 5\n!!1+1=2\n", never "Q: 5\n1+1=2\n!!".
    tok = CharTokenizer()
    tok.prompt_format = PromptFormat(suffix="!!")
    completer = dataclasses.replace(_tiny_completer(), tokenizer=tok)
    problem = Problem(prompt="Q: 5\n", answer="2", steps=[], uid="p", fields={})
    assert completer.encode(problem, "1+1=2\n") == tok.encode("Q: 5\n!!1+1=2\n")
    assert completer.encode("Q: 5\n") == tok.encode("Q: 5\n!!")
    greedy = dataclasses.replace(completer, temperature=0.0, max_new_tokens=6)
    got = greedy.continuations([problem], k=1, rng=jax.random.key(1), prefixes=["1+1=2\n"])
    out = sampling.generate(
        greedy.config,
        greedy.params,
        [tok.encode("Q: 5\n!!1+1=2\n")],
        rng=jax.random.key(2),
        max_new_tokens=6,
        temperature=0.0,
        eos_ids=tok.stop_ids,
        pad_id=tok.pad_id,
    )
    assert got == [decode_completions(tok, out.tokens, out.lengths)]
    with pytest.raises(ValueError, match="1 prompts but 2 prefixes"):
        greedy.continuations([problem], k=1, rng=jax.random.key(1), prefixes=["a", "b"])


def test_a_prefix_longer_than_the_cache_is_an_error():
    completer = _tiny_completer(max_new_tokens=16)
    long_steps = ["1+1=2"] * 9  # 54 characters of steps + the prompt + 16 new > 64
    with pytest.raises(ValueError, match="solution 0 step 7: the prefix is .* exceeds"):
        monte_carlo_values(
            completer, [_problem()], [long_steps], k=1, grade=_ends_in_y, rng=jax.random.key(0)
        )


def test_prefix_text():
    assert prefix_text(["a", "b", "c"], 1, "\n") == "a\nb\n"
