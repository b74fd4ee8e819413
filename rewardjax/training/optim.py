"""Optimizer from config: optax chain of gradient clipping, a schedule and AdamW."""

from __future__ import annotations

import optax

SCHEDULES = ("constant", "cosine", "linear")


def learning_rate_schedule(
    *,
    learning_rate: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int = 0,
    end_factor: float = 0.0,
) -> optax.Schedule:
    """Linear warmup to `learning_rate`, then constant, cosine or linear decay.

    Args:
      learning_rate: peak learning rate.
      schedule: "constant", "cosine" or "linear".
      warmup_steps: steps of linear warmup from 0.
      total_steps: last step of the decay (needed by cosine / linear).
      end_factor: final learning rate as a fraction of the peak.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule={schedule!r}; known: {', '.join(SCHEDULES)}")
    if schedule != "constant" and total_steps <= warmup_steps:
        raise ValueError(
            f"optim.total_steps={total_steps} must exceed warmup_steps={warmup_steps} "
            f"for the {schedule} schedule"
        )
    if schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(
            learning_rate, total_steps - warmup_steps, alpha=end_factor
        )
    else:
        main = optax.linear_schedule(
            learning_rate, learning_rate * end_factor, total_steps - warmup_steps
        )
    if warmup_steps <= 0:
        return main
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def make_optimizer(
    *,
    learning_rate: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int = 0,
    end_factor: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
) -> optax.GradientTransformation:
    """clip_by_global_norm → AdamW with the schedule above (max_grad_norm <= 0: no clipping)."""
    lr = learning_rate_schedule(
        learning_rate=learning_rate,
        schedule=schedule,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        end_factor=end_factor,
    )
    parts = []
    if max_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(max_grad_norm))
    parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    return optax.chain(*parts)
