"""Dispatch from a config to its trainer; the body of `experiments/train.py`."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections


def _trainers():
    from rewardjax.training import offline, quickstart, rl

    return {"rl": rl.train, "offline": offline.train, "quickstart": quickstart.train}


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the resolved config to workdir/config.json (process 0 only)."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
    os.replace(path + ".tmp", path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Runs the trainer named by `config.trainer` in `workdir`."""
    trainers = _trainers()
    if config.trainer not in trainers:
        raise ValueError(f"config.trainer={config.trainer!r}; known: {', '.join(sorted(trainers))}")
    write_config(config, workdir)
    return trainers[config.trainer](config, workdir)
