r"""Decode throughput: rewardjax sampler (KV cache, full recompute) vs transformers generate.

  python benchmarks/sampler.py                      # ~20M-parameter Qwen2-style model
  python benchmarks/sampler.py --layers 2 --hidden 128 --heads 4 --vocab 4096 --new-tokens 32 \
      --long-prompt 256 --repeats 1                 # quick smoke run

One model is built with random weights, written with `save_hf` and read back
by `transformers` (torch, CPU), so both sides decode the same weights. All
runs are greedy with no EOS, so every row decodes exactly `--new-tokens`
tokens. Times exclude compilation (each jitted shape runs once before timing)
and include the prefill; tokens/s counts generated tokens over all rows.

The full-recompute run times `--no-cache-new-tokens` steps over the same
prompt + `--new-tokens` slots as the cached run (every such step costs the
same), which keeps the quadratic baseline affordable on a CPU.

`decode_ratio_1024_vs_64` is the per-token decode time after a
`--long-prompt`-token prompt over that after a `--prompt`-token prompt, both
with the KV cache: (time(K new) − time(1 new)) / (K − 1) with the same
compiled function, so the prefill cancels.

The last line printed is a JSON object with "bench": "sampler".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from rewardjax.models import ModelConfig, init_params, save_hf
from rewardjax.sampling import generate


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
    p.add_argument("--ratio-new-tokens", type=int, default=64)
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


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = _parse_args()
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
        max_position_embeddings=max(4096, args.long_prompt + args.ratio_new_tokens),
    )
    params = jax.jit(init_params, static_argnums=0)(config, jax.random.key(args.seed))
    rng = np.random.default_rng(args.seed)
    # Ids from 1 up: 0 is the pad id; there is no EOS, so rows never stop early.
    prompts = rng.integers(1, args.vocab, (args.batch, args.prompt)).astype(np.int32)
    mask = np.ones_like(prompts)
    key = jax.random.key(args.seed)

    def ours(kv_cache: bool, tokens=prompts, new_tokens=args.new_tokens, buckets=None):
        out = generate(
            config,
            params,
            (tokens, np.ones_like(tokens)),
            rng=key,
            max_new_tokens=new_tokens,
            temperature=0.0,
            kv_cache=kv_cache,
            completion_buckets=buckets or (new_tokens,),
            prompt_buckets=(tokens.shape[1],),
        )
        return np.asarray(out.tokens)

    generated = args.batch * args.new_tokens
    results: dict[str, float | int | str] = {}
    ours_tokens = ours(True)  # compile
    t_ours = _median_time(lambda: ours(True), args.repeats)
    results["rewardjax_tokens_per_s"] = generated / t_ours
    _log(f"rewardjax (KV cache): {results['rewardjax_tokens_per_s']:.1f} tokens/s")
    if args.no_cache_new_tokens:
        # Every full-recompute step runs the model over all prompt + budget slots, so
        # a few steps with the full run's budget bucket give its per-token rate.
        steps = args.no_cache_new_tokens

        def recompute():
            return ours(False, new_tokens=steps, buckets=(args.new_tokens,))

        recompute()
        t_nocache = _median_time(recompute, 1)
        results["rewardjax_no_cache_tokens_per_s"] = args.batch * steps / t_nocache
        _log(f"rewardjax (no cache): {results['rewardjax_no_cache_tokens_per_s']:.1f} tokens/s")

    # Per-token decode cost at two cache depths; one compiled function per depth.
    k = args.ratio_new_tokens
    per_token = {}
    for length in (args.prompt, args.long_prompt):
        tokens = rng.integers(1, args.vocab, (args.batch, length)).astype(np.int32)
        ours(True, tokens, k, (k,))
        ours(True, tokens, 1, (k,))
        t_k = _median_time(lambda t=tokens: ours(True, t, k, (k,)), args.repeats)
        t_1 = _median_time(lambda t=tokens: ours(True, t, 1, (k,)), args.repeats)
        per_token[length] = (t_k - t_1) / (k - 1)
        _log(f"rewardjax decode after {length} tokens: {1e3 * per_token[length]:.2f} ms/step")
    results[f"rewardjax_decode_ms_per_step_at_{args.prompt}"] = 1e3 * per_token[args.prompt]
    results[f"rewardjax_decode_ms_per_step_at_{args.long_prompt}"] = (
        1e3 * per_token[args.long_prompt]
    )

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model")
        save_hf(path, config, params)
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    input_ids = torch.tensor(prompts, dtype=torch.long)
    attention_mask = torch.tensor(mask, dtype=torch.long)

    def theirs(new_tokens=args.new_tokens):
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

    theirs(8)  # warm up
    hf_tokens = theirs()[:, args.prompt :].numpy()
    assert hf_tokens.shape == (args.batch, args.new_tokens), hf_tokens.shape
    t_hf = _median_time(theirs, args.repeats)
    results["transformers_tokens_per_s"] = generated / t_hf
    _log(f"transformers: {results['transformers_tokens_per_s']:.1f} tokens/s")

    params_count = config.num_params()
    summary = {
        "bench": "sampler",
        "speedup_vs_hf": results["rewardjax_tokens_per_s"] / results["transformers_tokens_per_s"],
        "decode_ratio_1024_vs_64": per_token[args.long_prompt] / per_token[args.prompt],
        **results,
        # Greedy decoding of the same weights: the share of tokens both sides agree on
        # (random weights give near ties, so a late divergence is not an error).
        "greedy_tokens_equal": float(np.mean(ours_tokens == hf_tokens)),
        "params": params_count,
        "batch": args.batch,
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "long_prompt": args.long_prompt,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}))


if __name__ == "__main__":
    main()
