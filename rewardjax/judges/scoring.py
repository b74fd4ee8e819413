"""Scores from a generative judge: P("Yes") in one pass, sampled votes, pairwise games.

  p = p_yes(config, params, tok, [pointwise_prompt(q, y) for q, y in rows])   # [B]
  verdicts = sample_verdicts(config, params, tok, prompts, parse=parse_pointwise,
                             rng=key, num_samples=8, max_new_tokens=32)
  scores, failures = aggregate_votes(*votes_array(verdicts, positive="Yes",
                                                  on_failure="exclude"), method="majority")
  stats = swap_consistency(verdicts_ab, verdicts_ba)    # agreement, position bias
  r = round_robin_scores(first_wins)                    # [G] from [G, G] games

The aggregation helpers are numpy functions of verdicts or probabilities, so
they are tested without a model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import ops, sampling
from rewardjax.judges.formats import PAIRWISE_WORDS, POINTWISE_WORDS, Verdict, verdict_scores
from rewardjax.models import build, lm_head_kernel
from rewardjax.models.config import ModelConfig
from rewardjax.models.forward import completion_hidden
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.rollout import decode_completions

__all__ = [
    "aggregate_votes",
    "encode_judge_prompts",
    "p_yes",
    "pair_preference",
    "reference_scores",
    "round_robin_scores",
    "sample_verdicts",
    "swap_consistency",
    "verdict_logprobs",
    "verdict_probabilities",
    "verdict_token_ids",
    "votes_array",
]

Array = jax.Array


# ---------------------------------------------------------------- one-pass P(Yes)


def verdict_token_ids(tokenizer: Tokenizer, words: Sequence[str]) -> tuple[int, ...]:
    """The first token id of each verdict word; an error when two words share it.

    A one-pass judge compares these ids in the next-token distribution after
    the prompt (with CharTokenizer "Yes" and "No" start with "Y" and "N"). A
    rationale judge's prefix ends in "Verdict: ", so the word follows a space;
    for a BPE tokenizer pass the words as they are tokenised there (" Yes").
    """
    ids = []
    for word in words:
        encoded = tokenizer.encode(word)
        if not encoded:
            raise ValueError(f"verdict word {word!r} encodes to no tokens")
        # A tokenizer without the word's first piece maps it to an unknown token.
        piece = tokenizer.decode([encoded[0]])
        if not piece or not word.startswith(piece):
            raise ValueError(
                f"tokenizer {getattr(tokenizer, 'source', tokenizer)!r} has no token for the "
                f"start of verdict word {word!r} (its first id {encoded[0]} decodes to {piece!r})"
            )
        ids.append(encoded[0])
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"verdict words {list(words)} share a first token ({ids}); one next-token "
            "distribution cannot tell them apart"
        )
    return tuple(ids)


@functools.partial(jax.jit, static_argnames=("config", "impl"))
def verdict_logprobs(
    params,
    prompt_tokens: Array,  # [B, L] left-padded judge prompts
    prompt_mask: Array,  # [B, L]
    verdict_ids: Array,  # [K] token ids of the verdict words
    *,
    config: ModelConfig,
    impl: str = "auto",
) -> Array:
    """log π(w_k | prompt) [B, K] over the full vocabulary, at the position after each prompt.

    One decoder pass over the prompts; the hidden state at the last prompt
    position predicts the first reply token.
    """
    batch = prompt_tokens.shape[0]
    model = build(config)
    empty = jnp.zeros((batch, 1), jnp.int32)  # no reply tokens: only position L-1 is read
    hidden = completion_hidden(model, params, prompt_tokens, prompt_mask, empty, empty)[:, 0]
    k = verdict_ids.shape[0]
    labels = jnp.broadcast_to(verdict_ids.astype(jnp.int32)[None, :], (batch, k))
    hidden = jnp.broadcast_to(hidden[:, None, :], (batch, k, hidden.shape[-1]))
    kernel = lm_head_kernel(config, params)
    return ops.token_logprobs_from_hidden(hidden, kernel, labels, impl=impl).logprobs


def encode_judge_prompts(
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    prefixes: Sequence[str] | None = None,
    buckets: Sequence[int] = sampling.DEFAULT_BUCKETS,
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded judge prompts (tokens [B, L], mask [B, L]), L rounded up to a bucket.

    Each prompt is the user turn, rendered by the tokenizer's prompt format
    (`encode_prompt`); `prefixes` are reply text already written (a rationale
    ending in "Verdict: "), appended after it.
    """
    if prefixes is not None and len(prefixes) != len(prompts):
        raise ValueError(f"{len(prefixes)} prefixes for {len(prompts)} prompts")
    ids = []
    for i, prompt in enumerate(prompts):
        row = tokenizer.encode_prompt(prompt)
        if prefixes is not None:
            row = row + tokenizer.encode(prefixes[i])
        if not row:
            raise ValueError(f"judge prompt {i} encodes to no tokens")
        ids.append(row)
    length = sampling.bucket(max(len(r) for r in ids), buckets)
    return sampling.pad_prompts(ids, pad_id=tokenizer.pad_id, length=length)


def _check_fits(config: ModelConfig, mask: np.ndarray, extra: int, what: str) -> None:
    """Judge prompts (+ `extra` reply tokens) must fit the judge's positions: an error naming one."""
    lengths = np.asarray(mask).sum(-1)
    worst = int(np.argmax(lengths))
    if int(lengths[worst]) + extra > config.max_position_embeddings:
        raise ValueError(
            f"{what}: judge prompt {worst} has {int(lengths[worst])} tokens"
            + (f" + {extra} reply tokens" if extra else "")
            + f", more than the judge's {config.max_position_embeddings} positions; shorten "
            "the problem or solution, or use a judge with a longer context"
        )


def verdict_probabilities(
    config: ModelConfig,
    params,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    words: Sequence[str],
    prefixes: Sequence[str] | None = None,
    impl: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """(P(w_k) normalised over the words [B, K], their full-vocabulary mass [B]).

    p_k = exp(z_k) / Σ_j exp(z_j) over the verdict tokens only (the `binary`
    mode of genrm_p_yes); the mass Σ_j π(w_j | prompt) says how much of the
    judge's distribution the verdict words hold at all.
    """
    ids = jnp.asarray(verdict_token_ids(tokenizer, words), jnp.int32)
    tokens, mask = encode_judge_prompts(tokenizer, prompts, prefixes=prefixes)
    _check_fits(config, mask, 0, "verdict_probabilities")
    logprobs = verdict_logprobs(params, tokens, mask, ids, config=config, impl=impl)
    probs = jax.nn.softmax(logprobs, axis=-1)
    mass = jnp.exp(jax.nn.logsumexp(logprobs, axis=-1))
    return np.asarray(probs), np.asarray(mass)


def p_yes(
    config: ModelConfig,
    params,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    prefixes: Sequence[str] | None = None,
    words: Sequence[str] = POINTWISE_WORDS,
    impl: str = "auto",
) -> np.ndarray:
    """P("Yes") [B] = e^{z_yes} / (e^{z_yes} + e^{z_no}) at the position after each judge prompt.

    One forward pass, no generation ("RewardDance: Reward Scaling in Visual
    Generation"; genrm_p_yes, binary mode). For a pairwise prompt pass
    words=PAIRWISE_WORDS to get P("A").
    """
    probs, _ = verdict_probabilities(
        config, params, tokenizer, prompts, words=words, prefixes=prefixes, impl=impl
    )
    return probs[:, 0]


# ---------------------------------------------------------------- sampled verdicts


def sample_verdicts(
    config: ModelConfig,
    params,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    parse: Callable[[str], Verdict],
    rng: Array,
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
) -> list[list[Verdict]]:
    """K judge replies per prompt, sampled and parsed: verdicts[b][k] (DeepSeek-GRM voting).

    A reply cut by `max_new_tokens` before its EOS is parsed as written (a
    strict parser fails it unless it is already complete).
    """
    tokens, mask = encode_judge_prompts(tokenizer, prompts)
    _check_fits(config, mask, max_new_tokens, "sample_verdicts")
    out = sampling.generate(
        config,
        params,
        (tokens, mask),
        rng=rng,
        max_new_tokens=max_new_tokens,
        n=num_samples,
        temperature=temperature,
        eos_ids=tokenizer.stop_ids,
        pad_id=tokenizer.pad_id,
    )
    verdicts = [parse(t) for t in decode_completions(tokenizer, out.tokens, out.lengths)]
    return [verdicts[b * num_samples : (b + 1) * num_samples] for b in range(len(prompts))]


def votes_array(
    verdicts: Sequence[Sequence[Verdict]], *, positive: str, on_failure: str | float
) -> tuple[np.ndarray, np.ndarray]:
    """(votes [B, K] float32, valid [B, K] bool) of verdicts[b][k] under `on_failure`."""
    scored = [verdict_scores(row, positive=positive, on_failure=on_failure) for row in verdicts]
    return np.stack([s for s, _ in scored]), np.stack([v for _, v in scored])


def aggregate_votes(
    votes: np.ndarray,  # [B, K] in [0, 1]; excluded entries NaN
    valid: np.ndarray,  # [B, K] bool
    *,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores [B], excluded votes per row [B]).

    method "mean": the mean of the valid votes. "majority": each valid vote
    counts as 1 when ≥ ½, else 0; the row scores 1.0 when more than half of
    them are 1, 0.0 when fewer, 0.5 on a tie. A row without a valid vote scores NaN (never a silent 0).
    """
    votes, valid = np.asarray(votes, np.float64), np.asarray(valid, bool)
    if votes.shape != valid.shape or votes.ndim != 2:
        raise ValueError(f"votes {votes.shape} and valid {valid.shape} must both be [B, K]")
    count = valid.sum(axis=1)
    if method == "mean":
        per_vote = votes
    elif method == "majority":
        per_vote = (votes >= 0.5).astype(np.float64)
    else:
        raise ValueError(f"method must be 'mean' or 'majority', got {method!r}")
    total = np.where(valid, per_vote, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    if method == "majority":
        mean = np.where(count > 0, np.sign(mean - 0.5) * 0.5 + 0.5, np.nan)
    return mean.astype(np.float32), (~valid).sum(axis=1)


# ---------------------------------------------------------------- pairwise, swapped


def pair_preference(p_a_xy: np.ndarray, p_a_yx: np.ndarray) -> np.ndarray:
    """P(x ≻ y) [N] = ½·(P(A | A=x, B=y) + 1 − P(A | A=y, B=x)): both orders averaged.

    A judge that only follows the position (P(A) = 1 in both orders) gets ½.
    """
    p_a_xy, p_a_yx = np.asarray(p_a_xy, np.float64), np.asarray(p_a_yx, np.float64)
    if p_a_xy.shape != p_a_yx.shape:
        raise ValueError(f"shapes differ: {p_a_xy.shape} vs {p_a_yx.shape}")
    return (0.5 * (p_a_xy + 1.0 - p_a_yx)).astype(np.float32)


def swap_consistency(
    first: Sequence[Verdict],  # [N] verdicts on (A=x, B=y)
    second: Sequence[Verdict],  # [N] verdicts on (A=y, B=x)
) -> dict:
    """Agreement and position bias of a pairwise judge asked in both orders.

    Over the pairs where both replies parse: `agreement` = share whose two
    verdicts name the same solution (A then B, or B then A); `position_bias` =
    share whose two verdicts name the same slot (the verdict follows the
    position, not the content) = 1 − agreement; `first_slot_rate` = share of
    all parsed verdicts that are "A". `preference` [N] is P(x ≻ y): 1 or 0
    when the orders agree, ½ when they conflict, NaN when either failed.
    """
    if len(first) != len(second):
        raise ValueError(f"{len(first)} first-order verdicts but {len(second)} swapped")
    a = PAIRWISE_WORDS[0]
    preference = np.full(len(first), np.nan, np.float32)
    consistent = biased = a_votes = parsed_votes = 0
    failures = 0
    for i, (u, v) in enumerate(zip(first, second)):
        for w in (u, v):
            if w.ok:
                parsed_votes += 1
                a_votes += w.value == a
        if not (u.ok and v.ok):
            failures += 1
            continue
        if u.value == v.value:
            biased += 1
            preference[i] = 0.5
        else:
            consistent += 1
            preference[i] = 1.0 if u.value == a else 0.0
    both = consistent + biased
    return {
        "agreement": consistent / both if both else math.nan,
        "position_bias": biased / both if both else math.nan,
        "first_slot_rate": a_votes / parsed_votes if parsed_votes else math.nan,
        "preference": preference,
        "pairs_with_failures": failures,
    }


def round_robin_scores(first_wins: np.ndarray) -> np.ndarray:
    """r_i = mean over j ≠ i of P(i ≻ j) [..., G], from both orders of every pair.

    first_wins[..., i, j] = P(judge says "A" | A = y_i, B = y_j) [..., G, G]
    (diagonal ignored; NaN = game not scored, left out). P(i ≻ j) =
    ½·(first_wins[i, j] + 1 − first_wins[j, i]) is antisymmetric, so Σ_i r_i =
    G/2 (genrm_pairwise_to_scalar, round-robin: wins / games).
    """
    w = np.asarray(first_wins, np.float64)
    g = w.shape[-1]
    if w.ndim < 2 or w.shape[-2] != g or g < 2:
        raise ValueError(f"first_wins must be [..., G, G] with G >= 2, got {w.shape}")
    pref = 0.5 * (w + 1.0 - np.swapaxes(w, -1, -2))  # NaN when either order is missing
    off = ~np.eye(g, dtype=bool)
    played = off & ~np.isnan(pref)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(played, pref, 0.0).sum(-1) / played.sum(-1)
    return r.astype(np.float32)


def reference_scores(
    p_a_candidate_first: np.ndarray,  # [..., G] P("A" | A = y_i, B = ref)
    p_a_reference_first: np.ndarray,  # [..., G] P("A" | A = ref, B = y_i)
) -> np.ndarray:
    """r_i = P(y_i ≻ reference) [..., G], both orders averaged (see `pair_preference`)."""
    return pair_preference(p_a_candidate_first, p_a_reference_first)
