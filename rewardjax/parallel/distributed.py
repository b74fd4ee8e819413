"""Multi-host start-up, per-host batches and host-0 coordination.

One process per host (TPU VM worker, GPU node, or one per GPU): every process
runs the same program; `initialize_distributed` joins them into one JAX
runtime, after which `jax.devices()` lists every device of every host and a
mesh from `make_mesh` spans them all.

  initialize_distributed()                       # TPU pod slice: found automatically
  initialize_distributed("10.0.0.1:1234", 4, 0)  # GPU cluster: coordinator, count, id
  rows = local_batch_slice(global_batch_size, mesh)      # this host's rows
  batch = host_local_batch_to_global(local_rows, mesh)   # one global jax.Array per leaf
  if is_main_process(): writer.write(...)

The arguments can also come from the environment: JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID (JAX_LOCAL_DEVICE_IDS optional). Without
them, a TPU pod slice (TPU_WORKER_HOSTNAMES with several hosts), a Slurm job
with several tasks or an Open MPI launch is detected and handed to JAX's own
cluster detection; anything else is a single-process run and nothing is done.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rewardjax.parallel.rules import DEFAULT_RULES, Rules, batch_axes, batch_parallelism

PyTree = Any

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "JAX_LOCAL_DEVICE_IDS"


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def detected_cluster(env: Mapping[str, str] | None = None) -> str | None:
    """The managed multi-process environment JAX can configure itself, if any.

    Returns "tpu" (a multi-host TPU slice), "slurm" (several tasks), "mpi"
    (Open MPI with several ranks) or None.
    """
    env = os.environ if env is None else env
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    if (_env_int(env, "SLURM_NTASKS") or 1) > 1 and env.get("SLURM_JOB_ID"):
        return "slurm"
    if (_env_int(env, "OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return "mpi"
    return None


def distributed_arguments(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The keyword arguments for `jax.distributed.initialize`, or None for one process.

    Explicit arguments win over the environment. Raises a one-line error when
    the coordinator is given without the process count and id (and no managed
    cluster supplies them), or when the id is out of range.
    """
    env = os.environ if env is None else env
    coordinator_address = coordinator_address or env.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(env, ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(env, ENV_PROCESS_ID)
    if local_device_ids is None and env.get(ENV_LOCAL_DEVICE_IDS, "").strip():
        local_device_ids = [int(i) for i in env[ENV_LOCAL_DEVICE_IDS].split(",")]
    cluster = detected_cluster(env)
    if coordinator_address is None:
        if num_processes is not None and num_processes > 1 and cluster is None:
            raise ValueError(
                f"num_processes={num_processes} needs a coordinator address "
                f"(--coordinator_address or {ENV_COORDINATOR}=host:port)"
            )
        if cluster is None:
            return None
        # TPU pods, Slurm and MPI: JAX reads the topology from the environment.
        kwargs: dict[str, Any] = {}
    else:
        if (num_processes is None or process_id is None) and cluster is None:
            raise ValueError(
                f"coordinator address {coordinator_address!r} needs num_processes and "
                f"process_id (flags or {ENV_NUM_PROCESSES} / {ENV_PROCESS_ID})"
            )
        kwargs = dict(coordinator_address=coordinator_address)
    if num_processes is not None:
        if num_processes < 1:
            raise ValueError(f"num_processes={num_processes} must be at least 1")
        kwargs["num_processes"] = num_processes
    if process_id is not None:
        if num_processes is not None and not 0 <= process_id < num_processes:
            raise ValueError(f"process_id={process_id} is outside [0, {num_processes})")
        kwargs["process_id"] = process_id
    if local_device_ids is not None:
        kwargs["local_device_ids"] = list(local_device_ids)
    if kwargs.get("num_processes") == 1 and "coordinator_address" in kwargs:
        return None
    return kwargs


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
) -> bool:
    """Joins this process to a multi-process JAX run; call before any other JAX work.

    Args:
      coordinator_address: "host:port" of process 0's coordinator service
        (GPU clusters); None = $JAX_COORDINATOR_ADDRESS or auto-detection.
      num_processes: total processes; None = $JAX_NUM_PROCESSES or detected.
      process_id: this process's rank in [0, num_processes); None =
        $JAX_PROCESS_ID or detected.
      local_device_ids: devices this process drives (one process per GPU).

    Returns:
      True when running multi-process (now or from an earlier call), False for
      a plain single-process run.
    """
    if jax.distributed.is_initialized():
        return True
    kwargs = distributed_arguments(
        coordinator_address, num_processes, process_id, local_device_ids=local_device_ids
    )
    if kwargs is None:
        return False
    jax.distributed.initialize(**kwargs)
    logging.info(
        "process %d of %d: %d local devices, %d global",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def is_main_process() -> bool:
    """True on process 0, the one that logs, writes metrics and writes files."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Blocks until every process reaches the barrier `name` (no-op on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def local_batch_slice(global_rows: int, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> slice:
    """The rows of a global batch that this process's devices hold.

    The input pipeline of each host loads exactly these rows; they are
    contiguous for meshes from `make_mesh` (each host's devices are adjacent
    along the batch axes).
    """
    parts = batch_parallelism(mesh, rules)
    if global_rows % parts:
        raise ValueError(
            f"global batch of {global_rows} rows does not divide over the {parts} "
            "data-parallel devices of the mesh"
        )
    sharding = NamedSharding(mesh, PartitionSpec(batch_axes(rules)))
    index_map = sharding.addressable_devices_indices_map((global_rows,))
    starts = sorted({idx[0].start or 0 for idx in index_map.values()})
    stops = sorted(
        {global_rows if idx[0].stop is None else idx[0].stop for idx in index_map.values()}
    )
    lo, hi = starts[0], stops[-1]
    covered = sum(b - a for a, b in zip(starts, stops))
    if covered != hi - lo:
        raise ValueError(
            f"process {jax.process_index()} holds non-contiguous batch rows {list(zip(starts, stops))}; "
            "build the mesh with make_mesh so each host's devices are adjacent"
        )
    return slice(lo, hi)


def host_local_batch_to_global(
    local_batch: PyTree, mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> PyTree:
    """Assembles each host's rows into global `jax.Array`s sharded over the batch axes.

    Args:
      local_batch: this process's rows (numpy or jax arrays, [B_local, ...]
        per leaf), i.e. `global_batch[local_batch_slice(B, mesh)]`.
      mesh: the global mesh.
      rules: the table whose `act_batch` row says how the batch is split.

    Returns:
      The batch as global arrays of [B_local × process_count, ...] rows with
      `batch_sharding(mesh)`; no data crosses hosts.
    """
    sharding = NamedSharding(mesh, PartitionSpec(batch_axes(rules)))
    parts = batch_parallelism(mesh, rules)
    processes = len({d.process_index for d in mesh.devices.flat})

    def to_global(x):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("batch leaves must be [B, ...] arrays, got a scalar")
        global_rows = x.shape[0] * processes
        if global_rows % parts:
            raise ValueError(
                f"{x.shape[0]} rows per host × {processes} hosts = {global_rows} rows do not "
                f"divide over the {parts} data-parallel devices"
            )
        return jax.make_array_from_process_local_data(sharding, x, (global_rows, *x.shape[1:]))

    return jax.tree.map(to_global, local_batch)


def addressable(tree: PyTree) -> PyTree:
    """The leaves of `tree` in a form this process can read and compute on locally.

    On one process everything already is (returned as is, still on device);
    on several, arrays with shards on other processes are gathered to numpy
    (a collective, like `gather_to_host`).
    """
    if jax.process_count() == 1:
        return tree
    return gather_to_host(tree)


def gather_to_host(tree: PyTree) -> PyTree:
    """Full numpy copies of the leaves of `tree`, on every process.

    A `jax.Array` whose shards sit on several processes is all-gathered (a
    collective: every process must call this with the same tree); any other
    leaf (a local or fully replicated array, numpy) is copied as it is. Host
    code that reads a device result (decoding completions, grading, export)
    goes through here, so it runs unchanged on one host and on a pod.
    """

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
