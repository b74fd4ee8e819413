"""Orbax checkpoints that let a killed run resume and produce the same numbers.

A checkpoint holds two items:
  state: every array the run needs (the TrainState), saved asynchronously and
    restored with the shardings of an abstract template;
  meta: JSON with the data-iterator state, the PRNG key, the resolved config,
    a model signature checked on resume, the format version, and a checksum
    of every array.

The last `keep` checkpoints are kept, plus the best `keep_best` by a metric.

What a resume guarantees:
  - the newest checkpoint whose files read back and whose arrays match the
    checksums written at save is restored; each one skipped on the way is
    reported in one line (step, what failed, expected vs found);
  - when the workdir holds checkpoints but none of them can be restored,
    `restore_latest` raises `ResumeError` and nothing in the workdir is
    changed: starting over takes a new workdir;
  - nothing here deletes a checkpoint except the preservation policy after a
    new save, and an unreadable step that a resumed run (restored from an
    earlier step) saves again.
"""

from __future__ import annotations

import contextlib
import gc
import logging as std_logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

FORMAT_VERSION = 2

# Odd multipliers of the two position-weighted sums in `checksums`: flipping
# any bits of one element changes both sums (an odd number times a nonzero
# change is nonzero modulo 2^32).
_MULTIPLIERS = (np.uint32(2654435761), np.uint32(2246822519))


class ResumeError(ValueError):
    """The workdir holds a checkpoint this run cannot continue from."""


class CorruptCheckpointError(ValueError):
    """A checkpoint's arrays differ from the checksums written when it was saved."""


def _bits(x: jax.Array) -> jax.Array:
    """The raw bits of x as a flat uint32 vector (2-byte types widened, 8-byte split)."""
    x = jnp.ravel(x)
    width = x.dtype.itemsize
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if width == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if width == 2:
        return jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    if width == 1:
        return jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
    return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))


@jax.jit
def _tree_checksums(tree: Any) -> Any:
    def one(x):
        bits = _bits(x)
        index = jnp.arange(bits.shape[0], dtype=jnp.uint32)
        return jnp.stack([jnp.sum(bits * (index * m + np.uint32(1))) for m in _MULTIPLIERS])

    return jax.tree.map(one, tree)


def checksums(tree: Any) -> dict[str, list[int]]:
    """{array path: [two 32-bit position-weighted sums of its bits]}.

    Computed on the devices where the arrays live (a sharded array is never
    gathered; the sums come back replicated), so it costs one pass over the
    state per save.
    """
    sums = _tree_checksums(tree)
    flat = jax.tree_util.tree_flatten_with_path(sums)[0]
    return {jax.tree_util.keystr(path): [int(v) for v in np.asarray(s)] for path, s in flat}


def verify_checksums(tree: Any, expected: dict[str, list[int]], *, where: str) -> None:
    """Raises CorruptCheckpointError naming the first array whose checksum differs."""
    found = checksums(tree)
    for path in sorted(set(found) | set(expected)):
        if found.get(path) != expected.get(path):
            raise CorruptCheckpointError(
                f"{where}: array {path} has checksum {found.get(path)}, "
                f"{expected.get(path)} was written at save"
            )


class Checkpointer:
    """Saves and restores (state pytree, JSON meta) pairs under `workdir/checkpoints`.

    Args:
      workdir: run directory.
      keep: newest checkpoints kept.
      keep_best: best checkpoints kept in addition, by `best_metric`.
      best_metric: key of the metrics dict passed to `save` (None: no best).
      best_mode: "max" or "min".
      async_save: write in a background thread while training continues.
    """

    def __init__(
        self,
        workdir: str,
        *,
        keep: int = 3,
        keep_best: int = 1,
        best_metric: str | None = None,
        best_mode: str = "max",
        async_save: bool = True,
    ):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        policies: list = [pp.LatestN(n=keep)]
        if best_metric is not None and keep_best > 0:
            policies.append(
                pp.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
            # Half-written saves of a killed run are removed at start-up.
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._unreadable: set[int] = set()

    def save(self, step: int, state: Any, meta: dict, *, metrics: dict | None = None) -> None:
        """Starts saving (asynchronously unless disabled); returns at once.

        Saving a step that is already saved (a periodic save that coincides with
        the final one) does nothing.
        """
        if int(step) in self._unreadable:
            self._manager.delete(int(step))
            self._unreadable.discard(int(step))
        elif int(step) in self._manager.all_steps():
            return
        meta = dict(meta, format_version=FORMAT_VERSION, checksums=checksums(state))
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            metrics=metrics,
            force=True,
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore_latest(
        self, template: Any, *, check: Callable[[dict], None] | None = None
    ) -> tuple[int, Any, dict] | None:
        """(step, state, meta) of the newest intact checkpoint, or None when there is none.

        Args:
          template: a pytree of arrays or `jax.ShapeDtypeStruct`s (with
            shardings) shaped like the saved state.
          check: called with the meta before any array is read; raises (e.g.
            `ResumeError`) when the run cannot continue from this checkpoint.

        Raises:
          ResumeError: the directory holds checkpoints and none of them is
            intact (each one's problem is listed); nothing was changed.
        """
        with _quiet_failed_reads():
            return self._restore_latest(template, check)

    def _restore_latest(self, template: Any, check: Callable[[dict], None] | None):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        steps = self.steps()
        problems: list[str] = []
        for step in reversed(steps):
            try:
                meta = self._manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )["meta"]
            except Exception as e:  # a partial or corrupted step directory
                problems.append(self._skip(step, e))
                continue
            version = meta.get("format_version")
            if version != FORMAT_VERSION:
                raise ResumeError(
                    f"{self.directory}: checkpoint format version {version}, this rewardjax "
                    f"writes version {FORMAT_VERSION}; use a new workdir"
                )
            if check is not None:
                check(meta)
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
                )
                verify_checksums(
                    restored["state"], meta["checksums"], where=f"checkpoint step {step}"
                )
            except Exception as e:
                problems.append(self._skip(step, e))
                continue
            return step, restored["state"], meta
        if steps:
            raise ResumeError(
                f"{self.directory} holds checkpoints {steps} and none of them can be "
                "restored:\n  " + "\n  ".join(problems) + "\nNothing in the workdir was "
                "changed; to start over, use a new workdir"
            )
        return None

    def restore_step(self, step: int, template: Any) -> tuple[Any, dict]:
        """(state, meta) of checkpoint `step`; raises when it cannot be read."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["meta"]

    def _skip(self, step: int, error: Exception) -> str:
        problem = f"step {step}: {describe_error(error)}"
        logging.warning("checkpoint %s in %s; trying the previous one", problem, self.directory)
        # Kept on disk for inspection; replaced if the resumed run saves this step again.
        self._unreadable.add(step)
        return problem

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


@contextlib.contextmanager
def _quiet_failed_reads():
    """Silences the echoes of a failed array read (asyncio's unretrieved-task and
    unraisable-coroutine reports, each a TensorStore spec dump); the failure
    itself is reported once, by `describe_error`."""
    asyncio_logger = std_logging.getLogger("asyncio")
    level = asyncio_logger.level
    hook = sys.unraisablehook
    asyncio_logger.setLevel(std_logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = hook
        asyncio_logger.setLevel(level)


def describe_error(error: Exception) -> str:
    """One short line for an error from Orbax or TensorStore: its type, the file, the gist."""
    if isinstance(error, CorruptCheckpointError):
        return str(error).split(": ", 1)[-1]
    text = " ".join(str(error).split())
    files = re.findall(r"(?:file://)?(/[^\s'\"\]\[,;]+)", text)
    arrays = re.findall(r"'path': '([^'/]+)/?'", text)
    # The first sentence, without TensorStore's spec dumps and source locations.
    gist = re.split(r"\.? See full TensorStore|\s\[(?:source|tensorstore_spec)|\s*=== ", text)[0]
    gist = gist[:160]
    where = []
    if arrays:
        where.append(f"array {arrays[0]}")
    if files and files[0] not in gist:
        where.append(f"file {files[0]}")
    where = ", ".join(where)
    name = "" if type(error).__name__ == "Exception" else f"{type(error).__name__}: "
    return f"{name}{gist}" + (f" ({where})" if where else "")


def check_compatible(saved: dict, current: dict, *, what: str = "model") -> None:
    """Raises ResumeError naming the first field whose saved and current values differ."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise ResumeError(
                f"cannot resume: {what}.{key} was {saved.get(key)!r} in the checkpoint and is "
                f"{current.get(key)!r} now; use a new workdir or restore the old config"
            )
