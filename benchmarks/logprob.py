r"""Log-prob + entropy of the label, forward and backward: materialised logits vs logits-free.

  python benchmarks/logprob.py                      # N=8192, D=896, V=151936 (Qwen2.5-0.5B head)
  python benchmarks/logprob.py --n 1024 --v 32000   # quick check

Compares, on the same inputs and the same loss Σ_n a_n·log p_n + b_n·H_n,
value and gradient with respect to hidden [N, D] and projection [D, V]:

  naive    logits = hidden @ projection, log_softmax, gather (holds [N, V])
  chunked  rewardjax.ops.token_logprobs_from_hidden(impl="chunked") (XLA tiles)
  pallas   the same with impl="pallas" (only when a GPU or TPU is present)

Peak temporary bytes come from XLA's compiled memory analysis. Wall times
follow the shared method (`benchmarks/method.py`): after one warm-up run of
each path, the paths run in turn (naive, chunked, pallas, naive, ...) for
`--iters` rounds, and each time is the median of its runs, with its spread.
On an accelerator one [N, D] @ [D, V] matmul joins the rounds to give the
device's achieved matmul rate, and each path's TFLOP/s is reported against
it, counting the 6·N·D·V FLOPs that any implementation needs (forward
logits, d_hidden, d_projection).

The last line is JSON: "ratio_temp_bytes" and "ratio_time" are the logits-free
path (Pallas on an accelerator, chunked on CPU) over naive; the load average
at start and end and the CPU count are recorded ("loaded": true: the machine
was busy, do not report the times). With `--memory-only` nothing is timed and
the line holds only the memory figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp

from rewardjax import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import method  # the shared measuring method, beside this script


def naive_logprobs(hidden, projection, labels):
    logits = jnp.dot(hidden, projection, preferred_element_type=jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    label_logp = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return label_logp, entropy


def make_step(kind: str, args):
    def loss(hidden, projection, labels, a, b):
        if kind == "naive":
            lp, ent = naive_logprobs(hidden, projection, labels)
        else:
            out = ops.token_logprobs_from_hidden(
                hidden,
                projection,
                labels,
                impl=kind,
                block_rows=args.block_rows if kind == "chunked" else None,
                block_vocab=args.block_vocab if kind == "chunked" else None,
            )
            lp, ent = out.logprobs, out.entropy
        return jnp.sum(a * lp + b * ent)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warmed_side(fn, *xs):
    """Runs `fn(*xs)` once (compilation is separate), then returns a side timing one call."""
    jax.block_until_ready(fn(*xs))

    def run() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*xs))
        return time.perf_counter() - t0

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8192, help="tokens N")
    parser.add_argument("--d", type=int, default=896, help="width D")
    parser.add_argument("--v", type=int, default=151936, help="vocabulary V")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=3, help="timed rounds after one warm-up")
    parser.add_argument("--block-rows", type=int, default=2048, help="chunked rows per tile")
    parser.add_argument("--block-vocab", type=int, default=4096, help="chunked vocab per tile")
    parser.add_argument(
        "--memory-only", action="store_true", help="compile and report memory, no timing"
    )
    args = parser.parse_args()
    start = method.machine_load()

    backend = jax.default_backend()
    accelerated = backend != "cpu"
    dtype = jnp.dtype(args.dtype)
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.key(0), 5)
    hidden = jax.random.normal(k1, (args.n, args.d), dtype)
    projection = (jax.random.normal(k2, (args.d, args.v)) / args.d**0.5).astype(dtype)
    labels = jax.random.randint(k3, (args.n,), 0, args.v)
    a = jax.random.normal(k4, (args.n,)) / args.n
    b = jax.random.normal(k5, (args.n,)) / args.n
    xs = (hidden, projection, labels, a, b)

    kinds = ["naive", "chunked"] + (["pallas"] if accelerated else [])
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({backend}), host: {platform.processor() or platform.machine()}"
    )
    print(f"N={args.n} D={args.d} V={args.v} dtype={args.dtype}")
    flops = 6.0 * args.n * args.d * args.v
    result = {
        "n": args.n,
        "d": args.d,
        "v": args.v,
        "dtype": args.dtype,
        "device": device.device_kind,
        "backend": backend,
    }
    steps = {}
    for kind in kinds:
        steps[kind] = step = make_step(kind, args)
        compiled = step.lower(*xs).compile()
        mem = compiled.memory_analysis()
        result[f"{kind}_temp_bytes"] = int(mem.temp_size_in_bytes)
        print(f"{kind:8s} temp {mem.temp_size_in_bytes / 2**20:10.1f} MiB")

    free = "pallas" if accelerated else "chunked"
    result["logits_free_impl"] = free
    result["ratio_temp_bytes"] = round(result[f"{free}_temp_bytes"] / result["naive_temp_bytes"], 4)
    if args.memory_only:
        print(json.dumps({"bench": "logprob", **result}))
        return

    # On a CPU host the temporaries live in RAM: a path that cannot fit is not run
    # (its compiled memory analysis above still stands).
    room = available_memory_bytes() if not accelerated else None
    sides = {}
    for kind in kinds:
        if room is not None and result[f"{kind}_temp_bytes"] > 0.8 * room:
            result[f"{kind}_time_s"] = None
            print(f"{kind:8s} time  skipped: temporaries exceed 80% of {room / 2**30:.1f} GiB free")
            continue
        sides[kind] = warmed_side(steps[kind], *xs)
    if accelerated:
        matmul = jax.jit(lambda h, w: jnp.dot(h, w, preferred_element_type=jnp.float32))
        sides["matmul"] = warmed_side(matmul, hidden, projection)
    samples = method.interleave(sides, repeats=args.iters)
    stats = {name: method.summarize(s) for name, s in samples.items()}

    for kind in kinds:
        if kind not in stats:
            continue
        t = stats[kind]["median"]
        result[f"{kind}_time_s"] = round(t, 4)
        line = f"{kind:8s} time {t:9.3f} s (median, spread {stats[kind]['spread']:.0%})"
        if accelerated:
            result[f"{kind}_tflops"] = round(flops / t / 1e12, 2)
            line += f"  {flops / t / 1e12:7.1f} TFLOP/s (6·N·D·V)"
        print(line)
    if accelerated:
        rate = 2.0 * args.n * args.d * args.v / stats["matmul"]["median"] / 1e12
        result["matmul_tflops"] = round(rate, 2)
        print(f"matmul   rate {rate:7.1f} TFLOP/s ([N,D]@[D,V] alone)")
        for kind in kinds:
            if kind in stats:
                result[f"{kind}_fraction_of_matmul"] = round(result[f"{kind}_tflops"] / rate, 3)

    timed = free in stats and "naive" in stats
    result["ratio_time"] = (
        round(stats[free]["median"] / stats["naive"]["median"], 3) if timed else None
    )
    print(json.dumps(method.report("logprob", samples, start=start, **result)))


if __name__ == "__main__":
    main()
