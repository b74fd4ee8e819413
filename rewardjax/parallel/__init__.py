"""Meshes, logical-axis rules, sharded jit and multi-host start-up (no pmap).

  initialize_distributed()                                   # multi-host; no-op on one box
  mesh = mesh_from_config(config.mesh)                       # data × fsdp × tensor
  shardings = state_shardings(state, mesh, {"policy": models.logical_axes(cfg)})
  state = jax.device_put(state, shardings)
  step = jit_step(make_update_step(loss, opt), mesh, shardings, batch_sharding(mesh))
  state, metrics = step(state, shard_batch(batch, mesh), rng)

`docs/distributed.md` has the launch recipes for TPU pod slices and GPU clusters;
memory planning of a training step lives with the trainers
(`rewardjax.training.memory_plan`).
"""

from rewardjax.parallel.distributed import (
    addressable,
    barrier,
    detected_cluster,
    distributed_arguments,
    gather_to_host,
    host_local_batch_to_global,
    initialize_distributed,
    is_main_process,
    local_batch_slice,
)
from rewardjax.parallel.mesh import (
    MESH_AXES,
    describe,
    make_mesh,
    mesh_from_config,
    parse_mesh,
    resolve_mesh_shape,
    split_mesh,
    submesh,
)
from rewardjax.parallel.rules import (
    CATCH_ALL,
    DEFAULT_RULES,
    KV_CACHE_AXES,
    activation_rules,
    batch_axes,
    batch_parallelism,
    batch_sharding,
    check_batch,
    init_sharded,
    jit_sharded,
    jit_step,
    kv_cache_sharding,
    logical_to_spec,
    opt_state_shardings,
    param_shardings,
    param_specs,
    replicated,
    shard_batch,
    shard_params,
    shardings_summary,
    state_shardings,
    use_rules,
    validate_rules,
)

__all__ = [
    "CATCH_ALL",
    "DEFAULT_RULES",
    "KV_CACHE_AXES",
    "MESH_AXES",
    "activation_rules",
    "addressable",
    "barrier",
    "batch_axes",
    "batch_parallelism",
    "batch_sharding",
    "check_batch",
    "describe",
    "detected_cluster",
    "distributed_arguments",
    "gather_to_host",
    "host_local_batch_to_global",
    "init_sharded",
    "initialize_distributed",
    "is_main_process",
    "jit_sharded",
    "jit_step",
    "kv_cache_sharding",
    "local_batch_slice",
    "logical_to_spec",
    "make_mesh",
    "mesh_from_config",
    "opt_state_shardings",
    "param_shardings",
    "param_specs",
    "parse_mesh",
    "replicated",
    "resolve_mesh_shape",
    "shard_batch",
    "shard_params",
    "shardings_summary",
    "split_mesh",
    "state_shardings",
    "submesh",
    "use_rules",
    "validate_rules",
]
