"""Creates the runlocal SFT and GRPO trainers on data=1 × fsdp=8 and reports how their state is laid out.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel/_sharded_init_worker.py

For every array leaf of the train state (params and optimizer statistics):
its size and the size of the shard each device holds; and the bytes the init
program writes per device (XLA's memory analysis of the compiled init).
"""

from __future__ import annotations

import json
import tempfile

import jax

from configs import grpo_arithmetic, sft_arithmetic
from rewardjax.training import offline, rl


def layout(trainer) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(
        {"params": trainer.state.params, "opt_state": trainer.state.opt_state}
    )[0]
    out = {}
    for path, leaf in leaves:
        if leaf.ndim == 0:
            continue  # counters and Adam's step count: scalars, replicated
        shard_sizes = sorted({s.data.size for s in leaf.addressable_shards})
        out[jax.tree_util.keystr(path)] = dict(
            size=int(leaf.size), shard_sizes=shard_sizes, devices=len(leaf.sharding.device_set)
        )
    return out


def main() -> None:
    report = {}
    for name, module, cls in (
        ("sft", sft_arithmetic, offline.OfflineTrainer),
        ("grpo", grpo_arithmetic, rl.RLTrainer),
    ):
        c = module.get_config("runlocal=True")
        c.mesh = dict(data=1, fsdp=8, tensor=1)
        if name == "sft":
            c.batch_size = 8
        c.eval.every = 0
        with tempfile.TemporaryDirectory() as workdir:
            trainer = cls(c, workdir)
            report[name] = layout(trainer)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
