"""Sampler: transformers greedy parity, log-probs by teacher forcing, EOS, buckets, bad input."""

import functools
import signal

import jax
import numpy as np
import pytest
import torch
import transformers
from scipy.special import log_softmax, logsumexp

from rewardjax.models import load_hf
from rewardjax.sampling import bucket, generate, pad_prompts, sampler

VOCAB = 64
PAD = 0
# Three prompts of different lengths (left-padded to the 16 bucket together).
PROMPTS = [
    [5, 9, 13],
    [7, 21, 33, 40, 41, 42, 3],
    [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
]
MAX_NEW = 12
N = 4  # samples per prompt in the sampling tests (one shape, fewer compiles)


def logprob_atol(logits, temperature: float = 1.0) -> float:
    """Tolerance of a float32 log-prob of z/T computed by two implementations.

    Each logit carries rounding of order eps·|z| from each of the matmuls that
    produced it (two layers of width 32 here: about √(2·32) = 8 roundings of
    independent sign) and from the log-sum-exp; dividing by T scales the
    error with the logits. 32·eps·max|z|/T bounds it (measured: 6–11·eps·max|z|/T),
    where a fixed 1e-5 failed on another machine at T = 0.5 (1.07e-5).
    """
    return 32 * np.finfo(np.float32).eps * float(np.max(np.abs(logits))) / temperature


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny transformers Qwen2 and the same weights loaded into rewardjax."""
    hf_config = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        # Std 0.3 spreads the logits (std ≈ 1.6), so greedy choices have clear margins
        # and top-k / top-p cut real probability mass.
        initializer_range=0.3,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=PAD,
    )
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(hf_config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = str(tmp_path_factory.mktemp("qwen2"))
    hf.save_pretrained(path)
    config, params = load_hf(path)
    return hf, config, params


def _hf_greedy(hf, eos_ids=None):
    tokens, mask = pad_prompts(PROMPTS, pad_id=PAD)
    with torch.no_grad():
        out = hf.generate(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=MAX_NEW,
            do_sample=False,
            eos_token_id=eos_ids,
            pad_token_id=PAD,
        )
    completion = out[:, tokens.shape[1] :].numpy()
    # transformers stops once every row is done; the rest would be padding.
    return np.pad(completion, ((0, 0), (0, MAX_NEW - completion.shape[1])), constant_values=PAD)


@pytest.fixture(scope="module")
def stops(model):
    """(eos, stop): tokens transformers' free-running greedy emits mid-way in rows 1 and 0."""
    hf, _, _ = model
    free = _hf_greedy(hf)
    return int(free[1, 4]), int(free[0, 6])


def _generate(model, **kwargs):
    _, config, params = model
    kwargs.setdefault("rng", jax.random.key(0))
    kwargs.setdefault("max_new_tokens", MAX_NEW)
    kwargs.setdefault("pad_id", PAD)
    prompts = kwargs.pop("prompts", PROMPTS)
    out = generate(config, params, prompts, **kwargs)
    return jax.tree.map(np.asarray, out)


@pytest.fixture(scope="module")
def greedy(model, stops):
    return _generate(model, temperature=0.0, eos_ids=stops)


def _teacher_forced_logits(hf, out, prompts=PROMPTS):
    """Float64 transformers logits that predicted each completion token: list of [n_r, V]."""
    rows = []
    for r in range(out.tokens.shape[0]):
        n = int(out.lengths[r])
        rows.append(prompts[int(out.prompt_index[r])] + out.tokens[r, :n].tolist())
    tokens, mask = pad_prompts(rows, pad_id=PAD)
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    with torch.no_grad():
        logits = hf(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits.double()
    width = tokens.shape[1]
    # Left-padded: completion token t of row r sits at width − n + t, predicted one earlier.
    return [logits[r, width - int(n) - 1 : width - 1].numpy() for r, n in enumerate(out.lengths)]


def _generate_traced(monkeypatch, model, **kwargs):
    """`_generate`, and the jaxpr of the compiled sampler that it called."""
    calls = []
    compiled = sampler._generate_jit
    monkeypatch.setattr(
        sampler, "_generate_jit", lambda *a, **k: calls.append((a, k)) or compiled(*a, **k)
    )
    out = _generate(model, **kwargs)
    ((args, static),) = calls
    return out, jax.make_jaxpr(functools.partial(compiled, **static))(*args).jaxpr


def _equations(jaxpr):
    """The equations of a jaxpr and of all the jaxprs nested in it (loops, branches, calls)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)


def _completion_rows(out):
    for r in range(out.tokens.shape[0]):
        n = int(out.lengths[r])
        yield r, out.tokens[r, :n], out.logprobs[r, :n]


# --- greedy ---------------------------------------------------------------------


def test_greedy_equals_transformers_generate(model, stops, greedy):
    hf, _, _ = model
    expected = _hf_greedy(hf, eos_ids=list(stops))
    np.testing.assert_array_equal(greedy.tokens, expected)
    # The stop ids really ended rows early (else this test would not cover EOS).
    assert greedy.lengths.min() < MAX_NEW


def test_eos_ends_a_row_mask_includes_it_and_padding_follows(greedy, stops):
    for r in range(len(PROMPTS)):
        row = greedy.tokens[r]
        hits = np.flatnonzero(np.isin(row, stops))
        length = hits[0] + 1 if hits.size else MAX_NEW
        assert greedy.lengths[r] == length
        np.testing.assert_array_equal(greedy.mask[r], np.arange(MAX_NEW) < length)
        assert np.all(row[length:] == PAD)
        assert np.all(greedy.logprobs[r, length:] == 0.0)
    assert greedy.mask.dtype == np.float32 and greedy.lengths.dtype == np.int32


def test_stop_ids_act_like_eos(model, stops, greedy):
    eos, stop = stops
    out = _generate(model, temperature=0.0, eos_ids=(eos,), stop_ids=(stop,))
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    np.testing.assert_array_equal(out.mask, greedy.mask)


def test_greedy_logprobs_are_the_model_logprobs(model, greedy):
    hf, _, _ = model
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(greedy), _teacher_forced_logits(hf, greedy), strict=True
    ):
        np.testing.assert_array_equal(tokens, logits.argmax(-1))
        expected = log_softmax(logits, -1)[np.arange(len(tokens)), tokens]
        np.testing.assert_allclose(
            logprobs, expected, atol=logprob_atol(logits), err_msg=f"row {r}"
        )


def test_greedy_without_kv_cache_is_identical(model, stops, greedy):
    out = _generate(model, temperature=0.0, eos_ids=stops, kv_cache=False)
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    np.testing.assert_array_equal(out.mask, greedy.mask)
    np.testing.assert_allclose(out.logprobs, greedy.logprobs, atol=1e-5)


def test_top_k_one_and_tiny_top_p_equal_greedy(model, stops, greedy):
    top_k = _generate(model, temperature=1.0, top_k=1, eos_ids=stops, rng=jax.random.key(7))
    np.testing.assert_array_equal(top_k.tokens, greedy.tokens)
    top_p = _generate(model, temperature=1.0, top_p=1e-6, eos_ids=stops, rng=jax.random.key(8))
    np.testing.assert_array_equal(top_p.tokens, greedy.tokens)
    # A one-token sampling distribution: log-prob 0 on every completion token.
    np.testing.assert_allclose(top_k.logprobs, 0.0, atol=1e-6)


def test_array_prompts_equal_list_prompts(model, stops, greedy):
    tokens, mask = pad_prompts(PROMPTS, pad_id=PAD, length=20)  # wider than the bucket
    out = _generate(model, prompts=(tokens, mask), temperature=0.0, eos_ids=stops)
    np.testing.assert_array_equal(out.tokens, greedy.tokens)


# --- sampling -------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(model):
    return _generate(model, temperature=1.0, n=N, rng=jax.random.key(0))


def test_deterministic_for_a_key_and_different_across_keys(model, samples):
    again = _generate(model, temperature=1.0, n=N, rng=jax.random.key(0))
    np.testing.assert_array_equal(again.tokens, samples.tokens)
    np.testing.assert_array_equal(again.logprobs, samples.logprobs)
    other = _generate(model, temperature=1.0, n=N, rng=jax.random.key(1))
    assert np.mean(other.tokens != samples.tokens) > 0.5


def test_rows_are_group_contiguous(samples):
    # Row p·n + g is sample g of prompt p.
    np.testing.assert_array_equal(samples.prompt_index, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    assert samples.tokens.shape == (len(PROMPTS) * N, MAX_NEW)
    for p in range(len(PROMPTS)):
        group = samples.tokens[p * N : (p + 1) * N]
        assert len({tuple(row) for row in group}) == N  # independent samples


def test_logprobs_at_temperature_one_equal_teacher_forcing(model, samples):
    # Teacher forcing uses prompt_index: rows in the wrong group would not match.
    hf, _, _ = model
    assert samples.lengths.min() == MAX_NEW  # no stop ids: every row runs to the budget
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(samples), _teacher_forced_logits(hf, samples), strict=True
    ):
        expected = log_softmax(logits, -1)[np.arange(len(tokens)), tokens]
        np.testing.assert_allclose(
            logprobs, expected, atol=logprob_atol(logits), err_msg=f"row {r}"
        )


def test_logprobs_at_temperature_half(model):
    hf, _, _ = model
    out = _generate(model, temperature=0.5, n=N, rng=jax.random.key(2))
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(out), _teacher_forced_logits(hf, out), strict=True
    ):
        expected = log_softmax(logits / 0.5, -1)[np.arange(len(tokens)), tokens]
        np.testing.assert_allclose(
            logprobs, expected, atol=logprob_atol(logits, 0.5), err_msg=f"row {r}"
        )


def test_top_k_samples_stay_in_the_top_k(model):
    hf, _, _ = model
    k = 3
    out = _generate(model, temperature=1.0, top_k=k, n=N, rng=jax.random.key(3))
    outside_greedy = 0
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(out), _teacher_forced_logits(hf, out), strict=True
    ):
        steps = np.arange(len(tokens))
        rank = (logits > logits[steps, tokens][:, None]).sum(-1)
        assert np.all(rank < k), f"row {r}: ranks {rank}"
        outside_greedy += int(np.sum(rank > 0))
        # Renormalised over the k kept tokens: logit − logsumexp(top k).
        top = np.sort(logits, -1)[:, -k:]
        expected = logits[steps, tokens] - logsumexp(top, -1)
        np.testing.assert_allclose(
            logprobs, expected, atol=logprob_atol(logits), err_msg=f"row {r}"
        )
    assert outside_greedy > 0  # the filter kept more than the argmax


def test_top_p_samples_stay_in_the_nucleus(model):
    hf, _, _ = model
    top_p = 0.7
    out = _generate(model, temperature=1.0, top_p=top_p, n=N, rng=jax.random.key(4))
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(out), _teacher_forced_logits(hf, out), strict=True
    ):
        for t, token in enumerate(tokens):
            probs = np.exp(log_softmax(logits[t]))
            order = np.argsort(-probs)
            mass_before = np.cumsum(probs[order]) - probs[order]
            # Nucleus: the most likely tokens until their mass reaches top_p.
            kept = order[mass_before < top_p]
            assert token in kept, f"row {r} step {t}: token {token} not in {kept}"
            expected = np.log(probs[token] / probs[kept].sum())
            np.testing.assert_allclose(logprobs[t], expected, atol=logprob_atol(logits[t]))


# --- cache blocks ---------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["greedy", "samples"])
def test_cache_block_does_not_change_outputs(model, stops, request, monkeypatch, fixture):
    # Completion bucket 16 over 32 slots: block 16 reads 16 or 32 slots, block 4 reads
    # 16, 20, 24 or 28 (the filled length rounded up), so the reads really differ.
    hf, _, _ = model
    kwargs = dict(temperature=0.0, eos_ids=stops) if fixture == "greedy" else dict(n=N)
    # Block 16 is the default for this bucket: the fixture's compiled sampler. (Reads
    # of other lengths may sum in another order: log-probs to within rounding.)
    whole = _generate(model, cache_block=16, **kwargs)
    np.testing.assert_array_equal(whole.tokens, request.getfixturevalue(fixture).tokens)
    small, jaxpr = _generate_traced(monkeypatch, model, cache_block=4, **kwargs)
    # Not vacuous: the cached attention picks one of 8 read lengths (4, 8, ..., 32).
    switches = [e for e in _equations(jaxpr) if e.primitive.name == "cond"]
    assert {len(e.params["branches"]) for e in switches} == {8}
    np.testing.assert_array_equal(small.tokens, whole.tokens)
    np.testing.assert_array_equal(small.mask, whole.mask)
    np.testing.assert_allclose(small.logprobs, whole.logprobs, rtol=0, atol=1e-6)
    assert small.lengths.max() == MAX_NEW  # a row decoded across several blocks
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(small), _teacher_forced_logits(hf, small), strict=True
    ):
        if fixture == "greedy":
            np.testing.assert_array_equal(tokens, logits.argmax(-1))
        expected = log_softmax(logits, -1)[np.arange(len(tokens)), tokens]
        np.testing.assert_allclose(
            logprobs, expected, atol=logprob_atol(logits), err_msg=f"row {r}"
        )


# --- long-tailed rows: per-row budgets and compaction ---------------------------

# Four prompts × N samples = 16 rows, with compaction down to 2 rows: capacities
# 16, 8, 4, 2.
TAIL_PROMPTS = [*PROMPTS, [2, 4, 6, 8, 10]]
TAIL_ROWS = len(TAIL_PROMPTS) * N
# Spread so that the running rows fit in 8, then 4, then 2 of them well before the
# end, and the last two running (rows 3 and 14) sit in the middle of the batch, so
# compaction moves them to other batch slots.
TAIL_BUDGETS = np.array([9, 1, 7, 12, 5, 2, 1, 4, 3, 2, 6, 10, 3, 8, 12, 12])
TAIL = dict(prompts=TAIL_PROMPTS, n=N, temperature=1.0, rng=jax.random.key(11))


@pytest.fixture(scope="module")
def tail_free(model):
    """16 rows sampled to the full budget (no EOS, no per-row budgets: nothing to compact)."""
    return _generate(model, compact_min_rows=0, **TAIL)


@pytest.fixture(scope="module")
def tail_eos(tail_free):
    """The token sampled most often in `tail_free`: as EOS it ends many rows early."""
    values, counts = np.unique(tail_free.tokens, return_counts=True)
    return int(values[np.argmax(counts)])


def _tail_with_eos(model, eos, compact_min_rows):
    return _generate(
        model,
        eos_ids=(eos,),
        max_new_tokens_per_row=TAIL_BUDGETS,
        compact_min_rows=compact_min_rows,
        **TAIL,
    )


@pytest.fixture(scope="module")
def tail(model, tail_eos):
    """The 16 rows with per-row budgets and EOS, compacted down to 2 rows."""
    return _tail_with_eos(model, tail_eos, compact_min_rows=2)


def _assert_prefixes(out, free):
    """Each row of `out` is the start of the same row of `free` (same key), then padding."""
    for r in range(out.tokens.shape[0]):
        n = int(out.lengths[r])
        np.testing.assert_array_equal(out.tokens[r, :n], free.tokens[r, :n], err_msg=f"row {r}")
        np.testing.assert_allclose(
            out.logprobs[r, :n], free.logprobs[r, :n], rtol=0, atol=1e-6, err_msg=f"row {r}"
        )
        np.testing.assert_array_equal(out.mask[r], np.arange(MAX_NEW) < n)
        assert np.all(out.tokens[r, n:] == PAD) and np.all(out.logprobs[r, n:] == 0.0)


def test_row_capacities_hand_cases():
    assert sampler.row_capacities(16, 8) == (16, 8)
    assert sampler.row_capacities(16, 2) == (16, 8, 4, 2)
    assert sampler.row_capacities(12, 8) == (12,)  # 6 rows would be fewer than 8
    assert sampler.row_capacities(7, 2) == (7, 4, 2)  # halves round up
    assert sampler.row_capacities(16, 0) == (16,)  # 0: compaction off
    assert sampler.row_capacities(16, 16) == (16,)
    assert sampler.row_capacities(3, 8) == (3,)  # fewer rows than min_rows


def test_row_capacities_down_to_one_row():
    # ⌈1/2⌉ = 1 >= min_rows=1 once looped forever; the alarm turns a hang into a failure.
    def too_slow(signum, frame):
        raise TimeoutError("row_capacities(rows, 1) did not return")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        assert sampler.row_capacities(5, 1) == (5, 3, 2, 1)
        assert sampler.row_capacities(1, 1) == (1,)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_compaction_does_not_change_outputs(model, tail_eos, tail, monkeypatch):
    # Not vacuous: one decode loop per capacity, over 16, 8, 4 and 2 rows (the
    # loops' `alive` flags)...
    again, jaxpr = _generate_traced(
        monkeypatch,
        model,
        eos_ids=(tail_eos,),
        max_new_tokens_per_row=TAIL_BUDGETS,
        compact_min_rows=2,
        **TAIL,
    )
    loops = [e for e in _equations(jaxpr) if e.primitive.name == "while"]
    alive = [v.aval.shape for e in loops for v in e.outvars if v.aval.dtype == np.bool_]
    assert alive == [(16,), (8,), (4,), (2,)]
    np.testing.assert_array_equal(again.tokens, tail.tokens)  # same key, same output
    np.testing.assert_array_equal(again.logprobs, tail.logprobs)
    # ...and each of them ran: after s steps, (lengths > s) rows are still running;
    # the decode loop moves to the next capacity once they fit, and must then run
    # another step.
    for capacity in (8, 4, 2):
        steps = np.flatnonzero([np.sum(tail.lengths > s) <= capacity for s in range(MAX_NEW)])
        assert steps.size and steps[0] < tail.lengths.max(), f"never decoded in {capacity}"
    # EOS ended rows before their budgets (rows of all lengths, compacted or not).
    ended_by_eos = tail.lengths < TAIL_BUDGETS
    assert ended_by_eos.sum() >= 3
    assert np.all(
        tail.tokens[np.flatnonzero(ended_by_eos), tail.lengths[ended_by_eos] - 1] == tail_eos
    )
    assert np.all(tail.lengths <= TAIL_BUDGETS)
    uncompacted = _tail_with_eos(model, tail_eos, compact_min_rows=0)
    np.testing.assert_array_equal(tail.tokens, uncompacted.tokens)
    np.testing.assert_array_equal(tail.logprobs, uncompacted.logprobs)
    np.testing.assert_array_equal(tail.mask, uncompacted.mask)
    np.testing.assert_array_equal(tail.lengths, uncompacted.lengths)


def test_compacted_rows_are_prefixes_of_the_full_rows(model, tail, tail_free):
    # Row r's token at step t is drawn with fold_in(fold_in(rng, t), r): ending
    # other rows, and moving this one to another batch slot, does not change it.
    _assert_prefixes(tail, tail_free)
    # ...and the log-probs are still the model's (the compacted KV cache is right).
    hf, _, _ = model
    for (r, tokens, logprobs), logits in zip(
        _completion_rows(tail), _teacher_forced_logits(hf, tail, TAIL_PROMPTS), strict=True
    ):
        expected = log_softmax(logits, -1)[np.arange(len(tokens)), tokens]
        np.testing.assert_allclose(
            logprobs, expected, atol=logprob_atol(logits), err_msg=f"row {r}"
        )


def test_per_row_budgets_without_eos_set_the_lengths(model, tail_free):
    out = _generate(model, compact_min_rows=0, max_new_tokens_per_row=TAIL_BUDGETS, **TAIL)
    np.testing.assert_array_equal(out.lengths, TAIL_BUDGETS)
    _assert_prefixes(out, tail_free)
    # A budget of max_new_tokens for every row is the same as no budgets.
    full = _generate(
        model, compact_min_rows=0, max_new_tokens_per_row=np.full(TAIL_ROWS, MAX_NEW), **TAIL
    )
    np.testing.assert_array_equal(full.tokens, tail_free.tokens)
    np.testing.assert_array_equal(full.logprobs, tail_free.logprobs)


def test_compaction_and_budgets_reuse_the_compiled_sampler(model, tail_eos, tail):
    # `tail` compiled these settings; prompts (in the 16 bucket), keys, budgets and
    # so where the batch is compacted are all traced values.
    compiled = sampler._generate_jit._cache_size()
    rng = np.random.default_rng(0)
    cases = (
        (TAIL_PROMPTS[::-1], np.ones(TAIL_ROWS, int)),  # every row ends after one step
        ([[3] * 16, [4], [5, 6], [7] * 9], np.full(TAIL_ROWS, MAX_NEW)),
        ([[9, 8, 7]] * 4, rng.integers(1, MAX_NEW + 1, TAIL_ROWS)),
    )
    for seed, (prompts, budgets) in enumerate(cases):
        out = _generate(
            model,
            **dict(TAIL, prompts=prompts, rng=jax.random.key(100 + seed)),
            eos_ids=(tail_eos,),
            max_new_tokens_per_row=budgets,
            compact_min_rows=2,
        )
        assert np.all(out.lengths <= budgets) and np.all(out.lengths >= 1)
    assert sampler._generate_jit._cache_size() == compiled


# --- buckets --------------------------------------------------------------------


def test_bucket_hand_cases():
    assert bucket(1, (16, 32)) == 16
    assert bucket(16, (16, 32)) == 16
    assert bucket(17, (32, 16)) == 32
    with pytest.raises(ValueError, match="length 33 exceeds the largest bucket 32"):
        bucket(33, (16, 32))


def test_pad_prompts_hand_case():
    tokens, mask = pad_prompts([[4, 5], [6]], pad_id=9, length=3)
    np.testing.assert_array_equal(tokens, [[9, 4, 5], [9, 9, 6]])
    np.testing.assert_array_equal(mask, [[0, 1, 1], [0, 0, 1]])


def test_lengths_in_one_bucket_reuse_the_compiled_sampler(model):
    kwargs = dict(temperature=1.0, n=N, rng=jax.random.key(5))
    _generate(model, max_new_tokens=3, **kwargs)
    compiled = sampler._generate_jit._cache_size()
    # Prompts of 1..16 tokens share the 16 bucket; budgets of 1..16 share 16.
    for lengths, budget in (((1, 16, 2), 16), ((5, 1, 9), 7), ((12, 2, 3), 1)):
        prompts = [[7] * length for length in lengths]
        out = _generate(model, prompts=prompts, max_new_tokens=budget, **kwargs)
        assert out.tokens.shape == (len(PROMPTS) * N, budget)
    assert sampler._generate_jit._cache_size() == compiled
    # The counter is live: a 17-token prompt moves to the 32 bucket and compiles.
    _generate(model, prompts=[[1] * 17, [2], [3]], max_new_tokens=3, **kwargs)
    assert sampler._generate_jit._cache_size() == compiled + 1


# --- bad input ------------------------------------------------------------------


def test_default_cache_block_fits_any_completion_bucket(model, stops, greedy):
    # A completion bucket that is not a power of two, and no cache_block given.
    out = _generate(model, temperature=0.0, eos_ids=stops, completion_buckets=(24,))
    np.testing.assert_array_equal(out.tokens, greedy.tokens)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prompts=[[1, 2], []]), r"prompt row 1 is empty"),
        (dict(prompts=[]), r"no prompts"),
        (dict(prompts=[[1, 64, 2]]), r"token id 64 is outside the vocabulary \[0, 64\)"),
        (dict(prompts=[[1, -3]]), r"token id -3 is outside"),
        (
            dict(prompts=[[1] * 100], max_new_tokens=40, max_length=128),
            r"prompt of 100 tokens \+ max_new_tokens=40 exceeds the cache length 128",
        ),
        (dict(max_new_tokens=200), r"max_new_tokens=200 exceeds the cache length 128"),
        (dict(max_new_tokens=0), r"max_new_tokens=0"),
        (dict(n=0), r"n=0"),
        (dict(temperature=-1.0), r"temperature=-1.0"),
        (dict(top_p=0.0), r"top_p=0.0"),
        (dict(top_p=1.5), r"top_p=1.5"),
        (dict(eos_ids=(70,)), r"eos_ids contains 70"),
        (dict(stop_ids=(-1,)), r"stop_ids contains -1"),
        (dict(pad_id=64), r"pad_id contains 64"),
        (dict(cache_block=5), r"cache_block=5 must divide the completion bucket 16"),
        (dict(cache_block=32), r"cache_block=32 must divide the completion bucket 16"),
        (
            dict(max_new_tokens=20, cache_block=12),
            r"cache_block=12 must divide the completion bucket 32",
        ),
        (dict(cache_block=0), r"cache_block=0"),
        (dict(compact_min_rows=-1), r"compact_min_rows=-1 must be >= 0"),
        (
            dict(max_new_tokens_per_row=[4, 4]),
            r"max_new_tokens_per_row has shape \(2,\); expected \(3,\)",
        ),
        (
            dict(n=2, max_new_tokens_per_row=[4, 4, 4]),
            r"max_new_tokens_per_row has shape \(3,\); expected \(6,\)",
        ),
        (
            dict(max_new_tokens_per_row=[[4, 4, 4]]),
            r"max_new_tokens_per_row has shape \(1, 3\)",
        ),
        (
            dict(max_new_tokens_per_row=[4, 0, 4]),
            r"max_new_tokens_per_row must lie in \[1, max_new_tokens=12\], got \[0, 4\]",
        ),
        (
            dict(max_new_tokens_per_row=[4, 13, 4]),
            r"max_new_tokens_per_row must lie in \[1, max_new_tokens=12\], got \[4, 13\]",
        ),
        (
            dict(max_new_tokens_per_row=[4, 1.5, 4]),
            r"max_new_tokens_per_row must hold integers, not float64",
        ),
    ],
)
def test_bad_input_names_the_value(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _generate(model, **kwargs)


def test_non_left_padded_array_prompts_are_rejected(model):
    tokens = np.array([[1, 2, 0], [0, 3, 4]], np.int32)
    right_padded = np.array([[1, 1, 0], [0, 1, 1]], np.int32)
    with pytest.raises(ValueError, match=r"prompt row 0 is not left-padded"):
        _generate(model, prompts=(tokens, right_padded))
    holes = np.array([[1, 0, 1], [0, 1, 1]], np.int32)
    with pytest.raises(ValueError, match=r"prompt row 0 is not left-padded"):
        _generate(model, prompts=(tokens, holes))
    with pytest.raises(ValueError, match=r"\(2, 3\) and mask \(2, 2\)"):
        _generate(model, prompts=(tokens, holes[:, :2]))
