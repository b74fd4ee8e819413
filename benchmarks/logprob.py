r"""Log-prob + entropy of the label, forward and backward: materialised logits vs logits-free.

  python benchmarks/logprob.py                      # N=8192, D=896, V=151936 (Qwen2.5-0.5B head)
  python benchmarks/logprob.py --n 1024 --v 32000   # quick check

Compares, on the same inputs and the same loss Σ_n a_n·log p_n + b_n·H_n,
value and gradient with respect to hidden [N, D] and projection [D, V]:

  naive    logits = hidden @ projection, log_softmax, gather (holds [N, V])
  chunked  rewardjax.ops.token_logprobs_from_hidden(impl="chunked") (XLA tiles)
  pallas   the same with impl="pallas" (only when a GPU or TPU is present)

Peak temporary bytes come from XLA's compiled memory analysis; wall times are
the median of `--iters` runs after one warm-up run. On an accelerator the script
also times one [N, D] @ [D, V] matmul to give the device's achieved matmul rate
and reports TFLOP/s of each path against it, counting the 6·N·D·V FLOPs that
any implementation needs (forward logits, d_hidden, d_projection).

The last line is JSON: "ratio_temp_bytes" and "ratio_time" are the logits-free
path (Pallas on an accelerator, chunked on CPU) over naive.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from rewardjax import ops


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


def timed(fn, *xs, iters: int) -> list[float]:
    jax.block_until_ready(fn(*xs))  # warm-up (compilation is separate)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*xs))
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8192, help="tokens N")
    parser.add_argument("--d", type=int, default=896, help="width D")
    parser.add_argument("--v", type=int, default=151936, help="vocabulary V")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=1, help="timed runs after one warm-up")
    parser.add_argument("--block-rows", type=int, default=2048, help="chunked rows per tile")
    parser.add_argument("--block-vocab", type=int, default=4096, help="chunked vocab per tile")
    parser.add_argument(
        "--memory-only", action="store_true", help="compile and report memory, no timing"
    )
    args = parser.parse_args()

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
        "bench": "logprob",
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

    if not args.memory_only:
        # On a CPU host the temporaries live in RAM: a path that cannot fit is not run
        # (its compiled memory analysis above still stands).
        room = available_memory_bytes() if not accelerated else None
        for kind in kinds:
            if room is not None and result[f"{kind}_temp_bytes"] > 0.8 * room:
                result[f"{kind}_time_s"] = None
                print(
                    f"{kind:8s} time  skipped: temporaries exceed 80% of {room / 2**30:.1f} GiB free"
                )
                continue
            times = timed(steps[kind], *xs, iters=args.iters)
            t = statistics.median(times)
            result[f"{kind}_time_s"] = round(t, 4)
            line = f"{kind:8s} time {t:9.3f} s"
            if accelerated:
                result[f"{kind}_tflops"] = round(flops / t / 1e12, 2)
                line += f"  {flops / t / 1e12:7.1f} TFLOP/s (6·N·D·V)"
            print(line)
        if accelerated:
            matmul = jax.jit(lambda h, w: jnp.dot(h, w, preferred_element_type=jnp.float32))
            t = statistics.median(timed(matmul, hidden, projection, iters=max(args.iters, 5)))
            rate = 2.0 * args.n * args.d * args.v / t / 1e12
            result["matmul_tflops"] = round(rate, 2)
            print(f"matmul   rate {rate:7.1f} TFLOP/s ([N,D]@[D,V] alone)")
            for kind in kinds:
                if result[f"{kind}_time_s"] is None:
                    continue
                result[f"{kind}_fraction_of_matmul"] = round(result[f"{kind}_tflops"] / rate, 3)

    free = "pallas" if accelerated else "chunked"
    result["logits_free_impl"] = free
    result["ratio_temp_bytes"] = round(result[f"{free}_temp_bytes"] / result["naive_temp_bytes"], 4)
    if not args.memory_only:
        times = result[f"{free}_time_s"], result["naive_time_s"]
        result["ratio_time"] = None if None in times else round(times[0] / times[1], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
