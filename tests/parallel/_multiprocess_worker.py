"""A few SFT update steps on a data=2 × fsdp=2 mesh, as one of two processes or alone.

  # two processes, two CPU devices each, joined through a coordinator on localhost
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python _multiprocess_worker.py \
      --process_id 0 --num_processes 2 --port 12345 --out /tmp/a.npz
  # the same mesh in one process with four devices
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python _multiprocess_worker.py --out /tmp/b.npz

Each process loads only its own rows of the global batch. Process 0 (or the
single process) writes the final params to --out; every process prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _steps

from rewardjax import parallel

STEPS = 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    coordinator = f"localhost:{args.port}" if args.port else None
    multi = parallel.initialize_distributed(coordinator, args.num_processes, args.process_id)

    update, state, batch, axes = _steps.make_case("sft")
    host_state = jax.device_get(state)
    mesh = parallel.make_mesh(data=2, fsdp=2, tensor=1)
    shardings = parallel.state_shardings(host_state, mesh, axes)
    # Every process holds the same initial state; each places its own shards.
    state = jax.tree.map(
        lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx: np.asarray(x)[idx]),
        host_state,
        shardings,
    )
    rows = parallel.local_batch_slice(_steps.ROWS, mesh)
    local = jax.tree.map(lambda x: x[rows], batch)
    global_batch = parallel.host_local_batch_to_global(local, mesh)
    step = parallel.jit_step(update, mesh, shardings, parallel.batch_sharding(mesh))
    losses = []
    for i in range(STEPS):
        state, metrics = step(state, global_batch, jax.random.key(100 + i))
        losses.append(float(metrics["loss"]))
    params = parallel.gather_to_host(state.params)
    if parallel.is_main_process():
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        np.savez(args.out, **{jax.tree_util.keystr(p): v for p, v in flat})
    parallel.barrier("written")
    print(
        json.dumps(
            dict(
                multi=multi,
                process=jax.process_index(),
                processes=jax.process_count(),
                main=parallel.is_main_process(),
                local_devices=jax.local_device_count(),
                global_devices=jax.device_count(),
                rows=[rows.start, rows.stop],
                global_batch_rows=int(global_batch["tokens"].shape[0]),
                losses=losses,
            )
        )
    )
    if multi:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
