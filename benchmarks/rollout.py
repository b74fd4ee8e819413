r"""Rollout throughput on an RL-shaped workload: this sampler vs its previous path vs transformers.

  python benchmarks/rollout.py                       # 32 prompts × 8 samples, lengths ≤ 1,024
  python benchmarks/rollout.py --prompts 4 --samples 4 --cap 64 --median 16 \
      --uniform-new-tokens 16 --repeats 1            # quick smoke run

Two workloads on one Qwen2-style model with random weights (written with
`save_hf` and read back by `transformers`, so every engine decodes the same
weights):

- RL-shaped: `--prompts` × `--samples` rows sampled at temperature 1, each
  row's completion length drawn once from a log-normal (median `--median`,
  σ `--sigma`, capped at `--cap`) and imposed identically on every engine:
  here through `max_new_tokens_per_row`, in transformers by a logits
  processor that forbids EOS before the row's length and forces it there. So
  all engines emit the same number of tokens per row; most rows stop early
  and a few run to the cap, as RL rollouts do.
- uniform: the sampler benchmark's shape (`--uniform-batch` prompts, greedy,
  `--uniform-new-tokens` tokens per row, no EOS).

Engines: "new" is `generate` as the RL loop calls it (the cache read up to the
filled length, finished rows compacted out); "previous" is the same function
with both turned off (`cache_block` = the whole completion bucket,
`compact_min_rows=0`), which is what the sampler did before them (every step
over every row and the whole cache); "hf" is transformers `generate`.
`speedup_vs_tunix` is null: Tunix is not installed beside this project.

Method (`benchmarks/method.py`): transformers gets its best torch thread count
(1 or 2, probed); the engines of a workload then run in turn, new, previous,
hf, new, ... for `--repeats` rounds, after one untimed (compiling) run each;
figures are medians. `useful_tokens_per_s` counts the tokens the RL workload
asks for over the new engine's median time. `decode_ratio_1024_vs_64` is the
cost of one cached decode step with 1,024 tokens in the cache over one with 64
(`benchmarks/sampler.py`'s measurement, on this model: its bytes, weights
against cache, set the ratio to expect). JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

from rewardjax.models import save_hf
from rewardjax.sampling import generate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import method  # the shared measuring method, beside this script
import sampler as sampler_bench  # its decode-step measurement

EOS_ID = 1


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--samples", type=int, default=8, help="samples per prompt")
    p.add_argument("--prompt", type=int, default=64, help="prompt length")
    p.add_argument("--median", type=float, default=96.0, help="median completion length")
    p.add_argument("--sigma", type=float, default=1.0, help="log-normal σ of the lengths")
    p.add_argument("--cap", type=int, default=1024, help="longest completion")
    p.add_argument("--uniform-batch", type=int, default=8)
    p.add_argument("--uniform-new-tokens", type=int, default=256)
    p.add_argument("--ratio-steps", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(fn):
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def main() -> None:
    args = _parse_args()
    start_load = method.machine_load()
    config, params = sampler_bench.qwen2_model(args, args.prompt + args.cap)
    rng = np.random.default_rng(args.seed)
    rows = args.prompts * args.samples
    lengths = np.exp(np.log(args.median) + args.sigma * rng.standard_normal(rows))
    budgets = np.clip(np.round(lengths), 1, args.cap).astype(np.int32)
    # Ids from 2 up: 0 is the pad id and 1 the EOS id.
    rl_prompts = rng.integers(2, args.vocab, (args.prompts, args.prompt)).astype(np.int32)
    uniform_prompts = rng.integers(2, args.vocab, (args.uniform_batch, args.prompt)).astype(
        np.int32
    )
    key = jax.random.key(args.seed)

    def ours_rl(previous: bool):
        def run():
            out = generate(
                config,
                params,
                (rl_prompts, np.ones_like(rl_prompts)),
                rng=key,
                n=args.samples,
                max_new_tokens=args.cap,
                temperature=1.0,
                max_new_tokens_per_row=budgets,
                prompt_buckets=(args.prompt,),
                completion_buckets=(args.cap,),
                **(dict(cache_block=args.cap, compact_min_rows=0) if previous else {}),
            )
            return np.asarray(out.lengths)

        return run

    def ours_uniform(previous: bool):
        new_tokens = args.uniform_new_tokens

        def run():
            out = generate(
                config,
                params,
                (uniform_prompts, np.ones_like(uniform_prompts)),
                rng=key,
                max_new_tokens=new_tokens,
                temperature=0.0,
                prompt_buckets=(args.prompt,),
                completion_buckets=(new_tokens,),
                **(dict(cache_block=new_tokens, compact_min_rows=0) if previous else {}),
            )
            return np.asarray(out.tokens)

        return run

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model")
        save_hf(path, config, params)
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    class ForcedLengths(transformers.LogitsProcessor):
        """EOS forbidden before each row's length and forced at it."""

        def __init__(self, budgets: np.ndarray):
            self.budgets = torch.tensor(budgets, dtype=torch.long)

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - args.prompt
            scores[:, EOS_ID] = -float("inf")
            last = self.budgets == step + 1
            scores[last] = -float("inf")
            scores[last, EOS_ID] = 0.0
            return scores

    def hf_rl(budgets_: np.ndarray = budgets, prompts: np.ndarray = rl_prompts):
        def run():
            with torch.inference_mode():
                out = hf.generate(
                    input_ids=torch.tensor(prompts, dtype=torch.long),
                    attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    num_return_sequences=args.samples,
                    max_new_tokens=int(budgets_.max()),
                    logits_processor=[ForcedLengths(budgets_)],
                    eos_token_id=EOS_ID,
                    pad_token_id=0,
                )
            # Each row ends with the EOS forced at its length (a sampled id may be 0,
            # the pad id, so padding does not mark the end).
            return (out[:, args.prompt :].numpy() == EOS_ID).argmax(1) + 1

        return run

    def hf_uniform():
        with torch.inference_mode():
            return hf.generate(
                input_ids=torch.tensor(uniform_prompts, dtype=torch.long),
                attention_mask=torch.ones(uniform_prompts.shape, dtype=torch.long),
                max_new_tokens=args.uniform_new_tokens,
                min_new_tokens=args.uniform_new_tokens,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )

    # transformers' best thread count, from a short RL-shaped probe (2 prompts).
    probe_budgets = np.minimum(budgets[: 2 * args.samples], 32)
    probe = hf_rl(probe_budgets, rl_prompts[:2])

    def probe_seconds(threads: int) -> float:
        torch.set_num_threads(threads)
        probe()
        return min(_timed(probe)() for _ in range(2))

    hf_threads = method.best_threads(probe_seconds, sorted({1, torch.get_num_threads()}))
    torch.set_num_threads(hf_threads)
    _log(f"transformers threads: {hf_threads}")

    results: dict = {}
    rl_sides = {"rl_new": ours_rl(False), "rl_previous": ours_rl(True), "rl_hf": hf_rl()}
    uniform_sides = {
        "uniform_new": ours_uniform(False),
        "uniform_previous": ours_uniform(True),
        "uniform_hf": hf_uniform,
    }
    warm = {name: fn() for name, fn in {**rl_sides, **uniform_sides}.items()}  # compile
    for name in ("rl_new", "rl_previous", "rl_hf"):
        assert np.array_equal(warm[name], budgets), f"{name} did not emit the imposed lengths"
    hf_tokens = warm["uniform_hf"][:, args.prompt :].numpy()
    results["uniform_greedy_tokens_equal_hf"] = float(np.mean(warm["uniform_new"] == hf_tokens))
    results["uniform_new_equals_previous"] = bool(
        np.array_equal(warm["uniform_new"], warm["uniform_previous"])
    )

    samples = method.interleave({k: _timed(v) for k, v in rl_sides.items()}, repeats=args.repeats)
    samples.update(
        method.interleave({k: _timed(v) for k, v in uniform_sides.items()}, repeats=args.repeats)
    )
    med = {name: method.summarize(ts)["median"] for name, ts in samples.items()}
    for name, seconds in med.items():
        _log(f"{name}: {seconds:.3f} s")

    depths = (64, 1024)
    loops = {
        depth: sampler_bench._decode_loop(
            config, params, batch=args.uniform_batch, depth=depth, steps=args.ratio_steps
        )
        for depth in depths
    }
    step_samples = method.interleave(
        {d: _timed(fn) for d, fn in loops.items()}, repeats=args.repeats
    )
    step = {d: method.summarize(ts)["median"] / args.ratio_steps for d, ts in step_samples.items()}

    useful = int(budgets.sum())
    line = method.report(
        "rollout",
        samples,
        start=start_load,
        speedup_vs_previous=round(med["rl_previous"] / med["rl_new"], 3),
        speedup_vs_hf=round(med["rl_hf"] / med["rl_new"], 3),
        speedup_vs_tunix=None,
        uniform_speedup_vs_previous=round(med["uniform_previous"] / med["uniform_new"], 3),
        uniform_speedup_vs_hf=round(med["uniform_hf"] / med["uniform_new"], 3),
        decode_ratio_1024_vs_64=round(step[1024] / step[64], 3),
        decode_ms_per_step_at_64=round(1e3 * step[64], 3),
        decode_ms_per_step_at_1024=round(1e3 * step[1024], 3),
        useful_tokens_per_s=round(useful / med["rl_new"], 1),
        uniform_tokens_per_s=round(
            args.uniform_batch * args.uniform_new_tokens / med["uniform_new"], 1
        ),
        rl_rows=rows,
        rl_useful_tokens=useful,
        rl_length_median=float(np.median(budgets)),
        rl_length_max=int(budgets.max()),
        params=config.num_params(),
        hf_threads=hf_threads,
        jax=jax.__version__,
        transformers=transformers.__version__,
        torch=torch.__version__,
        **results,
    )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
