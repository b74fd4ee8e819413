"""Training curves of finished runs: metrics.jsonl rows, one metric's curve, a mean over seeds.

  rows = read_rows("/tmp/sweep/seed=0")            # [{"step": 10, "eval/pass@1": 0.4, ...}, ...]
  steps, values = curve(rows, "eval/pass@1")       # the steps that logged it
  steps, values = mean_curve([curve(r, key) for r in seeds_rows])  # None: no run logged it

experiments.sweep and experiments.reproduce read and draw runs through these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

Curve = tuple[list[int], list[float]]


def read_rows(run_dir: str) -> list[dict]:
    """The run's metrics.jsonl rows, in order ([] when it has none yet)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def curve(rows: Sequence[dict], key: str) -> Curve:
    """(steps, values) of the rows that logged `key` as a number."""
    points = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), int | float)]
    return [p[0] for p in points], [p[1] for p in points]


def mean_curve(runs: Sequence[Curve]) -> Curve | None:
    """The mean over runs, cut to the shortest non-empty run; None when every run is empty.

    Runs of one group log at the same steps; the steps are the first run's.
    """
    runs = [r for r in runs if r[1]]
    if not runs:
        return None
    length = min(len(r[1]) for r in runs)
    values = np.mean([r[1][:length] for r in runs], axis=0)
    return list(runs[0][0][:length]), [float(v) for v in values]
