"""Fault injection for resume tests: kill this process at a chosen point.

Set `REWARDJAX_FAULT` to a comma-separated list of `point=step` items, e.g.
`after_step=5,during_save=9`. At that point of that step the process sends
itself SIGKILL, exactly like a preempted or OOM-killed job (no cleanup, no
flush, an asynchronous save left half-written).
"""

from __future__ import annotations

import os
import signal

ENV = "REWARDJAX_FAULT"
POINTS = ("after_step", "during_save", "before_save")


def _parse() -> dict[str, int]:
    spec = os.environ.get(ENV, "")
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, _, step = item.partition("=")
        if point not in POINTS or not step.isdigit():
            raise ValueError(f"{ENV}={spec!r}: items are point=step with point in {POINTS}")
        out[point] = int(step)
    return out


def maybe_kill(point: str, step: int) -> None:
    """SIGKILLs this process if `REWARDJAX_FAULT` names (point, step)."""
    if os.environ.get(ENV) and _parse().get(point) == step:
        os.kill(os.getpid(), signal.SIGKILL)
