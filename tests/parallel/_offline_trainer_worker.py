"""Runs the offline trainer's runlocal configs on a mesh; prints JSON.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
    python tests/parallel/_offline_trainer_worker.py --kinds sft,rm --mesh 2,2,2

For each kind: the per-step losses and the devices the params live on; the
final params go to `--out`/<kind>.npz (one array per leaf, named by its path).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import tempfile

import jax
import numpy as np

from rewardjax import parallel
from rewardjax.training import offline

CONFIGS = {
    "sft": "configs.sft_arithmetic",
    "dpo": "configs.dpo_arithmetic",
    "rm": "configs.rm_arithmetic",
    "prm": "configs.prm_arithmetic",
}
STEPS = 3  # the first step's learning rate is 0 (warm-up from 0)


def run_kind(kind: str, mesh: tuple[int, int, int], out: str) -> dict:
    c = importlib.import_module(CONFIGS[kind]).get_config("runlocal=True")
    c.mesh = dict(zip(parallel.MESH_AXES, mesh, strict=True))
    c.steps = c.optim.total_steps = STEPS
    c.log.every = 1
    c.eval.every = 0
    c.export_hf = False
    c.checkpoint.async_save = False
    with tempfile.TemporaryDirectory() as workdir:
        trainer = offline.OfflineTrainer(c, workdir)
        losses = []
        for _ in range(STEPS):
            losses.append(float(trainer.train_step()["train/loss"]))
        flat = jax.tree_util.tree_flatten_with_path(trainer.state.params)[0]
        leaves = {"/".join(str(k.key) for k in path): np.asarray(x) for path, x in flat}
        np.savez(os.path.join(out, f"{kind}.npz"), **leaves)
        embed = trainer.state.params["policy"]["embed"]["embedding"]
        return dict(
            losses=losses,
            devices=len(embed.sharding.device_set),
            embed_shard=list(embed.sharding.shard_shape(embed.shape)),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kinds", default=",".join(CONFIGS))
    parser.add_argument("--mesh", default="-1,1,1")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    mesh = parallel.parse_mesh(args.mesh)
    print(json.dumps({kind: run_kind(kind, mesh, args.out) for kind in args.kinds.split(",")}))


if __name__ == "__main__":
    main()
