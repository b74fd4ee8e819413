"""Test-time search guided by a process reward model: beam, greedy step, early rejection, Refined-BoN.

  expander = PolicyExpander(config, params, tok, separator="\\n", max_new_tokens=256)
  result = beam_search(expander, prm.step_scores, prompts, rng=key, beam_width=4,
                       expansions=4, max_steps=12, aggregation="min")
  result.texts, result.generated_tokens, result.scored_tokens

The searches run on an `Expander`: the policy behind `rewardjax.sampling.stepwise`
(`PolicyExpander`: prefill once, continue rows by one step, fork rows by
copying cache rows), or any object with the same four methods (the tests
script one over a hand-made tree). A scorer is `score(prompts, step_lists) ->
list of [S] step-score arrays` on text — `ProcessRewardModel.step_scores` and
`ImplicitProcessRewardModel.step_scores` fit — and a partial or complete
solution's score is `prm_aggregate` of its step scores (min, last, prod, mean).

Steps are cut in tokens: a step ends with a token whose text ends with the
separator (its own token, or a BPE merge such as ".\n\n" for "\n\n"), the
last one with the EOS or the token budget; the scorer reads each step's text
without its separator. Every search is a deterministic function of its key: row ids name the
candidates, so `early_rejection` continues exactly the candidates that
`best_of_n` with the same key would have run to the end.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from rewardjax.data.steps import check_separator_token
from rewardjax.inference.compute import causal_pairs
from rewardjax.inference.selection import PRM_AGGREGATIONS, prm_aggregate
from rewardjax.models.config import ModelConfig
from rewardjax.sampling import stepwise
from rewardjax.tokenizers import Tokenizer

Array = jax.Array
Scorer = Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[Any]]

__all__ = [
    "Candidate",
    "Expander",
    "PolicyExpander",
    "SearchResult",
    "beam_search",
    "best_of_n",
    "early_rejection",
    "first_flagged_step",
    "greedy_step_search",
    "refined_best_of_n",
    "separator_token_ids",
    "split_step_tokens",
]


class Expander(Protocol):
    """Rows of partial completions that a search continues, forks and cuts back.

    `state` is opaque to the search; row r of a state is one partial completion.
    """

    tokenizer: Tokenizer
    separator: str  # the step separator's text
    separator_ids: tuple[int, ...]  # the tokens that end a step (their text ends with it)
    max_rows: int

    def start(self, prompts: Sequence[Sequence[int]]) -> Any:
        """One row per prompt, nothing generated."""

    def fork(self, state: Any, rows: np.ndarray) -> Any:
        """Row i of the result is a copy of row rows[i] (repeats allowed)."""

    def extend(
        self,
        state: Any,
        *,
        rng: Array,
        row_ids: np.ndarray,  # [B] the id each row draws its tokens with
        run: np.ndarray,  # [B] bool rows to continue
        to_step_end: bool,  # stop at the separator (else only at EOS / the token limit)
        max_tokens: int | None,  # most tokens per row in this call (None: the budget)
    ) -> tuple[Any, list[list[int]], np.ndarray]:
        """(state, the tokens each row emitted, [B] bool: the row is complete)."""

    def truncate(self, state: Any, keep: np.ndarray) -> Any:
        """Cuts row r back to its first keep[r] completion tokens."""


class PolicyExpander:
    """An `Expander` over the KV-cache step sampler (`rewardjax.sampling.stepwise`).

    Args:
      config, params: the policy.
      tokenizer: its tokenizer (EOS and pad ids, decoding steps to text).
      separator: the step separator (`separator_token_ids`: the tokens ending with it).
      max_new_tokens: completion budget of every row.
      max_step_tokens: a step longer than this is cut (the next call goes on with it).
      max_rows: the largest batch a search may run (rows = problems × width × expansions).
      temperature, top_k, top_p: sampling settings.
      cache_slack: see `stepwise.start`.
    """

    def __init__(
        self,
        config: ModelConfig,
        params,
        tokenizer: Tokenizer,
        *,
        separator: str = "\n",
        max_new_tokens: int = 256,
        max_step_tokens: int = 64,
        max_rows: int = 256,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        cache_slack: int | None = None,
    ):
        self.separator = separator
        self.separator_ids = separator_token_ids(tokenizer, separator)
        if tokenizer.eos_id is None:
            raise ValueError(f"tokenizer {tokenizer.source} has no EOS id: rows could not end")
        self.config, self.params, self.tokenizer = config, params, tokenizer
        self.max_new_tokens, self.max_step_tokens = max_new_tokens, max_step_tokens
        self.max_rows, self.cache_slack = max_rows, cache_slack
        self.sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.eos_ids = tuple(tokenizer.stop_ids or (tokenizer.eos_id,))

    def start(self, prompts):
        return stepwise.start(
            self.config,
            self.params,
            prompts,
            max_new_tokens=self.max_new_tokens,
            pad_id=self.pad_id,
            cache_slack=self.cache_slack,
        )

    def fork(self, state, rows):
        return stepwise.fork(state, rows)

    def extend(self, state, *, rng, row_ids, run, to_step_end, max_tokens):
        state, out = stepwise.extend(
            self.config,
            self.params,
            state,
            rng=rng,
            max_step_tokens=max_tokens
            or (self.max_step_tokens if to_step_end else self.max_new_tokens),
            step_ids=self.separator_ids if to_step_end else (),
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            row_ids=row_ids,
            run=run,
            **self.sampling,
        )
        tokens, start, length, done = jax.device_get(
            (state.tokens, out.start, out.length, state.done)
        )
        emitted = [tokens[r, s : s + n].tolist() for r, (s, n) in enumerate(zip(start, length))]
        return state, emitted, np.asarray(done)

    def truncate(self, state, keep):
        return stepwise.truncate(self.config, self.params, state, keep, pad_id=self.pad_id)


def separator_token_ids(tokenizer: Tokenizer, separator: str) -> tuple[int, ...]:
    """Every token whose text ends with the step separator: the tokens that end a step.

    The separator's own token, and BPE merges of it with what precedes it
    (".\n\n", "\n\n\n" for "\n\n"). A separator that no token ends with
    (it is spelled only across tokens, or absent) is an error: step-level
    search stops at a token.
    """
    check_separator_token(tokenizer, separator)
    specials = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, *tokenizer.stop_ids}
    ids = tuple(
        i
        for i in range(tokenizer.vocab_size)
        if i not in specials and tokenizer.decode([i]).endswith(separator)
    )
    if not ids:
        raise ValueError(
            f"tokenizer {tokenizer.source}: no token ends with the step separator "
            f"{separator!r} (it encodes to {tokenizer.encode(separator)}); step-level search "
            "stops at a token that ends with it"
        )
    return ids


def split_step_tokens(tokens: Sequence[int], separator_ids) -> list[list[int]]:
    """A completion's steps in tokens: cut after each separator token (a trailing partial
    step kept). `separator_ids`: one id or a collection of them."""
    ends = {int(separator_ids)} if np.ndim(separator_ids) == 0 else {int(i) for i in separator_ids}
    steps, current = [], []
    for token in tokens:
        current.append(int(token))
        if token in ends:
            steps.append(current)
            current = []
    if current or not steps:
        steps.append(current)
    return steps


@dataclasses.dataclass
class Candidate:
    """One partial or complete solution.

    Attributes:
      tokens: its completion tokens so far (separators and EOS included).
      done: it ended with an EOS or the token budget.
      step_scores: [S] the scorer's step scores (None before scoring).
      score: their aggregate.
      origin: "sample", or "refined" for a Refined-BoN regeneration.
    """

    tokens: list[int]
    done: bool = False
    step_scores: np.ndarray | None = None
    score: float = -math.inf
    origin: str = "sample"


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What every search returns, per problem.

    Attributes:
      tokens: the chosen completion's tokens.
      texts: the chosen completion decoded.
      scores: [P] its aggregated score.
      pools: every complete (or budget-cut) candidate considered, for votes.
      generated_tokens: [P] policy tokens generated (all candidates, rejected ones included).
      scored_sequences: [P] solutions (partial or complete) sent to the scorer.
      scored_tokens: [P] completion tokens in them (the scorer's input, prompts excluded).
      scorer_calls: batched scorer calls.
      prompt_tokens: [P] prompt tokens the policy prefilled (once per problem).
      policy_attended: [P] positions the policy's tokens attended to, prefill and
        decode (`compute.causal_pairs`; cached prefixes are not recomputed).
      scorer_input_tokens: [P] tokens the scorer read (prompt and solution, each call).
      scorer_attended: [P] positions those attended to.
      `compute.search_flops(result, policy_config, scorer_config)` turns the
      counts into FLOPs.
    """

    tokens: list[list[int]]
    texts: list[str]
    scores: np.ndarray
    pools: list[list[Candidate]]
    generated_tokens: np.ndarray
    scored_sequences: np.ndarray
    scored_tokens: np.ndarray
    scorer_calls: int
    prompt_tokens: np.ndarray
    policy_attended: np.ndarray
    scorer_input_tokens: np.ndarray
    scorer_attended: np.ndarray


class _Run:
    """Bookkeeping shared by the searches: scoring, accounting, picking."""

    def __init__(self, expander, scorer, prompts, aggregation, prompt_texts):
        if aggregation not in PRM_AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {aggregation!r}; known: {', '.join(PRM_AGGREGATIONS)}"
            )
        self.expander, self.scorer, self.aggregation = expander, scorer, aggregation
        self.sep, self.sep_ids = expander.separator, expander.separator_ids
        tok = expander.tokenizer
        self.prompt_texts = (
            list(prompt_texts) if prompt_texts is not None else [tok.decode(p) for p in prompts]
        )
        num = len(prompts)
        self.prompt_tokens = np.array([len(p) for p in prompts], np.int64)
        self.generated = np.zeros(num, np.int64)
        self.scored_sequences = np.zeros(num, np.int64)
        self.scored_tokens = np.zeros(num, np.int64)
        self.calls = 0
        # Each prompt is prefilled once; every later token attends to the cache.
        self.policy_attended = causal_pairs(0, self.prompt_tokens)
        self.scorer_input = np.zeros(num, np.float64)
        self.scorer_attended = np.zeros(num, np.float64)

    def step_texts(self, tokens: Sequence[int]) -> list[str]:
        tok = self.expander.tokenizer
        texts = []
        for step in split_step_tokens(tokens, self.sep_ids):
            text = tok.decode(step)
            while text.endswith(self.sep):  # the separator, and a merged run of it
                text = text[: -len(self.sep)]
            texts.append(text)
        # An EOS alone after the last separator is no step of its own.
        if len(texts) > 1 and not texts[-1].strip():
            texts.pop()
        return texts

    def score(self, problems: Sequence[int], candidates: Sequence[Candidate]) -> None:
        """Scores the candidates (one scorer call) in place."""
        if not candidates:
            return
        steps = [self.step_texts(c.tokens) for c in candidates]
        scores = self.scorer([self.prompt_texts[p] for p in problems], steps)
        if len(scores) != len(candidates):
            raise ValueError(
                f"the scorer returned {len(scores)} score rows for {len(candidates)} solutions"
            )
        self.calls += 1
        for p, c, s, row in zip(problems, candidates, steps, scores):
            row = np.asarray(row, np.float64).reshape(-1)
            if row.shape[0] != len(s):
                raise ValueError(
                    f"the scorer returned {row.shape[0]} step scores for a solution of "
                    f"{len(s)} steps"
                )
            c.step_scores = row
            c.score = float(prm_aggregate(row, method=self.aggregation))
            self.scored_sequences[p] += 1
            self.scored_tokens[p] += len(c.tokens)
            read = self.prompt_tokens[p] + len(c.tokens)  # the scorer reads it whole
            self.scorer_input[p] += read
            self.scorer_attended[p] += causal_pairs(0, read)

    def start(self, chunk, per_problem: int) -> tuple[Any, list[Candidate]]:
        """per_problem empty rows for each prompt of a chunk (problem-contiguous)."""
        rows = np.repeat(np.arange(len(chunk)), per_problem)
        state = self.expander.fork(self.expander.start(chunk), rows)
        return state, [Candidate([]) for _ in rows]

    def advance(
        self,
        state,
        rows: list[Candidate],
        running: np.ndarray,  # [B] bool rows to continue
        *,
        first: int,  # the chunk's first problem
        per_problem: int,  # rows of each problem (problem-contiguous)
        rng: Array,
        to_step_end: bool,
        max_tokens: int | None = None,
        row_ids: np.ndarray | None = None,  # default: the global row index
        keep: np.ndarray | None = None,  # [B] tokens of the row kept before the new ones
        origin: str = "sample",
    ):
        """Extends the running rows (replacing them in `rows`), counts and scores them."""
        if row_ids is None:
            row_ids = np.arange(len(rows)) + first * per_problem
        state, emitted, done = self.expander.extend(
            state,
            rng=rng,
            row_ids=row_ids,
            run=running,
            to_step_end=to_step_end,
            max_tokens=max_tokens,
        )
        live = np.flatnonzero(running)
        for r in live:
            prefix = rows[r].tokens if keep is None else rows[r].tokens[: keep[r]]
            rows[r] = Candidate(prefix + emitted[r], bool(done[r]), origin=origin)
            p = first + r // per_problem
            self.generated[p] += len(emitted[r])
            self.policy_attended[p] += causal_pairs(
                self.prompt_tokens[p] + len(prefix), len(emitted[r])
            )
        self.score([first + r // per_problem for r in live], [rows[r] for r in live])
        return state, live

    def result(self, pools: list[list[Candidate]]) -> SearchResult:
        best = [max(pool, key=lambda c: c.score) for pool in pools]
        return SearchResult(
            tokens=[c.tokens for c in best],
            texts=[self.expander.tokenizer.decode(c.tokens) for c in best],
            scores=np.array([c.score for c in best]),
            pools=pools,
            generated_tokens=self.generated,
            scored_sequences=self.scored_sequences,
            scored_tokens=self.scored_tokens,
            scorer_calls=self.calls,
            prompt_tokens=self.prompt_tokens,
            policy_attended=self.policy_attended,
            scorer_input_tokens=self.scorer_input,
            scorer_attended=self.scorer_attended,
        )


def _check_scorer(scorer, expander) -> None:
    """A scorer that names its separator or tokenizer must agree with the policy's."""
    owner = getattr(scorer, "__self__", scorer)
    separator = getattr(owner, "separator", None)
    tok = expander.tokenizer
    if separator is not None and separator != expander.separator:
        raise ValueError(
            f"the scorer reads steps at {separator!r}, the search cuts them at "
            f"{expander.separator!r}"
        )
    other = getattr(owner, "tokenizer", None)
    if other is not None and (other.vocab_size, other.source) != (tok.vocab_size, tok.source):
        raise ValueError(
            f"the scorer's tokenizer {other.source} (vocabulary {other.vocab_size}) is not the "
            f"policy's {tok.source} (vocabulary {tok.vocab_size})"
        )


def _check_rows(expander, per_problem: int, what: str) -> int:
    """Problems per batch, so that rows = problems × per_problem fit max_rows."""
    if per_problem > expander.max_rows:
        raise ValueError(
            f"{what} = {per_problem} rows per problem exceeds the expander's "
            f"max_rows={expander.max_rows}"
        )
    return expander.max_rows // per_problem


def _chunks(prompts, per_batch: int):
    for first in range(0, len(prompts), per_batch):
        yield first, prompts[first : first + per_batch]


def _top(candidates: Sequence[Candidate], k: int) -> list[int]:
    """Indices of the k best scores (ties: the earlier candidate first)."""
    return sorted(range(len(candidates)), key=lambda i: (-candidates[i].score, i))[:k]


def beam_search(
    expander: Expander,
    scorer: Scorer,
    prompts: Sequence[Sequence[int]],
    *,
    rng: Array,
    beam_width: int,
    expansions: int,
    max_steps: int,
    aggregation: str = "min",
    prompt_texts: Sequence[str] | None = None,
) -> SearchResult:
    """PRM-guided step-level beam search.

    Step 1 samples W·M first steps per problem. Each later step scores every
    new partial solution (`prm_aggregate` of its step scores), moves the
    complete ones to the pool, keeps the W best unfinished ones and forks each
    into M continuations. After `max_steps` the unfinished beams join the pool
    too; the answer is the pool's best by the same aggregate ("Scaling LLM
    Test-Time Compute Optimally can be More Effective than Scaling Model
    Parameters", Snell et al., 2024).

    Args:
      expander: the policy (`PolicyExpander`) or any `Expander`.
      scorer: score(prompt texts, step-text lists) → per-step score arrays.
      prompts: P token-id lists.
      rng: PRNG key; the result is a deterministic function of it.
      beam_width: W, beams kept per problem.
      expansions: M, continuations of each kept beam.
      max_steps: expansion rounds (a step longer than the expander's step
        token limit is cut there and goes on in the next round).
      aggregation: "min", "last", "prod" or "mean".
      prompt_texts: the prompts as the scorer should read them (default: decoded).

    Returns:
      SearchResult.
    """
    if beam_width < 1 or expansions < 1 or max_steps < 1:
        raise ValueError(
            f"beam_width={beam_width}, expansions={expansions}, max_steps={max_steps} "
            "must all be >= 1"
        )
    width = beam_width * expansions
    per_batch = _check_rows(expander, width, f"beam_width × expansions = {beam_width}×{expansions}")
    _check_scorer(scorer, expander)
    run = _Run(expander, scorer, prompts, aggregation, prompt_texts)
    pools: list[list[Candidate]] = [[] for _ in prompts]
    for first, chunk in _chunks(prompts, per_batch):
        num = len(chunk)
        state, rows = run.start(chunk, width)
        running = np.ones(num * width, bool)
        for step in range(max_steps):
            state, live = run.advance(
                state,
                rows,
                running,
                first=first,
                per_problem=width,
                rng=jax.random.fold_in(rng, step),
                to_step_end=True,
            )
            sources, running = np.zeros(num * width, np.int64), np.zeros(num * width, bool)
            for p in range(num):
                mine = [r for r in live if r // width == p]
                last = step == max_steps - 1
                pools[first + p] += [rows[r] for r in mine if rows[r].done or last]
                unfinished = [r for r in mine if not (rows[r].done or last)]
                kept = [unfinished[i] for i in _top([rows[r] for r in unfinished], beam_width)]
                base = p * width
                sources[base : base + width] = kept[0] if kept else base
                for j, r in enumerate(kept):
                    sources[base + j * expansions : base + (j + 1) * expansions] = r
                    running[base + j * expansions : base + (j + 1) * expansions] = True
            if not running.any():
                break
            state = expander.fork(state, sources)
            rows = [Candidate(list(rows[s].tokens)) for s in sources]
    return run.result(pools)


def greedy_step_search(
    expander: Expander,
    scorer: Scorer,
    prompts: Sequence[Sequence[int]],
    *,
    rng: Array,
    expansions: int,
    max_steps: int,
    aggregation: str = "min",
    prompt_texts: Sequence[str] | None = None,
) -> SearchResult:
    """Greedy step search: M candidates for each next step, keep the best (beam search, W = 1)."""
    return beam_search(
        expander,
        scorer,
        prompts,
        rng=rng,
        beam_width=1,
        expansions=expansions,
        max_steps=max_steps,
        aggregation=aggregation,
        prompt_texts=prompt_texts,
    )


def best_of_n(
    expander: Expander,
    scorer: Scorer,
    prompts: Sequence[Sequence[int]],
    *,
    rng: Array,
    n: int,
    aggregation: str = "min",
    prompt_texts: Sequence[str] | None = None,
) -> SearchResult:
    """N complete samples per problem, the best by aggregated PRM score (the baseline)."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    per_batch = _check_rows(expander, n, f"n = {n}")
    _check_scorer(scorer, expander)
    run = _Run(expander, scorer, prompts, aggregation, prompt_texts)
    pools: list[list[Candidate]] = []
    for first, chunk in _chunks(prompts, per_batch):
        state, rows = run.start(chunk, n)
        run.advance(
            state,
            rows,
            np.ones(len(rows), bool),
            first=first,
            per_problem=n,
            rng=rng,
            to_step_end=False,
        )
        pools += [rows[p * n : (p + 1) * n] for p in range(len(chunk))]
    return run.result(pools)


def early_rejection(
    expander: Expander,
    scorer: Scorer,
    prompts: Sequence[Sequence[int]],
    *,
    rng: Array,
    n: int,
    keep_fraction: float,
    prefix_tokens: int | None = None,
    aggregation: str = "min",
    prompt_texts: Sequence[str] | None = None,
) -> SearchResult:
    """Best-of-N that stops the hopeless candidates early.

    Samples N candidates up to τ = `prefix_tokens` tokens (None: to the end of
    their first step), scores the partial ones, keeps the ⌈keep_fraction·N⌉
    best of each problem and runs only those to the end; the answer is the
    best complete one ("Accelerating LLM Reasoning via Early Rejection with
    Partial Reward Modeling", 2025). Candidates are keyed as in `best_of_n`,
    so the kept ones are exactly the completions best-of-N with the same key
    samples, and `best_of_n(...).generated_tokens` minus this one's is the
    saving.

    Returns:
      SearchResult; pools hold the kept candidates (complete).
    """
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction={keep_fraction} must be in (0, 1]")
    if prefix_tokens is not None and prefix_tokens < 1:
        raise ValueError(f"prefix_tokens={prefix_tokens} must be >= 1")
    per_batch = _check_rows(expander, n, f"n = {n}")
    _check_scorer(scorer, expander)
    keep = math.ceil(keep_fraction * n)
    run = _Run(expander, scorer, prompts, aggregation, prompt_texts)
    pools: list[list[Candidate]] = []
    for first, chunk in _chunks(prompts, per_batch):
        num = len(chunk)
        state, rows = run.start(chunk, n)
        state, _ = run.advance(
            state,
            rows,
            np.ones(num * n, bool),
            first=first,
            per_problem=n,
            rng=rng,
            to_step_end=prefix_tokens is None,
            max_tokens=prefix_tokens,
        )
        kept = np.concatenate(
            [p * n + np.array(sorted(_top(rows[p * n : (p + 1) * n], keep))) for p in range(num)]
        )
        state = expander.fork(state, kept)
        rows = [rows[r] for r in kept]
        running = np.array([not c.done for c in rows])
        if running.any():
            run.advance(
                state,
                rows,
                running,
                first=first,
                per_problem=keep,
                rng=rng,
                to_step_end=False,
                row_ids=kept + first * n,  # the candidates' ids in best-of-N
            )
        pools += [rows[p * keep : (p + 1) * keep] for p in range(num)]
    return run.result(pools)


def first_flagged_step(step_scores: np.ndarray, threshold: float) -> int | None:
    """Index of the first step scored below `threshold`, None when there is none."""
    below = np.flatnonzero(np.asarray(step_scores) < threshold)
    return int(below[0]) if below.size else None


def refined_best_of_n(
    expander: Expander,
    scorer: Scorer,
    prompts: Sequence[Sequence[int]],
    *,
    rng: Array,
    n: int,
    threshold: float,
    rounds: int,
    aggregation: str = "min",
    prompt_texts: Sequence[str] | None = None,
) -> SearchResult:
    """Refined best-of-N: regenerate each candidate from its first low-scored step.

    Samples N complete candidates. In each of up to R `rounds`, every
    candidate of the last round whose first step scored below `threshold` is
    cut back to the steps before that one (the cache is reused, not
    re-prefilled) and regenerated to the end; the regenerations join the
    pool, and best-of-N by aggregated score picks from the whole pool.

    Returns:
      SearchResult; pools hold the N samples then the regenerations.
    """
    if n < 1 or rounds < 0:
        raise ValueError(f"n={n} must be >= 1 and rounds={rounds} >= 0")
    per_batch = _check_rows(expander, n, f"n = {n}")
    _check_scorer(scorer, expander)
    run = _Run(expander, scorer, prompts, aggregation, prompt_texts)
    pools: list[list[Candidate]] = []
    for first, chunk in _chunks(prompts, per_batch):
        num = len(chunk)
        state, rows = run.start(chunk, n)
        common = dict(first=first, per_problem=n, to_step_end=False)
        state, _ = run.advance(
            state, rows, np.ones(num * n, bool), rng=jax.random.fold_in(rng, 0), **common
        )
        chunk_pools = [rows[p * n : (p + 1) * n] for p in range(num)]
        # Only the last round's candidates (the samples, then the regenerations) are refined.
        eligible = np.ones(num * n, bool)
        for round_ in range(1, rounds + 1):
            keep = np.array([len(c.tokens) for c in rows])
            for r, c in enumerate(rows):
                flagged = first_flagged_step(c.step_scores, threshold) if eligible[r] else None
                if flagged is not None:
                    steps = split_step_tokens(c.tokens, expander.separator_ids)
                    keep[r] = sum(len(s) for s in steps[:flagged])
            refine = keep < np.array([len(c.tokens) for c in rows])
            if not refine.any():
                break
            state = expander.truncate(state, keep)
            state, refined = run.advance(
                state,
                rows,
                refine,
                rng=jax.random.fold_in(rng, round_),
                keep=keep,
                origin="refined",
                **common,
            )
            for r in refined:
                chunk_pools[r // n].append(rows[r])
            eligible = refine
        pools += chunk_pools
    return run.result(pools)
