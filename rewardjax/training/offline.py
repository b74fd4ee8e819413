"""One offline loop for SFT, DPO-family, reward-model and PRM training.

data iterator → batch of arrays → registered loss → the shared update step,
with the same checkpoints, metrics and progress bar as the RL loop. What
differs between the kinds (`objective.kind`: sft, dpo, rm, prm, implicit_prm)
is only how a batch is built, which loss reads it and how the result is
evaluated: the classes of `rewardjax.training.kinds` (`KINDS`).

  python -m experiments.train --config configs/sft_arithmetic.py --workdir /tmp/sft
  python -m experiments.train --config configs/rm_arithmetic.py --workdir /tmp/rm
"""

from __future__ import annotations

from typing import Any

import ml_collections

import rewardjax.objectives  # noqa: F401  (registers the losses read by name)
from rewardjax import models
from rewardjax.registry import TASKS
from rewardjax.training.kinds import KINDS
from rewardjax.training.loop import Trainer


class OfflineTrainer(Trainer):
    """SFT, DPO-family, reward-model, PRM and implicit-PRM training: one loop, by `objective.kind`."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        c = config
        if c.objective.kind not in KINDS:
            raise ValueError(
                f"objective.kind={c.objective.kind!r}; this trainer runs: {', '.join(KINDS)}"
            )
        objective_cls = KINDS[c.objective.kind]
        super().__init__(config, workdir)
        self.desc = c.objective.kind
        self.model_config, params, logical = self.load_model(objective_cls.heads)
        self.model = models.build(self.model_config, objective_cls.heads)
        self.task = TASKS.get(c.task.name)(**c.task.kwargs)
        self.objective = objective_cls(
            c,
            tokenizer=self.tokenizer,
            model_config=self.model_config,
            model=self.model,
            params=params,
            task=self.task,
        )
        self.data = self.objective.data
        self.create_state({"policy": params}, {"policy": logical})
        self.compile_step(self.objective.loss, rows=c.batch_size)
        self.restore()

    def signature(self) -> dict:
        signature = super().signature()
        if self.objective.kind != "sft":
            signature["objective"] = self.objective.kind
        return signature

    def meta(self) -> dict:
        return dict(data=self.data.get_state())

    def load_meta(self, meta: dict) -> None:
        self.data.set_state(meta["data"])

    def train_step(self) -> dict[str, Any]:
        # An objective that samples its batch from the current policy (RAFT) says so.
        if getattr(self.objective, "next_batch_reads_policy", False):
            batch, metrics = self.objective.next_batch(self.state.params["policy"])
        else:
            batch, metrics = self.objective.next_batch()
        update_metrics = self.update(batch)
        metrics.update({f"train/{k}": v for k, v in update_metrics.items()})
        self.step += 1
        return metrics

    def evaluate(self) -> dict[str, float]:
        """The objective's held-out evaluation (pass@k for policies, RM/PRM metrics for scorers)."""
        return self.objective.evaluate(self.state.params, self.next_key())

    def progress_fields(self, metrics) -> dict[str, float | None]:
        return dict(tokens=metrics["data/tokens"], loss=float(metrics["train/loss"]))


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    return OfflineTrainer(config, workdir).run()
