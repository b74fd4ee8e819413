r"""Soak: many steps of the runlocal GRPO config; resident memory and compile counts over time.

  python benchmarks/soak.py --steps 500

Memory is the process's resident set size (psutil), sampled after every
step. "Growth" compares the last sample with the one after warm-up
(`--warmup` steps, by which time every shape has compiled). The update step
and the log-prob pass must not recompile after the first step. JSON line last;
it records the load average at start and end and the CPU count
(`benchmarks/method.py`; "loaded": true: the machine was busy, so "seconds"
measures the load as much as the code).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    import method

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    start_load = method.machine_load()

    import psutil

    from configs import grpo_arithmetic
    from rewardjax import sampling
    from rewardjax.training import rl

    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = args.steps
    c.log.samples_every = 50
    c.checkpoint.every = 100
    c.lock()
    workdir = tempfile.mkdtemp(prefix="soak_")
    trainer = rl.RLTrainer(c, workdir)
    proc = psutil.Process()
    rss = []
    compiles_after_first = None
    start = time.time()
    while trainer.step < c.steps:
        trainer.train_step()
        if trainer.step % 100 == 0:
            trainer.save()
        rss.append(proc.memory_info().rss)
        if trainer.step == 1:
            compiles_after_first = (
                trainer.update_fn._cache_size(),
                trainer._logprob_fn._cache_size(),
                sampling.sampler._generate_jit._cache_size(),
            )
    trainer.checkpointer.close()
    compiles_end = (
        trainer.update_fn._cache_size(),
        trainer._logprob_fn._cache_size(),
        sampling.sampler._generate_jit._cache_size(),
    )
    end_load = method.machine_load()
    base = rss[args.warmup - 1]
    growth = rss[-1] / base - 1.0
    print(
        json.dumps(
            {
                "bench": "soak",
                "steps": args.steps,
                "rss_after_warmup_mb": round(base / 2**20, 1),
                "rss_end_mb": round(rss[-1] / 2**20, 1),
                "rss_max_mb": round(max(rss[args.warmup - 1 :]) / 2**20, 1),
                "rss_growth_frac": round(growth, 4),
                "compiles_after_step_1": compiles_after_first,
                "compiles_at_end": compiles_end,
                "recompiled": compiles_end != compiles_after_first,
                "seconds": round(time.time() - start, 1),
                "load_avg_start": start_load["load_avg"],
                "load_avg_end": end_load["load_avg"],
                "cpus": start_load["cpus"],
                "machine": start_load["machine"],
                "loaded": method.is_loaded(float(start_load["load_avg"]), int(start_load["cpus"])),
            }
        )
    )


if __name__ == "__main__":
    main()
