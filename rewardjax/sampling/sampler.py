"""Batched autoregressive sampling with a preallocated KV cache.

  out = generate(config, params, prompts, rng=key, n=8, max_new_tokens=64,
                 temperature=1.0, eos_ids=(tok.eos_id,), pad_id=tok.pad_id)

One jit-compiled function does the prefill and the decode loops. Prompts are
left-padded to a length bucket and the completion budget is rounded up to a
bucket, so a run compiles once per (batch, prompt bucket, completion bucket,
sampling settings) and not once per prompt length. Rows are group-contiguous:
row p·n + g is sample g of prompt p.

Decode cost follows the work left: a step reads the KV cache only up to the
filled length (rounded up to `cache_block`), and rows that have ended are
compacted out of the batch whenever the running ones fit in half of it (RL
rollouts are long-tailed: most rows stop early). Each row samples with its own
key, so compaction does not change what is sampled.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.models.config import ModelConfig
from rewardjax.models.transformer import (
    Decoder,
    KVCache,
    build,
    default_positions,
    init_cache,
    write_cache,
)
from rewardjax.types import SampleOutput

Array = jax.Array
DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Static settings of one compiled sampler (hashable: a jit static argument).

    Attributes:
      temperature: 0 means greedy; otherwise logits are divided by it.
      top_k: keep the k most likely tokens (0 = off).
      top_p: nucleus mass to keep (1.0 = off).
      stop_ids: token ids that end a row (EOS and stop tokens); the stop token
        itself is part of the completion and of its mask.
      pad_id: token written after a row ends.
      kv_cache: False recomputes the whole sequence at every step (for
        benchmarks and debugging; same outputs, quadratic cost).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0
    kv_cache: bool = True


def bucket(length: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= length (error naming both when none fits)."""
    for b in sorted(buckets):
        if b >= length:
            return b
    raise ValueError(f"length {length} exceeds the largest bucket {max(buckets)}")


def _process_logits(logits: Array, sp: SamplingParams) -> Array:
    """[B, V] float32 logits → log-probs of the sampling distribution."""
    logits = logits.astype(jnp.float32) / sp.temperature
    if sp.top_k > 0 or sp.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        threshold = jnp.full(logits.shape[:1], -jnp.inf)
        if sp.top_k > 0:
            k = min(sp.top_k, logits.shape[-1])
            threshold = jnp.maximum(threshold, sorted_logits[:, k - 1])
        if sp.top_p < 1.0:
            probs = jax.nn.softmax(sorted_logits, axis=-1)
            mass_before = jnp.cumsum(probs, axis=-1) - probs
            # Keep a token while the mass of the tokens above it is < top_p; the
            # most likely token is always kept.
            keep = mass_before < sp.top_p
            smallest_kept = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1)
            threshold = jnp.maximum(threshold, smallest_kept)
        logits = jnp.where(logits >= threshold[:, None], logits, -jnp.inf)
    return jax.nn.log_softmax(logits, axis=-1)


def _choose(logits: Array, keys: Array, sp: SamplingParams) -> tuple[Array, Array]:
    """Samples one token per row, row b with keys[b]; returns (token [B], its log-prob [B]).

    Each row draws with its own key, so a row's sample does not depend on which
    other rows share the batch (compaction reorders and drops rows).
    """
    if sp.temperature == 0.0:
        # Greedy: the sampling distribution is a point mass; report the model's
        # own log-prob of the argmax instead of 0, which is what a trainer wants.
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        token = jnp.argmax(logits, axis=-1)
    else:
        logp = _process_logits(logits, sp)
        token = jax.vmap(jax.random.categorical)(keys, logp)
    return token.astype(jnp.int32), jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]


def _prefill(
    model: Decoder,
    tokens: Array,  # [P, L] left-padded prompts
    positions: Array,  # [P, L]
    slot_mask: Array,  # [P, S]
    cache: KVCache,
) -> tuple[Array, KVCache]:
    """`Decoder.decode` at cache slot 0 with the LM head at the last position only.

    Returns (logits [P, V], cache). The full decode would materialise [P, L, V]
    logits (gigabytes for a 150k vocabulary) to use one row of them.
    """
    length, slots = tokens.shape[1], slot_mask.shape[1]
    causal = jnp.arange(slots)[None, :] <= jnp.arange(length)[:, None]  # [L, S]
    mask = causal[None] & (slot_mask[:, None, :] > 0)
    hidden, new_kv = model._backbone(tokens, positions, mask, (cache.k, cache.v), 0)
    return model.apply_heads(hidden[:, -1]), write_cache(cache, new_kv, 0)


def default_cache_block(completion_bucket: int) -> int:
    """The cache read block `generate` uses by default: the smallest divisor of the
    completion bucket that is >= 16 slots and leaves at most 8 blocks."""
    return next(
        d
        for d in range(max(1, completion_bucket // 8), completion_bucket + 1)
        if completion_bucket % d == 0 and d >= min(16, completion_bucket)
    )


def row_capacities(rows: int, min_rows: int) -> tuple[int, ...]:
    """Decode batch sizes as finished rows are compacted out: rows, ⌈rows/2⌉, ... ≥ min_rows.

    `min_rows=0` turns compaction off (one size). Each size is one compiled
    decode loop, so their number is bounded by log2(rows / min_rows) + 1.
    """
    sizes = [rows]
    while min_rows and sizes[-1] > 1 and -(-sizes[-1] // 2) >= min_rows:
        sizes.append(-(-sizes[-1] // 2))
    return tuple(sizes)


def _compact(live: dict, capacity: int) -> dict:
    """The first `capacity` rows of the decode state, running rows first (in row order)."""
    keep = jnp.argsort(~live["alive"], stable=True)[:capacity]
    rows = {k: v for k, v in live.items() if k != "cache"}
    rows = jax.tree.map(lambda x: jnp.take(x, keep, axis=0), rows)
    return dict(rows, cache=jax.tree.map(lambda x: jnp.take(x, keep, axis=1), live["cache"]))


@functools.partial(
    jax.jit,
    static_argnames=(
        "config",
        "n",
        "completion_bucket",
        "sp",
        "cache_sharding",
        "cache_block",
        "capacities",
    ),
)
def _generate_jit(
    params,
    prompt_tokens: Array,  # [P, L] left-padded
    prompt_mask: Array,  # [P, L]
    rng: Array,
    row_budgets: Array,  # [P·n] int32: new tokens each row may emit (<= completion_bucket)
    *,
    config: ModelConfig,
    n: int,
    completion_bucket: int,
    sp: SamplingParams,
    cache_sharding=None,
    cache_block: int = 0,
    capacities: tuple[int, ...] = (),
):
    """Prefill, then one decode `while_loop` per batch size in `capacities`.

    All rows decode in lockstep (step t writes cache slot prompt_len + t), so the
    filled part of the cache is the same for every row and attention reads it
    up to a multiple of `cache_block`. When the rows still running fit in the
    next, halved capacity, they are gathered into it (cache rows included) and
    the loop goes on with the smaller batch; `rows` maps each batch slot to its
    output row, so outputs come back in the original order.
    """
    # Sampling never differentiates: remat would only turn the prefill's static
    # slot 0 into a traced index (and the prefill into a cached-attention call).
    model = build(config.replace(remat="none"), cache_block=cache_block)
    variables = {"params": params}
    num_prompts, prompt_len = prompt_tokens.shape
    batch = num_prompts * n
    slots = prompt_len + completion_bucket
    positions = default_positions(prompt_mask)
    slot_mask = jnp.zeros((num_prompts, slots), jnp.int32).at[:, :prompt_len].set(prompt_mask)
    stop_ids = jnp.asarray(sp.stop_ids or (-1,), jnp.int32)
    capacities = capacities or (batch,)
    max_steps = jnp.max(row_budgets)

    if sp.kv_cache:
        cache = init_cache(config, num_prompts, slots)
        if cache_sharding is not None:
            cache = jax.lax.with_sharding_constraint(cache, cache_sharding)
        last_logits, cache = model.apply(
            variables, prompt_tokens, positions, slot_mask, cache, method=_prefill
        )
        # Prefill once per prompt, then copy the cache to the n samples.
        cache = jax.tree.map(lambda x: jnp.repeat(x, n, axis=1), cache)
        if cache_sharding is not None:
            cache = jax.lax.with_sharding_constraint(cache, cache_sharding)
        all_tokens = None
    else:
        cache = None
        hidden = model.apply(
            variables, prompt_tokens, attention_mask=prompt_mask, method="hidden_states"
        )
        last_logits = model.apply(variables, hidden[:, -1], method="apply_heads")
        all_tokens = (
            jnp.zeros((batch, slots), jnp.int32)
            .at[:, :prompt_len]
            .set(jnp.repeat(prompt_tokens, n, axis=0))
        )

    out = dict(
        tokens=jnp.full((batch, completion_bucket), sp.pad_id, jnp.int32),
        logprobs=jnp.zeros((batch, completion_bucket), jnp.float32),
        mask=jnp.zeros((batch, completion_bucket), jnp.float32),
    )
    live = dict(
        rows=jnp.arange(batch, dtype=jnp.int32),
        alive=row_budgets > 0,
        budget=row_budgets,
        cache=cache,
        slot_mask=jnp.repeat(slot_mask, n, axis=0),
        all_tokens=all_tokens,
        last_logits=jnp.repeat(last_logits, n, axis=0),
        position=jnp.repeat(positions[:, -1] + 1, n, axis=0),
    )

    def body(carry):
        step, out, s = carry
        keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(rng, step), s["rows"])
        token, logp = _choose(s["last_logits"], keys, sp)
        alive, position = s["alive"], s["position"]
        token = jnp.where(alive, token, sp.pad_id)
        ends = jnp.any(token[:, None] == stop_ids[None, :], axis=-1) | (step + 1 >= s["budget"])
        slot = prompt_len + step
        slot_mask = s["slot_mask"].at[:, slot].set(alive.astype(jnp.int32))
        # Finished rows write nothing: their index points past the output.
        rows = jnp.where(alive, s["rows"], batch)
        out = dict(
            tokens=out["tokens"].at[rows, step].set(token, mode="drop"),
            logprobs=out["logprobs"].at[rows, step].set(logp, mode="drop"),
            mask=out["mask"].at[rows, step].set(1.0, mode="drop"),
        )
        s = dict(s, alive=alive & ~ends, slot_mask=slot_mask, position=position + 1)
        if sp.kv_cache:
            logits, s["cache"] = model.apply(
                variables,
                token[:, None],
                position[:, None],
                slot_mask,
                s["cache"],
                slot,
                method="decode",
            )
            s["last_logits"] = logits[:, 0]
        else:
            s["all_tokens"] = s["all_tokens"].at[:, slot].set(token)
            hidden = model.apply(
                variables, s["all_tokens"], attention_mask=slot_mask, method="hidden_states"
            )
            hidden = jax.lax.dynamic_index_in_dim(hidden, slot, axis=1, keepdims=False)
            s["last_logits"] = model.apply(variables, hidden, method="apply_heads")
        return step + 1, out, s

    step = jnp.int32(0)
    for level, capacity in enumerate(capacities):
        if level:
            # The running rows first (stable: in row order), then finished ones.
            live = _compact(live, capacity)
        fits_next = capacities[level + 1] if level + 1 < len(capacities) else 0

        def cond(carry, fits_next=fits_next):
            step, _, s = carry
            running = jnp.sum(s["alive"])
            return (step < max_steps) & (running > fits_next)

        step, out, live = jax.lax.while_loop(cond, body, (step, out, live))
    return out["tokens"], out["logprobs"], out["mask"]


def pad_prompts(
    prompts: Sequence[Sequence[int]], *, pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads ragged token lists to [P, length] (default: the longest)."""
    length = length or max(len(p) for p in prompts)
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    mask = np.zeros((len(prompts), length), np.int32)
    for i, p in enumerate(prompts):
        if len(p):
            tokens[i, length - len(p) :] = p
            mask[i, length - len(p) :] = 1
    return tokens, mask


def generate(
    config: ModelConfig,
    params,
    prompts: Sequence[Sequence[int]] | tuple[np.ndarray, np.ndarray],
    *,
    rng: Array,
    max_new_tokens: int,
    n: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_ids: Sequence[int] = (),
    stop_ids: Sequence[int] = (),
    pad_id: int = 0,
    prompt_buckets: Sequence[int] = DEFAULT_BUCKETS,
    completion_buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_length: int | None = None,
    kv_cache: bool = True,
    cache_sharding=None,
    cache_block: int | None = None,
    compact_min_rows: int = 8,
    max_new_tokens_per_row: Sequence[int] | np.ndarray | None = None,
) -> SampleOutput:
    """Samples `n` completions for each prompt.

    Args:
      config: the policy's ModelConfig.
      params: its parameters.
      prompts: ragged token-id lists, or a left-padded (tokens [P, L], mask [P, L]) pair.
      rng: PRNG key; the output is a deterministic function of it.
      max_new_tokens: completion budget T.
      n: samples per prompt (rows are group-contiguous).
      temperature: 0 for greedy.
      top_k: keep the k most likely tokens (0 = off).
      top_p: nucleus sampling mass (1.0 = off).
      eos_ids, stop_ids: ids that end a row (included in the completion).
      pad_id: fills prompts on the left and completions after they end.
      prompt_buckets, completion_buckets: lengths the shapes are rounded up to.
      max_length: longest prompt + completion the cache may hold (default:
        config.max_position_embeddings).
      kv_cache: False recomputes the full sequence each step (benchmarks).
      cache_sharding: optional NamedSharding of the KV cache [layers, B, K, ...]
        (`rewardjax.parallel.kv_cache_sharding(mesh)`).
      cache_block: a decode step reads the cache up to the filled length rounded
        up to a multiple of this; it must divide the completion bucket (default:
        its smallest divisor >= 16 that leaves at most 8 blocks).
      compact_min_rows: once the rows still running fit in half the decode
        batch, they are compacted into a batch of that size, down to this many
        rows (0 = never compact; off with `cache_sharding`). Outputs do not
        depend on it.
      max_new_tokens_per_row: optional budget [P·n] per row (each <=
        max_new_tokens): a row ends after that many tokens.

    Returns:
      SampleOutput with tokens/logprobs/mask [P·n, max_new_tokens], lengths and
      prompt_index [P·n]. `logprobs` are under the sampling distribution
      (temperature, top-k, top-p applied); for greedy, the model's log-prob.
      Row r's token at step t is drawn with fold_in(fold_in(rng, t), r).
    """
    if (
        isinstance(prompts, tuple)
        and len(prompts) == 2
        and isinstance(prompts[0], np.ndarray | jax.Array)
    ):
        tokens, mask = np.asarray(prompts[0], np.int32), np.asarray(prompts[1], np.int32)
        if tokens.shape != mask.shape or tokens.ndim != 2:
            raise ValueError(
                f"prompt tokens {tokens.shape} and mask {mask.shape} must both be [P, L]"
            )
        lengths = (mask > 0).sum(1)
        left_padded = np.arange(mask.shape[1])[None, :] >= (mask.shape[1] - lengths)[:, None]
        bad_rows = np.flatnonzero(np.any((mask > 0) != left_padded, axis=1))
        if bad_rows.size:
            bad = int(bad_rows[0])
            raise ValueError(
                f"prompt row {bad} is not left-padded: mask {mask[bad].tolist()} "
                "(real tokens must be the last ones of the row)"
            )
    else:
        prompts = [list(p) for p in prompts]
        lengths = np.array([len(p) for p in prompts])
        tokens, mask = None, None
    if len(lengths) == 0:
        raise ValueError("no prompts given")
    if np.any(lengths == 0):
        raise ValueError(f"prompt row {int(np.argmin(lengths))} is empty")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")
    max_length = max_length or config.max_position_embeddings
    longest = int(lengths.max())
    if longest + max_new_tokens > max_length:
        raise ValueError(
            f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the cache "
            f"length {max_length}"
        )
    prompt_len = bucket(longest, prompt_buckets)
    if tokens is None:
        tokens, mask = pad_prompts(prompts, pad_id=pad_id, length=prompt_len)
    else:
        # Drop all-padding columns, then pad on the left up to the bucket.
        tokens, mask = tokens[:, -longest:], mask[:, -longest:]
        extra = prompt_len - longest
        tokens = np.pad(tokens, ((0, 0), (extra, 0)), constant_values=pad_id)
        mask = np.pad(mask, ((0, 0), (extra, 0)))
    real = tokens[mask > 0]
    if real.size and (real.min() < 0 or real.max() >= config.vocab_size):
        bad = int(real.max() if real.max() >= config.vocab_size else real.min())
        raise ValueError(
            f"prompt token id {bad} is outside the vocabulary [0, {config.vocab_size})"
        )
    for name, ids in (("eos_ids", eos_ids), ("stop_ids", stop_ids), ("pad_id", [pad_id])):
        for i in ids:
            if not 0 <= int(i) < config.vocab_size:
                raise ValueError(
                    f"{name} contains {i}, outside the vocabulary [0, {config.vocab_size})"
                )
    sp = SamplingParams(
        temperature=float(temperature),
        top_k=int(top_k),
        top_p=float(top_p),
        stop_ids=tuple(sorted({int(i) for i in (*eos_ids, *stop_ids)})),
        pad_id=int(pad_id),
        kv_cache=kv_cache,
    )
    completion_bucket = bucket(max_new_tokens, completion_buckets)
    if cache_block is None:
        cache_block = default_cache_block(completion_bucket)
    if cache_block < 1 or completion_bucket % cache_block:
        raise ValueError(
            f"cache_block={cache_block} must divide the completion bucket {completion_bucket}"
        )
    if compact_min_rows < 0:
        raise ValueError(f"compact_min_rows={compact_min_rows} must be >= 0")
    rows = len(lengths) * n
    if max_new_tokens_per_row is None:
        budgets = np.full(rows, max_new_tokens, np.int32)
    else:
        budgets = np.asarray(max_new_tokens_per_row)
        if not np.issubdtype(budgets.dtype, np.integer):
            raise ValueError(f"max_new_tokens_per_row must hold integers, not {budgets.dtype}")
        if budgets.shape != (rows,):
            raise ValueError(
                f"max_new_tokens_per_row has shape {budgets.shape}; expected ({rows},) (P·n)"
            )
        if budgets.min() < 1 or budgets.max() > max_new_tokens:
            raise ValueError(
                f"max_new_tokens_per_row must lie in [1, max_new_tokens={max_new_tokens}], "
                f"got [{budgets.min()}, {budgets.max()}]"
            )
    out_tokens, logprobs, out_mask = _generate_jit(
        params,
        jnp.asarray(tokens),
        jnp.asarray(mask),
        rng,
        jnp.asarray(budgets, jnp.int32),
        config=config,
        n=n,
        completion_bucket=completion_bucket,
        sp=sp,
        cache_sharding=cache_sharding,
        cache_block=cache_block if kv_cache else 0,
        # Compaction gathers rows across the batch; on a sharded cache XLA builds
        # the gathered cache whole on every device (a plan of Qwen2.5-0.5B at
        # 16×8 rows on 8 devices: 4.1 GiB against 1.9 GiB), so it runs only
        # where the batch is not sharded.
        capacities=row_capacities(
            rows, compact_min_rows if kv_cache and cache_sharding is None else 0
        ),
    )
    out_tokens = out_tokens[:, :max_new_tokens]
    logprobs = logprobs[:, :max_new_tokens]
    out_mask = out_mask[:, :max_new_tokens]
    return SampleOutput(
        tokens=out_tokens,
        logprobs=logprobs,
        mask=out_mask,
        lengths=out_mask.sum(-1).astype(jnp.int32),
        prompt_index=jnp.repeat(jnp.arange(len(lengths), dtype=jnp.int32), n),
    )
