"""Logical-axis rules: one ordered table from logical names to mesh axes.

Every parameter of `rewardjax.models` carries logical axis names (`vocab`,
`embed`, `heads`, `kv`, `mlp`, `layers`) and every constrained activation
carries `act_*` names. The table below maps each name to mesh axes; rows are
in priority order (flax semantics: a name whose mesh axis is already taken by
an earlier row in the same array stays unsharded) and the table ends in a
catch-all `("*", None)` that replicates any other name. Drop the catch-all to
make a table strict: then a parameter whose name has no row is an error that
names the parameter.

  shardings = state_shardings(state, mesh, {"policy": models.logical_axes(cfg)})
  state = jax.device_put(state, shardings)
  step = jit_step(update_fn, mesh, shardings, batch_sharding(mesh))
  state, metrics = step(state, shard_batch(batch, mesh), rng)
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
MeshAxes = str | tuple[str, ...] | None
Rules = Sequence[tuple[str, MeshAxes]]

CATCH_ALL = "*"

DEFAULT_RULES: tuple[tuple[str, MeshAxes], ...] = (
    # Parameters. `embed` on fsdp shards every matrix along the model width
    # (ZeRO-3: XLA gathers each layer's weights before use); heads, MLP width
    # and vocabulary on tensor (Megatron-style column/row split).
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    # Head width: on fsdp only where `embed` did not take it (a q/k/v bias, a
    # q/k norm), so that no parameter stays whole on every fsdp device.
    ("kv", "fsdp"),
    ("mlp", "tensor"),
    ("layers", None),
    # Activations: the batch over every data-parallel axis; MLP width and
    # heads follow their weights; the residual stream is whole on each device.
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_head_dim", None),
    (CATCH_ALL, None),
)

# Logical names of a KVCache leaf [num_layers, B, K, S, Dh].
KV_CACHE_AXES = ("layers", "act_batch", "act_kv_heads", "act_length", "act_head_dim")


def _is_spec(x) -> bool:
    return isinstance(x, PartitionSpec)


def _path_str(path) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _axes_tuple(axes: MeshAxes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def validate_rules(rules: Rules, mesh: Mesh | None = None) -> None:
    """Checks the table: (name, axes) rows, catch-all only last, axes present in `mesh`."""
    for i, row in enumerate(rules):
        if not (isinstance(row, tuple | list) and len(row) == 2 and isinstance(row[0], str)):
            raise ValueError(f"rule {i} is {row!r}; expected (logical_name, mesh_axes)")
        name, axes = row
        if name == CATCH_ALL and i != len(rules) - 1:
            raise ValueError(f"the catch-all rule ({CATCH_ALL!r}, ...) must be last; it is row {i}")
        if mesh is not None:
            for axis in _axes_tuple(axes):
                if axis not in mesh.axis_names:
                    raise ValueError(
                        f"rule ({name!r}, {axes!r}) names mesh axis {axis!r}; "
                        f"the mesh has {', '.join(mesh.axis_names)}"
                    )


def activation_rules(rules: Rules = DEFAULT_RULES) -> tuple[tuple[str, MeshAxes], ...]:
    """The table in flax's `nn.logical_axis_rules` form (the catch-all dropped:
    flax leaves names without a row unsharded, which is what the catch-all says)."""
    return tuple((name, axes) for name, axes in rules if name != CATCH_ALL)


def logical_to_spec(
    names: PartitionSpec | Sequence[str | None],
    rules: Rules = DEFAULT_RULES,
    *,
    what: str = "array",
) -> PartitionSpec:
    """Mesh PartitionSpec for one array's logical names.

    Args:
      names: one logical name (or None) per dimension.
      rules: the ordered table.
      what: the array's name, for the error message.

    Raises:
      ValueError: a name has no row and the table has no catch-all.
    """
    names = tuple(names)
    known = {n for n, _ in rules}
    if CATCH_ALL not in known:
        missing = [n for n in names if isinstance(n, str) and n not in known]
        if missing:
            raise ValueError(
                f"{what}: logical axis {missing[0]!r} (of {names}) matches no rule and the "
                f"table has no catch-all ({CATCH_ALL!r}, None)"
            )
    spec = nn.logical_to_mesh_axes(names, activation_rules(rules))
    return PartitionSpec(*spec) if spec is not None else PartitionSpec()


def _check_divisible(spec: PartitionSpec, shape: Sequence[int], mesh, names, what: str) -> None:
    if len(spec) > len(shape):
        raise ValueError(
            f"{what}: logical axes {tuple(names)} name {len(spec)} dimensions but its shape "
            f"is {tuple(shape)}"
        )
    for dim, axes in enumerate(spec):
        axes = _axes_tuple(axes)
        parts = math.prod(mesh.shape[a] for a in axes)
        if parts > 1 and shape[dim] % parts:
            sizes = "×".join(f"{a}={mesh.shape[a]}" for a in axes)
            raise ValueError(
                f"{what}: dimension {dim} ({names[dim]!r}) of size {shape[dim]} does not "
                f"divide over mesh axes {sizes} = {parts}; change the mesh or the rule for "
                f"{names[dim]!r}"
            )


def param_specs(
    params_logical_axes: PyTree,
    rules: Rules = DEFAULT_RULES,
    *,
    mesh: Mesh | None = None,
    shapes: PyTree | None = None,
) -> PyTree:
    """PartitionSpecs of mesh axes for a pytree of logical PartitionSpecs.

    Args:
      params_logical_axes: pytree whose leaves are PartitionSpecs of logical
        names (`models.logical_axes(config, heads)`).
      rules: the ordered table.
      mesh: when given, checks that the table's mesh axes exist, and with
        `shapes` that each sharded dimension divides.
      shapes: pytree matching the params (arrays or ShapeDtypeStructs).

    Returns:
      Pytree of mesh-axis PartitionSpecs with the params' structure.
    """
    validate_rules(rules, mesh)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params_logical_axes, is_leaf=_is_spec)
    shape_list = None
    if shapes is not None:
        shape_flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
        if len(shape_flat) != len(flat) or [p for p, _ in shape_flat] != [p for p, _ in flat]:
            have = {_path_str(p) for p, _ in shape_flat}
            want = {_path_str(p) for p, _ in flat}
            raise ValueError(
                "params and their logical axes differ: only in params "
                f"{sorted(have - want)[:5]}, only in logical axes {sorted(want - have)[:5]}"
            )
        shape_list = [np.shape(x) for _, x in shape_flat]
    specs = []
    for i, (path, names) in enumerate(flat):
        what = f"parameter {_path_str(path)}"
        if not _is_spec(names):
            raise ValueError(f"{what}: logical axes must be a PartitionSpec, got {names!r}")
        spec = logical_to_spec(names, rules, what=what)
        if shape_list is not None and mesh is not None:
            _check_divisible(spec, shape_list[i], mesh, tuple(names), what)
        specs.append(spec)
    return jax.tree_util.tree_unflatten(treedef, specs)


def param_shardings(
    params_logical_axes: PyTree,
    mesh: Mesh,
    rules: Rules = DEFAULT_RULES,
    *,
    shapes: PyTree | None = None,
) -> PyTree:
    """NamedShardings for params from their logical axes (see `param_specs`).

    Raises:
      ValueError: naming the parameter, when its logical name matches no rule
        (strict table), or a sharded dimension does not divide (with `shapes`).
    """
    specs = param_specs(params_logical_axes, rules, mesh=mesh, shapes=shapes)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=_is_spec)


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full value on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def batch_axes(rules: Rules = DEFAULT_RULES) -> MeshAxes:
    """Mesh axes of the batch dimension: the `act_batch` row of the table."""
    for name, axes in rules:
        if name == "act_batch":
            return axes
    return None


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """Leading (batch) dimension split over the `act_batch` axes, the rest replicated.

    One sharding serves every [B, ...] leaf of a batch (a pytree prefix for jit).
    """
    return NamedSharding(mesh, PartitionSpec(batch_axes(rules)))


def batch_parallelism(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> int:
    """How many ways the batch dimension is split (data × fsdp by default)."""
    validate_rules(rules, mesh)
    return math.prod(mesh.shape[a] for a in _axes_tuple(batch_axes(rules)))


def check_batch(batch: PyTree, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> None:
    """Raises when a batch leaf's rows do not divide over the data-parallel devices."""
    parts = batch_parallelism(mesh, rules)
    axes = "×".join(f"{a}={mesh.shape[a]}" for a in _axes_tuple(batch_axes(rules))) or "none"
    for path, x in jax.tree_util.tree_flatten_with_path(batch)[0]:
        what = f"batch leaf {_path_str(path)}" if path else "batch"
        if np.ndim(x) == 0:
            raise ValueError(f"{what} is a scalar; batch leaves are [B, ...]")
        if np.shape(x)[0] % parts:
            raise ValueError(
                f"{what} has {np.shape(x)[0]} rows, which do not divide "
                f"over the data-parallel mesh axes {axes} = {parts}"
            )


def shard_batch(batch: PyTree, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> PyTree:
    """Places a batch (the full global batch, the same on every process) on the mesh.

    Each device receives its rows. Runs whose hosts each load only their own
    rows use `distributed.host_local_batch_to_global` instead.
    """
    check_batch(batch, mesh, rules)
    if jax.process_count() > 1:
        # Arrays local to this process go through the host: a device-to-device
        # copy onto devices of other processes is not possible.
        batch = jax.tree.map(
            lambda x: (
                x if isinstance(x, jax.Array) and not x.is_fully_addressable else np.asarray(x)
            ),
            batch,
        )
    return jax.device_put(batch, batch_sharding(mesh, rules))


def shard_params(params: PyTree, shardings: PyTree) -> PyTree:
    """Places params (host or device arrays) with the given shardings."""
    return jax.device_put(params, shardings)


def _key_names(path) -> tuple[str, ...]:
    return tuple(_path_str((k,)) for k in path)


def opt_state_shardings(
    opt_state: PyTree,
    params: PyTree,
    params_shardings: PyTree,
    mesh: Mesh,
) -> PyTree:
    """Shardings for an optax state: each leaf follows the parameter it mirrors.

    optax keeps per-parameter statistics (Adam's mu and nu, momentum, ...) as
    copies of the params tree inside its state, so a state leaf whose key path
    ends with a parameter's full path and has that parameter's shape gets the
    parameter's sharding; every other leaf (step counts, scalars, factored
    statistics of another shape) is replicated.
    """
    index: dict[tuple[str, ...], tuple[tuple[int, ...], NamedSharding]] = {}
    flat_p = jax.tree_util.tree_flatten_with_path(params)[0]
    flat_s = jax.tree_util.tree_leaves(params_shardings)
    for (path, x), sharding in zip(flat_p, flat_s, strict=True):
        index[_key_names(path)] = (tuple(np.shape(x)), sharding)
    rep = replicated(mesh)

    def pick(path, leaf):
        names = _key_names(path)
        for start in range(len(names)):
            hit = index.get(names[start:])
            if hit is not None:
                shape, sharding = hit
                return sharding if tuple(np.shape(leaf)) == shape else rep
        return rep

    return jax.tree_util.tree_map_with_path(pick, opt_state)


def state_shardings(
    state: Any,
    mesh: Mesh,
    params_logical_axes: PyTree,
    rules: Rules = DEFAULT_RULES,
) -> Any:
    """Shardings for a `TrainState` (or any struct with `.params` and `.opt_state`).

    Args:
      state: the state, concrete or abstract (`jax.eval_shape` output).
      mesh: the mesh.
      params_logical_axes: logical PartitionSpecs matching `state.params`, e.g.
        `{"policy": models.logical_axes(cfg)}`.
      rules: the ordered table.

    Returns:
      The state's structure with a NamedSharding per leaf: params by the
      rules, optimizer statistics like their parameter, counters replicated.
    """
    p_sh = param_shardings(params_logical_axes, mesh, rules, shapes=state.params)
    o_sh = opt_state_shardings(state.opt_state, state.params, p_sh, mesh)
    rest = jax.tree.map(lambda _: replicated(mesh), state)
    return rest.replace(params=p_sh, opt_state=o_sh)


def kv_cache_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """Sharding of a KVCache leaf [num_layers, B, K, S, Dh]: batch over the data
    axes, KV heads over tensor (a prefix for the whole KVCache)."""
    return NamedSharding(mesh, logical_to_spec(KV_CACHE_AXES, rules, what="KV cache"))


@contextlib.contextmanager
def use_rules(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Iterator[None]:
    """Activates the mesh and the table for `nn.with_logical_constraint`.

    Use it around eager code or around the first call of a `jax.jit` function
    that you jitted yourself; `jit_sharded` and `jit_step` already trace under it.
    """
    validate_rules(rules, mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(activation_rules(rules)):
        yield


def _traced_under_rules(fn: Callable, mesh: Mesh, rules: Rules) -> Callable:
    flax_rules = activation_rules(rules)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        # Inside a trace only an abstract mesh may be entered; the activation
        # constraints need nothing more.
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(flax_rules):
            return fn(*args, **kwargs)

    return wrapped


def jit_sharded(
    fn: Callable,
    mesh: Mesh,
    *,
    in_shardings: Any,
    out_shardings: Any,
    rules: Rules = DEFAULT_RULES,
    donate_argnums: int | Sequence[int] = (),
    static_argnums: int | Sequence[int] = (),
) -> Callable:
    """`jax.jit` with explicit shardings, tracing `fn` with the logical rules active.

    The activations that the model marks with `nn.with_logical_constraint`
    (act_batch, act_mlp, ...) are constrained by `rules`; everything else is
    left to XLA's propagation.
    """
    validate_rules(rules, mesh)
    return jax.jit(
        _traced_under_rules(fn, mesh, rules),
        in_shardings=in_shardings,
        out_shardings=out_shardings,
        donate_argnums=donate_argnums,
        static_argnums=static_argnums,
    )


def jit_step(
    update_fn: Callable,
    mesh: Mesh,
    state_sharding: Any,
    batch_sharding: Any,
    *,
    rules: Rules = DEFAULT_RULES,
    donate: bool = True,
) -> Callable:
    """Jits `update_fn(state, batch, rng) -> (state, metrics)` for the mesh.

    Args:
      update_fn: from `training.step.make_update_step` (not jitted).
      mesh: the mesh.
      state_sharding: `state_shardings(...)` of the state.
      batch_sharding: a sharding (prefix) for the batch, normally
        `batch_sharding(mesh)`.
      rules: the table for the activation constraints.
      donate: donate the input state's buffers (argument 0) to the output.

    Returns:
      The compiled step `(state, batch, rng, scalars=None)`: state in and out
      keep `state_sharding`; the RNG key, the scalars ({name: float}) and the
      metrics are replicated.
    """
    rep = replicated(mesh)
    step = jit_sharded(
        update_fn,
        mesh,
        in_shardings=(state_sharding, batch_sharding, rep, rep),
        out_shardings=(state_sharding, rep),
        rules=rules,
        donate_argnums=(0,) if donate else (),
    )

    return _Step(step)


class _Step:
    """A jitted `(state, batch, rng, scalars)` step whose scalars default to none.

    Scalars (β, ...) are replicated f32 inputs: a new value never recompiles.
    """

    def __init__(self, jitted: Callable):
        self.jitted = jitted

    @staticmethod
    def _scalars(scalars: Mapping[str, Any] | None) -> dict:
        return {k: np.float32(v) for k, v in (scalars or {}).items()}

    def __call__(self, state, batch, rng, scalars: Mapping[str, Any] | None = None):
        return self.jitted(state, batch, rng, self._scalars(scalars))

    def lower(self, state, batch, rng, scalars: Mapping[str, Any] | None = None):
        return self.jitted.lower(state, batch, rng, self._scalars(scalars))

    def _cache_size(self) -> int:
        return self.jitted._cache_size()


def init_sharded(
    init_fn: Callable, mesh: Mesh, shardings: Any, *args, rules: Rules = DEFAULT_RULES
) -> Any:
    """Runs `init_fn(*args)` compiled to produce its result already sharded.

    A fresh model or TrainState is then never whole on one device, e.g.
    `init_sharded(lambda k: TrainState.create({"policy": models.init_params(cfg, k)}, opt),
    mesh, shardings, key)` with `shardings = state_shardings(jax.eval_shape(...), ...)`.
    """
    validate_rules(rules, mesh)
    return jax.jit(_traced_under_rules(init_fn, mesh, rules), out_shardings=shardings)(*args)


def shardings_summary(shardings: PyTree) -> Mapping[str, str]:
    """{param path: PartitionSpec text}, for logs and error reports."""
    flat = jax.tree_util.tree_flatten_with_path(
        shardings, is_leaf=lambda x: isinstance(x, NamedSharding)
    )[0]
    return {_path_str(p): str(s.spec) for p, s in flat}
