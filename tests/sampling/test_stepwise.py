"""Step-level generation: steps concatenated equal `generate`, fork copies rows, truncate rewinds."""

import itertools

import jax
import numpy as np
import pytest

from rewardjax import models
from rewardjax.sampling import generate, stepwise

PROMPTS = [[5, 9, 13], [7, 21, 33, 40, 41, 42, 3]]
MAX_NEW = 24


@pytest.fixture(scope="module")
def policy():
    # Std 0.5 spreads the logits of the random model: greedy rows do not loop on one token.
    config = models.preset("tiny", num_layers=1, vocab_size=99, initializer_range=0.5)
    return config, models.init_params(config, jax.random.key(0))


def _generate(policy, temperature, eos_ids=()):
    config, params = policy
    out = generate(
        config,
        params,
        PROMPTS,
        rng=jax.random.key(1),
        max_new_tokens=MAX_NEW,
        temperature=temperature,
        eos_ids=eos_ids,
    )
    return jax.tree.map(np.asarray, out)


def _run_steps(policy, state, *, temperature, step_ids, eos_ids=(), max_step_tokens=6):
    """Extends until every row is done; returns (state, cursors, list of StepOutputs)."""
    config, params = policy
    cursors, outs = [], []
    for _ in range(4 * MAX_NEW):
        if np.all(np.asarray(state.done)):
            break
        state, out = stepwise.extend(
            config,
            params,
            state,
            rng=jax.random.key(1),
            max_step_tokens=max_step_tokens,
            step_ids=step_ids,
            eos_ids=eos_ids,
            temperature=temperature,
        )
        cursors.append(int(state.cursor))
        outs.append(jax.tree.map(np.asarray, out))
    return state, cursors, outs


def _separator(tokens):
    """A token each row emits early and again later: steps of several lengths."""
    counts = np.bincount(tokens[:, : MAX_NEW // 2].ravel(), minlength=99)
    return int(counts.argmax())


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_steps_concatenated_equal_generate(policy, temperature):
    # Same rng, same key rule (completion index, row): sampled rows match too.
    reference = _generate(policy, temperature)
    sep = _separator(reference.tokens)
    config, params = policy
    # One free slot: the cursor runs into the end of the cache and compacts.
    state = stepwise.start(
        config,
        params,
        PROMPTS,
        max_new_tokens=MAX_NEW,
        completion_buckets=(MAX_NEW,),
        cache_slack=1,
    )
    state, cursors, outs = _run_steps(policy, state, temperature=temperature, step_ids=(sep,))
    assert any(b < a for a, b in itertools.pairwise(cursors)), "the cache never compacted"
    np.testing.assert_array_equal(np.asarray(state.tokens)[:, :MAX_NEW], reference.tokens)
    np.testing.assert_allclose(
        np.asarray(state.logprobs)[:, :MAX_NEW], reference.logprobs, atol=1e-5
    )
    # Each step ends at the separator, except the last one (the budget).
    for out in outs:
        for b in range(len(PROMPTS)):
            if out.ended[b] == stepwise.STEP_END:
                assert reference.tokens[b, out.start[b] + out.length[b] - 1] == sep
    assert len(outs) > 2


def test_eos_ends_a_row_for_good(policy):
    free = _generate(policy, 0.0)
    eos = int(free.tokens[1, 5])
    reference = _generate(policy, 0.0, eos_ids=(eos,))
    config, params = policy
    state = stepwise.start(config, params, PROMPTS, max_new_tokens=MAX_NEW)
    state, _, outs = _run_steps(
        policy, state, temperature=0.0, step_ids=(_separator(free.tokens),), eos_ids=(eos,)
    )
    length = np.asarray(state.length)
    np.testing.assert_array_equal(length, reference.lengths)
    np.testing.assert_array_equal(np.asarray(state.tokens)[:, :MAX_NEW], reference.tokens)
    assert length[1] <= 6 and outs[-1].ended[1] in (stepwise.NOT_RUN, stepwise.EOS)
    # The done row emits nothing afterwards.
    assert all(out.length[1] == 0 for out in outs if out.start[1] >= length[1])


def test_fork_continues_like_its_source(policy):
    config, params = policy
    kwargs = dict(max_step_tokens=5, temperature=1.0, rng=jax.random.key(3))
    state = stepwise.start(config, params, PROMPTS, max_new_tokens=MAX_NEW)
    state, _ = stepwise.extend(config, params, state, **kwargs)
    forked = stepwise.fork(state, [1, 1, 0])
    source = stepwise.fork(state, [0, 1])  # a copy: extend consumes its state
    source, _ = stepwise.extend(config, params, source, **kwargs)
    forked, out = stepwise.extend(config, params, forked, row_ids=[1, 1, 0], **kwargs)
    expected = np.asarray(source.tokens)[[1, 1, 0]]
    np.testing.assert_array_equal(np.asarray(forked.tokens), expected)
    np.testing.assert_array_equal(np.asarray(out.start), [5, 5, 5])
    np.testing.assert_array_equal(
        np.asarray(forked.last_logits), np.asarray(source.last_logits)[[1, 1, 0]]
    )
    # Different ids draw different continuations of the same row.
    twins = stepwise.fork(state, [0, 0])
    twins, _ = stepwise.extend(config, params, twins, row_ids=[0, 7], **kwargs)
    twins = np.asarray(twins.tokens)
    assert not np.array_equal(twins[0, 5:10], twins[1, 5:10])


def test_truncate_then_greedy_regenerates_the_same_tokens(policy):
    reference = _generate(policy, 0.0)
    config, params = policy
    state = stepwise.start(config, params, PROMPTS, max_new_tokens=MAX_NEW)
    state, _ = stepwise.extend(
        config, params, state, rng=jax.random.key(1), max_step_tokens=9, temperature=0.0
    )
    logits_before = np.asarray(state.last_logits)
    state = stepwise.truncate(config, params, state, [4, 0])
    np.testing.assert_array_equal(np.asarray(state.length), [4, 0])
    tokens = np.asarray(state.tokens)
    np.testing.assert_array_equal(tokens[0, :4], reference.tokens[0, :4])
    assert np.all(tokens[0, 4:] == 0) and np.all(tokens[1] == 0)
    state, _ = stepwise.extend(
        config, params, state, rng=jax.random.key(1), max_step_tokens=5, temperature=0.0
    )
    # Row 0 back at 9 tokens: the logits after its last token are the ones before the cut.
    np.testing.assert_allclose(np.asarray(state.last_logits)[0], logits_before[0], atol=1e-4)
    state, _, _ = _run_steps(policy, state, temperature=0.0, step_ids=())
    np.testing.assert_array_equal(np.asarray(state.tokens)[:, :MAX_NEW], reference.tokens)
    # Untouched rows (keep = length) keep their logits exactly.
    same = stepwise.truncate(config, params, stepwise.fork(state, [0, 1]), [MAX_NEW, 3])
    np.testing.assert_array_equal(np.asarray(same.last_logits)[0], np.asarray(state.last_logits)[0])


def test_extend_compiles_once_per_batch_size(policy):
    config, params = policy
    state = stepwise.start(config, params, PROMPTS, max_new_tokens=MAX_NEW, cache_slack=2)
    state, _ = stepwise.extend(config, params, state, rng=jax.random.key(0), max_step_tokens=1)
    compiled = stepwise._extend_jit._cache_size()
    for budget in (3, 7, 2, 11):  # new budgets, new keys, compaction on the way
        state, _ = stepwise.extend(
            config, params, state, rng=jax.random.key(budget), max_step_tokens=budget
        )
    state = stepwise.fork(state, [0, 0])
    state, _ = stepwise.extend(config, params, state, rng=jax.random.key(0), max_step_tokens=2)
    assert stepwise._extend_jit._cache_size() == compiled


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda c, p, s: stepwise.extend(c, p, s, rng=jax.random.key(0), max_step_tokens=0),
            "max_step_tokens=0",
        ),
        (
            lambda c, p, s: stepwise.extend(
                c, p, s, rng=jax.random.key(0), max_step_tokens=2, step_ids=(99,)
            ),
            "step_ids contains 99",
        ),
        (
            lambda c, p, s: stepwise.extend(
                c, p, s, rng=jax.random.key(0), max_step_tokens=2, run=[True]
            ),
            r"run has shape \(1,\)",
        ),
        (lambda c, p, s: stepwise.fork(s, [0, 2]), r"fork rows must lie in \[0, 2\)"),
        (
            lambda c, p, s: stepwise.truncate(c, p, s, [1, 0]),
            r"keep\[0\]=1 must lie in \[0, length=0\]",
        ),
        (
            lambda c, p, s: stepwise.start(c, p, [[3], []], max_new_tokens=4),
            "prompt row 1 is empty",
        ),
        (
            lambda c, p, s: stepwise.start(c, p, [[3]], max_new_tokens=4, cache_slack=0),
            "cache_slack=0",
        ),
    ],
)
def test_bad_input_names_the_value(policy, call, match):
    config, params = policy
    state = stepwise.start(config, params, PROMPTS, max_new_tokens=MAX_NEW)
    with pytest.raises(ValueError, match=match):
        call(config, params, state)
