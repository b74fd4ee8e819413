"""TrainState and the update-step factory shared by every trainer.

  step = make_update_step(loss_fn, optimizer, microbatches=4)
  step = jax.jit(step, donate_argnums=0)          # or parallel.jit_step(...)
  state, metrics = step(state, batch, rng, {"kl_coef": 0.04})

`loss_fn(params, batch, rng, totals) -> (loss, metrics)` sees one micro-batch;
`totals` holds batch-wide normalisers (token and sequence counts of the whole
batch) so that the sum of micro-batch losses equals the full-batch loss: the
aggregation modes stay invariant to how a batch is split. `totals` also carries
the step's scalar inputs (`scalars`, e.g. the KL coefficient β): traced f32
scalars, replicated, so a changing value never recompiles the step.

A non-finite loss or gradient skips the update: params and optimizer state are
returned unchanged, `skipped` counts it, and `consecutive_skips` lets the
trainer stop after K in a row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

Array = jax.Array
PyTree = Any
LossFn = Callable[[PyTree, dict, Array, dict], tuple[Array, dict]]


@flax.struct.dataclass
class TrainState:
    """Everything an update step reads and writes.

    Attributes:
      step: number of update steps taken (skipped ones included).
      params: model parameters (a pytree; for PPO {"policy": ..., "critic": ...}).
      opt_state: optax state.
      skipped: total updates skipped for non-finite loss or gradients.
      consecutive_skips: skips since the last applied update.
    """

    step: Array
    params: PyTree
    opt_state: PyTree
    skipped: Array
    consecutive_skips: Array

    @classmethod
    def create(
        cls,
        params: PyTree,
        optimizer: optax.GradientTransformation,
        trainable: PyTree | None = None,
    ) -> TrainState:
        """A fresh state; with a `trainable` mask the optimizer holds statistics of those leaves only."""
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params if trainable is None else select(params, trainable)),
            skipped=jnp.zeros((), jnp.int32),
            consecutive_skips=jnp.zeros((), jnp.int32),
        )


def select(params: PyTree, trainable: PyTree) -> PyTree:
    """`params` with the leaves whose `trainable` flag is False replaced by None (no leaf)."""
    return jax.tree.map(lambda x, keep: x if keep else None, params, trainable)


def combine(trainable: PyTree, params: PyTree, selected: PyTree) -> PyTree:
    """`params` with its trainable leaves taken from `selected` (a `select` of it)."""
    return jax.tree.map(
        lambda keep, old, new: new if keep else old,
        trainable,
        params,
        selected,
        is_leaf=lambda x: x is None,
    )


def batch_totals(batch: dict) -> dict[str, Array]:
    """Batch-wide normalisers: token count and count of non-empty rows of `mask`, Σ weight."""
    totals: dict[str, Array] = {}
    if "mask" in batch:
        mask = batch["mask"].astype(jnp.float32)
        totals["num_tokens"] = jnp.sum(mask)
        totals["num_seqs"] = jnp.sum(jnp.sum(mask, axis=-1) > 0).astype(jnp.float32)
        totals["num_rows"] = jnp.float32(mask.shape[0])
    elif batch:
        totals["num_rows"] = jnp.float32(jax.tree.leaves(batch)[0].shape[0])
    if "weight" in batch:  # per-row weights (e.g. preference pairs): their batch-wide sum
        totals["total_weight"] = jnp.sum(batch["weight"].astype(jnp.float32))
    return totals


def split_microbatches(batch: dict, microbatches: int) -> dict:
    """Reshapes every [B, ...] leaf to [M, B/M, ...]."""

    def split(x):
        if x.shape[0] % microbatches:
            raise ValueError(
                f"batch of {x.shape[0]} rows does not split into {microbatches} micro-batches"
            )
        return x.reshape((microbatches, x.shape[0] // microbatches, *x.shape[1:]))

    return jax.tree.map(split, batch)


def tree_all_finite(tree: PyTree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_update_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    microbatches: int = 1,
    trainable: PyTree | None = None,
) -> Callable[[TrainState, dict, Array], tuple[TrainState, dict]]:
    """Returns a pure `(state, batch, rng) -> (state, metrics)` update.

    Args:
      loss_fn: `(params, microbatch, rng, totals) -> (loss, metrics)`; must
        normalise by `totals` (whole-batch counts), not by micro-batch counts.
      optimizer: optax transformation.
      microbatches: gradient-accumulation steps; the batch's leading axis must
        divide by it. Gradients are summed over micro-batches with `lax.scan`.
      trainable: a pytree of bools matching the params (e.g.
        `models.lora.trainable_mask`): only those leaves are differentiated
        and updated, the others are constants of the loss (no gradient is
        ever formed for them) and pass through unchanged. The state must have
        been created with the same mask. None: every leaf.

    Returns:
      The update function `(state, batch, rng, scalars=None)` (not jitted: the
      caller jits it with donation and shardings); `scalars` ({name: float})
      reach the loss inside `totals`. Metrics: `loss`, `grad_norm`, `skipped` (1.0 when this update
      was skipped), `skipped_total`, and the loss's metrics averaged over
      micro-batches.
    """

    def update(
        state: TrainState, batch: dict, rng: Array, scalars: dict | None = None
    ) -> tuple[TrainState, dict]:
        if trainable is None:
            variables = state.params
            grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        else:
            variables = select(state.params, trainable)
            grad_fn = jax.value_and_grad(
                lambda v, *args: loss_fn(combine(trainable, state.params, v), *args),
                has_aux=True,
            )
        totals = batch_totals(batch)
        for name, value in (scalars or {}).items():
            if name in totals:
                raise ValueError(f"step scalar {name!r} clashes with a batch total")
            totals[name] = jnp.asarray(value, jnp.float32)
        micro = split_microbatches(batch, microbatches)
        rngs = jax.random.split(rng, microbatches)

        def accumulate(grads, inputs):
            mb, key = inputs
            (loss, metrics), g = grad_fn(variables, mb, key, totals)
            grads = jax.tree.map(lambda a, b: a + b.astype(a.dtype), grads, g)
            return grads, (loss, metrics)

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), variables)
        grads, (losses, metrics) = jax.lax.scan(accumulate, zeros, (micro, rngs))
        loss = jnp.sum(losses)
        metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & tree_all_finite(grads)
        # Zero non-finite gradients before the optimizer so its state stays
        # finite; the result is discarded anyway when `finite` is False.
        safe_grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
        safe_grads = jax.tree.map(lambda g, p: g.astype(p.dtype), safe_grads, variables)
        updates, new_opt_state = optimizer.update(safe_grads, state.opt_state, variables)
        new_params = optax.apply_updates(variables, updates)
        if trainable is not None:
            new_params = combine(trainable, state.params, new_params)

        def keep_if_finite(new, old):
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        skipped = (~finite).astype(jnp.int32)
        new_state = state.replace(
            step=state.step + 1,
            params=keep_if_finite(new_params, state.params),
            opt_state=keep_if_finite(new_opt_state, state.opt_state),
            skipped=state.skipped + skipped,
            consecutive_skips=jnp.where(finite, 0, state.consecutive_skips + 1),
        )
        metrics = dict(metrics)
        metrics.update(
            loss=loss,
            grad_norm=grad_norm,
            skipped=skipped.astype(jnp.float32),
            skipped_total=new_state.skipped.astype(jnp.float32),
        )
        return new_state, metrics

    return update
