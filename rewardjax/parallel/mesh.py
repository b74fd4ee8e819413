"""Device meshes with the axes `data`, `fsdp` and `tensor`, built from config sizes.

  mesh = make_mesh(data=-1, fsdp=4, tensor=2)          # -1: the rest of the devices
  mesh = mesh_from_config(config.mesh)                 # {"data": -1, "fsdp": 1, "tensor": 1}
  meshes = split_mesh(mesh, {"policy": 6, "reference": 2})   # sub-meshes along `data`

`data` replicates the model and splits the batch; `fsdp` splits the batch and
the parameters / optimizer state (ZeRO-3: weights are gathered per layer);
`tensor` splits heads, MLP width and vocabulary (Megatron-style). Every mesh
axis is `AxisType.Auto`, so XLA's sharding propagation places the
intermediate values that the logical rules leave unconstrained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")


def resolve_mesh_shape(sizes: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Mesh sizes with at most one -1 replaced by the devices left over.

    Args:
      sizes: one size per axis of `MESH_AXES` (data, fsdp, tensor); -1 = the rest.
      num_devices: devices the mesh must cover exactly.

    Returns:
      The sizes as positive ints whose product is `num_devices`.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) != len(MESH_AXES):
        raise ValueError(
            f"mesh sizes {sizes} must give one size per axis {MESH_AXES} (data, fsdp, tensor)"
        )
    named = ", ".join(f"{a}={s}" for a, s in zip(MESH_AXES, sizes))
    bad = [s for s in sizes if s == 0 or s < -1]
    if bad:
        raise ValueError(f"mesh {named}: sizes must be positive or -1 (the rest)")
    free = [i for i, s in enumerate(sizes) if s == -1]
    if len(free) > 1:
        raise ValueError(f"mesh {named}: at most one axis may be -1 (the rest)")
    fixed = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"mesh {named}: the fixed sizes multiply to {fixed}, which does not divide "
                f"the {num_devices} devices"
            )
        sizes = tuple(num_devices // fixed if s == -1 else s for s in sizes)
    elif fixed != num_devices:
        raise ValueError(
            f"mesh {named} multiplies to {fixed} devices but {num_devices} devices are available"
        )
    return sizes


def make_mesh(
    *,
    data: int = -1,
    fsdp: int = 1,
    tensor: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A `data × fsdp × tensor` mesh over `devices` (default: every device of every host).

    Args:
      data: data-parallel size; -1 = the devices left by the other axes.
      fsdp: fully-sharded data-parallel size (batch and parameters split).
      tensor: tensor-parallel size (heads, MLP width, vocabulary split).
      devices: the devices to use, in order; None = `jax.devices()`, laid out
        by `jax.make_mesh` so that `tensor` (the chattiest axis) maps to the
        closest devices of the physical topology.

    Returns:
      A `jax.sharding.Mesh` with axis names ("data", "fsdp", "tensor") and
      Auto axis types.
    """
    all_devices = devices is None
    devices = list(jax.devices() if all_devices else devices)
    shape = resolve_mesh_shape((data, fsdp, tensor), len(devices))
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    if all_devices:
        return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types)
    return Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES, axis_types=axis_types)


def mesh_from_config(
    mesh_config: Mapping[str, int], *, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """`make_mesh` from a config block with the keys data, fsdp and tensor.

    An unknown key is an error (a misspelt axis would otherwise be ignored).
    """
    keys = set(mesh_config.keys())
    unknown = sorted(keys - set(MESH_AXES))
    missing = sorted(set(MESH_AXES) - keys)
    if unknown or missing:
        raise ValueError(
            f"config mesh has keys {sorted(keys)}; expected exactly {', '.join(MESH_AXES)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    return make_mesh(
        data=mesh_config["data"],
        fsdp=mesh_config["fsdp"],
        tensor=mesh_config["tensor"],
        devices=devices,
    )


def parse_mesh(text: str) -> tuple[int, int, int]:
    """Parses "data,fsdp,tensor" (e.g. "1,64,1" or "-1,1,2") into three ints."""
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--mesh={text!r} must be three integers data,fsdp,tensor") from None
    if len(sizes) != len(MESH_AXES):
        raise ValueError(f"--mesh={text!r} must be three integers data,fsdp,tensor")
    return sizes  # type: ignore[return-value]


def submesh(mesh: Mesh, *, axis: str = "data", start: int, size: int) -> Mesh:
    """The mesh restricted to positions [start, start+size) of one axis (same axis names)."""
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has no axis {axis!r}; axes: {', '.join(mesh.axis_names)}")
    dim = mesh.axis_names.index(axis)
    full = mesh.devices.shape[dim]
    if size <= 0 or start < 0 or start + size > full:
        raise ValueError(
            f"sub-mesh [{start}, {start + size}) of axis {axis!r} is outside its size {full}"
        )
    devices = np.take(mesh.devices, np.arange(start, start + size), axis=dim)
    return Mesh(devices, mesh.axis_names, axis_types=mesh.axis_types)


def split_mesh(mesh: Mesh, parts: Mapping[str, int], *, axis: str = "data") -> dict[str, Mesh]:
    """Disjoint sub-meshes, one per model, cut along one axis.

    Example: on a (data=8, fsdp=1, tensor=1) mesh,
    `split_mesh(mesh, {"policy": 4, "reference": 2, "reward": 2})` gives the
    policy devices 0-3, the reference model 4-5 and the reward model 6-7. Arrays
    move between sub-meshes with `jax.device_put(x, sharding_on_other_mesh)`.

    Args:
      mesh: the mesh to cut.
      parts: model name → its size along `axis`; the sizes must sum to the
        axis size.
      axis: the mesh axis to cut (default "data").

    Returns:
      {name: Mesh} in the order of `parts`.
    """
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has no axis {axis!r}; axes: {', '.join(mesh.axis_names)}")
    full = mesh.shape[axis]
    total = sum(parts.values())
    if total != full:
        listed = ", ".join(f"{k}={v}" for k, v in parts.items())
        raise ValueError(f"sub-mesh sizes {listed} sum to {total}, not the {axis} size {full}")
    out, start = {}, 0
    for name, size in parts.items():
        out[name] = submesh(mesh, axis=axis, start=start, size=size)
        start += size
    return out


def describe(mesh: Mesh) -> str:
    """'data=2 fsdp=2 tensor=2 (8 devices, 1 process)'."""
    sizes = " ".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names)
    processes = len({d.process_index for d in mesh.devices.flat})
    return f"{sizes} ({mesh.devices.size} devices, {processes} process{'es' * (processes > 1)})"
