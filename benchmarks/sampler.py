r"""Decode throughput: rewardjax sampler (KV cache, full recompute) vs transformers generate.

  python benchmarks/sampler.py                      # ~20M-parameter Qwen2-style model
  python benchmarks/sampler.py --layers 2 --hidden 128 --heads 4 --vocab 4096 \
      --new-tokens 32 --long-prompt 256 --repeats 1 # quick smoke run

One model is built with random weights, written with `save_hf` and read back
by `transformers` (torch, CPU), so both sides decode the same weights. All
runs are greedy with no EOS, so every row decodes exactly `--new-tokens`
tokens. Times exclude compilation (each jitted shape runs once before
timing), include the prefill, and are the median of `--repeats` runs, the
sides interleaved (`benchmarks/method.py`; the load average at start and end
is in the JSON line). Tokens/s counts
generated tokens over all rows. transformers runs with 1 thread or torch's
default, whichever a short probe finds faster.

The full-recompute run (`kv_cache=False`) times `--no-cache-new-tokens` steps
over the same prompt + `--new-tokens` slots as the cached run: every such step
costs the same, and this keeps the quadratic baseline affordable on a CPU.

`decode_ratio_1024_vs_64` is the time of one cached decode step (the model
call the sampler's loop makes, batch `--batch`) with `--long-prompt` tokens
in the cache over the same with `--prompt` tokens, each timed over
`--ratio-steps` steps of a jitted loop so no prefill enters the timing.
Runs that are compared are interleaved, so drifting load hits both alike.

The last line printed is a JSON object with "bench": "sampler".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.models import ModelConfig, build, init_cache, init_params, save_hf
from rewardjax.sampling import generate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import method  # the shared measuring method, beside this script


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--long-prompt", type=int, default=1024)
    p.add_argument("--ratio-steps", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median)")
    p.add_argument(
        "--no-cache-new-tokens",
        type=int,
        default=16,
        help="steps timed for the full-recompute run (each costs the same; 0 skips it)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _decode_loop(config, params, *, batch: int, depth: int, steps: int):
    """A compiled no-argument function running `steps` cached decode steps after `depth`."""
    model = build(config)
    slots = depth + steps

    @jax.jit
    def decode_loop(params, cache, slot_mask, token):
        def body(i, carry):
            cache, slot_mask, token = carry
            slot = depth + i
            slot_mask = slot_mask.at[:, slot].set(1)
            positions = jnp.full((batch, 1), slot, jnp.int32)
            logits, cache = model.apply(
                {"params": params},
                token[:, None],
                positions,
                slot_mask,
                cache,
                slot,
                method="decode",
            )
            return cache, slot_mask, jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)

        return jax.lax.fori_loop(0, steps, body, (cache, slot_mask, token))[2]

    # The step's cost does not depend on the cached values, only on the cache size
    # and the mask, so random keys/values stand in for a prefill.
    cache = init_cache(config, batch, slots)
    cache = type(cache)(
        *(jax.random.normal(jax.random.key(i), x.shape, x.dtype) for i, x in enumerate(cache))
    )
    slot_mask = jnp.zeros((batch, slots), jnp.int32).at[:, :depth].set(1)
    token = jnp.ones((batch,), jnp.int32)

    def run():
        decode_loop(params, cache, slot_mask, token).block_until_ready()

    run()  # compile
    return run


def qwen2_model(args: argparse.Namespace, max_length: int):
    """A Qwen2-style config of the sizes in `args` and random parameters (seed args.seed)."""
    config = ModelConfig(
        family="qwen2",
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        qkv_bias=True,
        tie_word_embeddings=True,
        rope_theta=1e6,
        max_position_embeddings=max(4096, max_length),
    )
    return config, jax.jit(init_params, static_argnums=0)(config, jax.random.key(args.seed))


def _interleaved_median(fns: dict, repeats: int) -> dict:
    """Median time of each function, runs interleaved so load drift hits all alike."""

    def timed(fn):
        def run() -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        return run

    samples = method.interleave({name: timed(fn) for name, fn in fns.items()}, repeats=repeats)
    return {name: method.summarize(ts)["median"] for name, ts in samples.items()}


def main() -> None:
    args = _parse_args()
    start_load = method.machine_load()
    config, params = qwen2_model(args, args.prompt + args.new_tokens)
    rng = np.random.default_rng(args.seed)
    # Ids from 1 up: 0 is the pad id; there is no EOS, so rows never stop early.
    prompts = rng.integers(1, args.vocab, (args.batch, args.prompt)).astype(np.int32)
    mask = np.ones_like(prompts)
    key = jax.random.key(args.seed)

    def ours(kv_cache: bool, new_tokens: int = args.new_tokens):
        out = generate(
            config,
            params,
            (prompts, mask),
            rng=key,
            max_new_tokens=new_tokens,
            temperature=0.0,
            kv_cache=kv_cache,
            prompt_buckets=(args.prompt,),
            completion_buckets=(args.new_tokens,),
        )
        return np.asarray(out.tokens)

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model")
        save_hf(path, config, params)
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    input_ids = torch.tensor(prompts, dtype=torch.long)
    attention_mask = torch.tensor(mask, dtype=torch.long)

    def theirs(new_tokens: int = args.new_tokens):
        with torch.inference_mode():
            return hf.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=None,
                pad_token_id=0,
            )

    results: dict[str, float] = {}
    # torch's OpenMP threads slow down by an order of magnitude when other processes
    # share the cores, so the baseline runs with whichever thread count is faster.
    probe = 16
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        theirs(4)  # warm up
        rate = args.batch * probe / _best_time(lambda: theirs(probe), 2)
        results[f"transformers_probe_tokens_per_s_{threads}_threads"] = rate
        _log(f"transformers probe ({threads} threads): {rate:.1f} tokens/s")
    best_threads = max(
        (v, int(k.split("_")[-2])) for k, v in results.items() if k.startswith("transformers_")
    )[1]
    torch.set_num_threads(best_threads)

    generated = args.batch * args.new_tokens
    ours_tokens = ours(True)  # compile
    hf_tokens = theirs()[:, args.prompt :].numpy()
    assert hf_tokens.shape == (args.batch, args.new_tokens), hf_tokens.shape
    best = _interleaved_median({"ours": lambda: ours(True), "theirs": theirs}, args.repeats)
    results["rewardjax_tokens_per_s"] = generated / best["ours"]
    results["transformers_tokens_per_s"] = generated / best["theirs"]
    results["transformers_threads"] = best_threads
    _log(f"rewardjax (KV cache): {results['rewardjax_tokens_per_s']:.1f} tokens/s")
    _log(f"transformers: {results['transformers_tokens_per_s']:.1f} tokens/s")

    if args.no_cache_new_tokens:
        steps = args.no_cache_new_tokens
        ours(False, steps)  # compile
        seconds = _best_time(lambda: ours(False, steps), 1)
        results["rewardjax_no_cache_tokens_per_s"] = args.batch * steps / seconds
        _log(f"rewardjax (no cache): {results['rewardjax_no_cache_tokens_per_s']:.1f} tokens/s")

    depths = (args.prompt, args.long_prompt)
    loops = {
        depth: _decode_loop(config, params, batch=args.batch, depth=depth, steps=args.ratio_steps)
        for depth in depths
    }
    step_seconds = {
        depth: seconds / args.ratio_steps
        for depth, seconds in _interleaved_median(loops, args.repeats).items()
    }
    for depth in depths:
        results[f"rewardjax_decode_ms_per_step_at_{depth}"] = 1e3 * step_seconds[depth]
        _log(f"rewardjax decode step after {depth} tokens: {1e3 * step_seconds[depth]:.2f} ms")

    summary = {
        "bench": "sampler",
        "speedup_vs_hf": results["rewardjax_tokens_per_s"] / results["transformers_tokens_per_s"],
        "decode_ratio_1024_vs_64": step_seconds[args.long_prompt] / step_seconds[args.prompt],
        **results,
        # Greedy decoding of the same weights: the share of tokens both sides agree on
        # (random weights give near ties, so a late divergence is not an error).
        "greedy_tokens_equal": float(np.mean(ours_tokens == hf_tokens)),
        "params": config.num_params(),
        "batch": args.batch,
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "long_prompt": args.long_prompt,
        "cpu_count": os.cpu_count(),
        "load_avg_start": start_load["load_avg"],
        "load_avg_end": method.machine_load()["load_avg"],
        "loaded": method.is_loaded(float(start_load["load_avg"]), int(start_load["cpus"])),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}))


if __name__ == "__main__":
    main()
