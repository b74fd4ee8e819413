"""Runs the update steps of `_steps` on one device and on several meshes; prints JSON.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
    python tests/parallel/_equivalence_worker.py --cases sft,dpo --meshes 8,1,1:2,2,2

For each case and mesh: the largest |difference| from the single-device run in
each step's metrics and in the final params, how far the params moved from
their initial values, and facts showing that the run was really sharded.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _steps

from rewardjax import parallel

STEPS = 2


def _numpy(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _max_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b)
    return max(jax.tree.leaves(diffs))


def _run(step, state, batch, seed=1):
    losses = []
    for i in range(STEPS):
        state, metrics = step(state, batch, jax.random.key(seed + i))
        losses.append({k: float(v) for k, v in metrics.items()})
    return state, losses


def _with_no_scalars(compiled, state, batch, key):
    return compiled(state, batch, key, {})


def run_case(name: str, meshes: list[tuple[int, int, int]]) -> dict:
    update, state, batch, axes = _steps.make_case(name)
    host_state = _numpy(state)
    init_params = host_state.params
    ref_state, ref_metrics = _run(
        jax.jit(update, donate_argnums=0), jax.device_put(host_state), batch
    )
    ref_params = _numpy(ref_state.params)
    out = {}
    for shape in meshes:
        mesh = parallel.make_mesh(data=shape[0], fsdp=shape[1], tensor=shape[2])
        shardings = parallel.state_shardings(host_state, mesh, axes)
        state = jax.device_put(host_state, shardings)
        step = parallel.jit_step(update, mesh, shardings, parallel.batch_sharding(mesh))
        sharded_batch = parallel.shard_batch(batch, mesh)
        lowered = step.lower(state, sharded_batch, jax.random.key(0))
        hlo = lowered.as_text()
        compiled = lowered.compile()  # the step's 4th input: its scalars (none here)
        new_state, metrics = _run(
            functools.partial(_with_no_scalars, compiled), state, sharded_batch
        )
        params = _numpy(new_state.params)
        q = new_state.params["policy"]["layers"]["attn"]["q_proj"]["kernel"]
        mu = new_state.opt_state[1][0].mu["policy"]["layers"]["attn"]["q_proj"]["kernel"]
        out[",".join(map(str, shape))] = dict(
            # Metrics such as grad_norm are O(10): compare them relative to their size.
            metric_rel_diff=max(
                abs(m[k] - r[k]) / max(1.0, abs(r[k]))
                for m, r in zip(metrics, ref_metrics, strict=True)
                for k in r
            ),
            metric_names=sorted(ref_metrics[0]),
            loss=[m["loss"] for m in metrics],
            ref_loss=[r["loss"] for r in ref_metrics],
            param_diff=_max_diff(params, ref_params),
            moved=_max_diff(ref_params, init_params),
            q_proj_shard=list(q.sharding.shard_shape(q.shape)),
            q_proj_mu_shard=list(mu.sharding.shard_shape(mu.shape)),
            state_sharding_kept=new_state.params["policy"]["embed"]["embedding"].sharding
            == shardings.params["policy"]["embed"]["embedding"],
            activation_constraints=hlo.count("sharding_constraint"),
            devices=len(q.sharding.device_set),
        )
    return out


def _error(fn) -> str:
    try:
        fn()
    except ValueError as e:
        return str(e)
    return ""


def layout() -> dict:
    """Mesh construction, sub-meshes and batch / cache placement on 8 devices."""

    rest = parallel.make_mesh(data=-1, fsdp=2, tensor=2)
    mesh = parallel.make_mesh(data=2, fsdp=2, tensor=2)
    parts = parallel.split_mesh(
        parallel.make_mesh(data=8), {"policy": 4, "reference": 2, "reward": 2}
    )
    cache = jax.ShapeDtypeStruct((2, 8, 2, 16, 16), np.float32)  # [L, B, K, S, Dh]
    kv = parallel.kv_cache_sharding(mesh)
    batch = parallel.host_local_batch_to_global({"x": np.arange(16).reshape(8, 2)}, mesh)
    sliced = parallel.local_batch_slice(8, mesh)
    return dict(
        rest_shape=[rest.shape[a] for a in parallel.MESH_AXES],
        split={k: [int(d.id) for d in m.devices.flat] for k, m in parts.items()},
        split_shapes={k: [m.shape[a] for a in parallel.MESH_AXES] for k, m in parts.items()},
        kv_shard=list(kv.shard_shape(cache.shape)),
        global_batch_shape=list(batch["x"].shape),
        global_batch_shard=list(batch["x"].sharding.shard_shape(batch["x"].shape)),
        global_batch_values=np.asarray(batch["x"]).tolist(),
        local_slice=[sliced.start, sliced.stop],
        bad_size=_error(lambda: parallel.make_mesh(data=3)),
        bad_batch=_error(lambda: parallel.shard_batch({"x": np.zeros((6, 2))}, mesh)),
        bad_split=_error(lambda: parallel.split_mesh(mesh, {"policy": 1, "reward": 2})),
        describe=parallel.describe(mesh),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(_steps.CASES))
    parser.add_argument("--meshes", default="8,1,1:2,4,1:1,4,2:2,2,2")
    parser.add_argument("--layout", action="store_true")
    args = parser.parse_args()
    meshes = [parallel.parse_mesh(m) for m in args.meshes.split(":")]
    result = {name: run_case(name, meshes) for name in args.cases.split(",") if name}
    if args.layout:
        result["layout"] = layout()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
