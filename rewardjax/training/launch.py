"""Dispatch from a config to its trainer; the body of `experiments/train.py`."""

from __future__ import annotations

from typing import Any

import ml_collections

from rewardjax.training import offline, quickstart, rl

TRAINERS = {"rl": rl.train, "offline": offline.train, "quickstart": quickstart.train}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Runs the trainer named by `config.trainer` in `workdir`.

    The trainer writes `workdir/config.json` once the config has passed its
    checks (and, on a resume, the checkpoint's compatibility check).
    """
    if config.trainer not in TRAINERS:
        raise ValueError(f"config.trainer={config.trainer!r}; known: {', '.join(sorted(TRAINERS))}")
    return TRAINERS[config.trainer](config, workdir)
