"""Run outputs: the resolved config, metrics.jsonl, TensorBoard events, samples, a progress bar.

Only process 0 writes (multi-host runs call the same code on every host).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the resolved config to workdir/config.json (process 0 only)."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
    os.replace(path + ".tmp", path)


def _scalar(v: Any) -> float | None:
    try:
        x = float(np.asarray(v))
    except (TypeError, ValueError):
        return None
    return x


class MetricWriter:
    """Writes scalars to `metrics.jsonl` and TensorBoard, samples to `samples.jsonl`.

    Args:
      workdir: run directory (created).
      enabled: write anything at all (default: only on process 0).
      tensorboard: also write TensorBoard event files.
    """

    def __init__(self, workdir: str, *, enabled: bool | None = None, tensorboard: bool = True):
        self.workdir = workdir
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._open()
        self._tensorboard = tensorboard

    def _open(self) -> None:
        self._metrics = open(os.path.join(self.workdir, "metrics.jsonl"), "a", buffering=1)
        self._samples = open(os.path.join(self.workdir, "samples.jsonl"), "a", buffering=1)

    def _rewrite(self, keep) -> None:
        """Rewrites both logs with the lines `keep(line)` accepts, each by write + rename."""
        self._metrics.close()
        self._samples.close()
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = os.path.join(self.workdir, name)
            with open(path) as f:
                kept = [line for line in f if keep(line)]
            with open(path + ".tmp", "w") as f:
                f.writelines(kept)
            os.replace(path + ".tmp", path)
        self._open()

    def truncate_after(self, step: int) -> None:
        """Drops metrics and samples logged after `step` (a resumed run replays them).

        Call it only after the checkpoint of `step` was restored.
        """
        if not self.enabled:
            return

        def keep(line: str) -> bool:
            try:
                return json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):
                return False  # a line cut by the kill

        self._rewrite(keep)

    def logged_steps(self) -> int:
        """How many metric rows the log holds (0 for a new workdir)."""
        if not self.enabled:
            return 0
        self._metrics.flush()
        with open(os.path.join(self.workdir, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.strip())

    def set_aside(self) -> str:
        """Renames the logs of a run that left no checkpoint to `*.unresumed-N`; returns the suffix.

        A run killed before its first checkpoint starts again from step 0; its
        rows are kept beside the new log instead of being deleted.
        """
        if not self.enabled:
            return ""
        self._metrics.close()
        self._samples.close()
        n = 1
        while os.path.exists(os.path.join(self.workdir, f"metrics.jsonl.unresumed-{n}")):
            n += 1
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = os.path.join(self.workdir, name)
            os.replace(path, f"{path}.unresumed-{n}")
        self._open()
        return f"unresumed-{n}"

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> dict[str, float]:
        """Logs scalars (device arrays are fetched here); returns them as floats."""
        values = {k: _scalar(v) for k, v in scalars.items()}
        values = {k: v for k, v in values.items() if v is not None}
        if self.enabled:
            record = {"step": int(step), "time": time.time()}
            record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
            self._metrics.write(json.dumps(record) + "\n")
            if self._tensorboard and self._tb is None:
                # Opened at the first write: a run that stops in its checks adds no file.
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(self.workdir, "tensorboard"))
            if self._tb is not None:
                for k, v in values.items():
                    self._tb.add_scalar(k.replace("@", "_at_"), v, int(step))
        return values

    def write_samples(self, step: int, samples: list[Mapping[str, Any]]) -> None:
        if self.enabled:
            for s in samples:
                self._samples.write(json.dumps({"step": int(step), **s}, default=str) + "\n")

    def write_json(self, name: str, obj: Any) -> None:
        if self.enabled:
            path = os.path.join(self.workdir, name)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(obj, f, indent=2, default=str)
            os.replace(tmp, path)

    def flush(self) -> None:
        if self.enabled and self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._metrics.close()
            self._samples.close()
            if self._tb is not None:
                self._tb.close()


class Progress:
    """A tqdm bar showing steps/s, tokens/s and chosen metrics (process 0 only)."""

    def __init__(
        self, total: int, *, initial: int = 0, desc: str = "train", enabled: bool | None = None
    ):
        enabled = jax.process_index() == 0 if enabled is None else enabled
        self._bar = None
        self._tokens = 0.0
        self._start = time.time()
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def update(self, n: int = 1, *, tokens: float = 0.0, **postfix: float) -> None:
        self._tokens += tokens
        if self._bar is None:
            return
        self._bar.update(n)
        elapsed = max(time.time() - self._start, 1e-9)
        shown = {"tok/s": f"{self._tokens / elapsed:.0f}"}
        shown.update({k: f"{v:.3g}" for k, v in postfix.items() if v is not None})
        self._bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
