"""Orbax checkpoints that let a killed run resume and produce the same numbers.

A checkpoint holds two items:
  state: every array the run needs (TrainState, PRNG key data, ...), saved
    asynchronously and restored with the shardings of an abstract template;
  meta: JSON with the data-iterator state, the resolved config, a model
    signature checked on resume, and the format version.

The last `keep` checkpoints are kept, plus the best `keep_best` by a metric.
If the newest checkpoint cannot be read (killed mid-save, corrupted), the
previous one is used, with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

FORMAT_VERSION = 1


class ResumeError(ValueError):
    """The workdir holds a checkpoint this run cannot continue from."""


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
        meta = dict(meta, format_version=FORMAT_VERSION)
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
        """(step, state, meta) of the newest readable checkpoint, or None when there is none.

        Args:
          template: a pytree of arrays or `jax.ShapeDtypeStruct`s (with
            shardings) shaped like the saved state.
          check: called with the meta before any array is read; raises (e.g.
            `ResumeError`) when the run cannot continue from this checkpoint.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in reversed(self.steps()):
            try:
                meta = self._manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )["meta"]
            except Exception as e:  # a partial or corrupted step directory
                self._skip(step, e)
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
            except Exception as e:
                self._skip(step, e)
                continue
            return step, restored["state"], meta
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

    def _skip(self, step: int, error: Exception) -> None:
        logging.warning(
            "checkpoint step %d in %s is unreadable (%s: %s); trying the previous one",
            step,
            self.directory,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
        )
        # Kept on disk for inspection; replaced if the resumed run saves this step again.
        self._unreadable.add(step)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def check_compatible(saved: dict, current: dict, *, what: str = "model") -> None:
    """Raises ResumeError naming the first field whose saved and current values differ."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise ResumeError(
                f"cannot resume: {what}.{key} was {saved.get(key)!r} in the checkpoint and is "
                f"{current.get(key)!r} now; use a new workdir or restore the old config"
            )
