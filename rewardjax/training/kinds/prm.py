"""objective.kind = "prm": a process reward model on step-labelled solutions.

Head "prm" read at each step's last token (its separator, the EOS for the
last step); loss `prm_step_bce` on hard or soft labels.

  python -m experiments.train --config configs/prm_arithmetic.py --workdir /tmp/prm
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rewardjax import models
from rewardjax.evaluation.scorers import evaluate_prm
from rewardjax.objectives.reward_modeling import prm_step_bce_loss
from rewardjax.registry import bind, hyperparameters
from rewardjax.scoring.models import ProcessRewardModel, prm_step_logits
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.kinds.data import ArrayBatches, step_records, validation_step_labels

__all__ = ["ProcessRewardObjective", "make_prm_loss"]


def _last_step_only(loss_kwargs: dict) -> bool:
    """prm_step_bce's `last_step_only`, as set in objective.kwargs or its default."""
    default = hyperparameters(prm_step_bce_loss)["last_step_only"].default
    return bool(loss_kwargs.get("last_step_only", default))


def make_prm_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict):
    """Per-step BCE at step-end tokens; micro-batch losses sum to the full-batch mean."""
    if loss_name != "prm_step_bce":
        raise ValueError(f"objective.loss={loss_name!r}: the prm kind trains with prm_step_bce")
    loss_fn = bind(prm_step_bce_loss, loss_kwargs, what="objective.kwargs")
    last_step_only = _last_step_only(loss_kwargs)

    def prm_loss(params, mb, rng, totals):
        del rng
        logits = prm_step_logits(
            model,
            params["policy"],
            mb["prompt_tokens"],
            mb["prompt_mask"],
            mb["tokens"],
            mb["mask"],
            mb["step_end"],
        )
        loss, metrics = loss_fn(logits, mb["step_labels"], mb["step_mask"])
        # prm_step_bce averages over this micro-batch's steps; rescale to the batch's.
        counted = (
            jnp.sum(mb["step_mask"] > 0, -1) > 0 if last_step_only else jnp.sum(mb["step_mask"])
        )
        return loss * jnp.sum(counted) / mb["counted_steps"][0], dict(metrics)

    return prm_loss


class ProcessRewardObjective:
    """objective.kind = "prm": per-step BCE at the step-separator positions.

    Config keys read: objective.{loss, kwargs}, data.{..., max_steps,
    step_separator, error_rate}, eval.threshold.
    """

    kind = "prm"
    heads = ("lm", "prm")

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        _, arrays = step_records(c, tokenizer, task, "train")
        self.data = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        self.test_solutions, _ = step_records(c, tokenizer, task, "test")
        self.validation = validation_step_labels(c, task)
        self.last_step_only = _last_step_only(dict(c.objective.kwargs))
        self.loss = make_prm_loss(
            model, loss_name=c.objective.loss, loss_kwargs=dict(c.objective.kwargs)
        )

    def next_batch(self):
        batch = next(self.data)
        sm = batch["step_mask"]
        counted = float((sm.sum(-1) > 0).sum() if self.last_step_only else sm.sum())
        batch["counted_steps"] = np.full((sm.shape[0],), max(counted, 1.0), np.float32)
        return batch, {"data/tokens": float(batch["mask"].sum())}

    def evaluate(self, params, rng) -> dict[str, float]:
        del rng
        scorer = ProcessRewardModel(
            self.model_config,
            params["policy"],
            self.tokenizer,
            batch_size=self.config.batch_size,
            separator=self.config.data.step_separator,
        )
        return evaluate_prm(
            scorer,
            self.test_solutions,
            threshold=self.config.eval.threshold,
            validation=self.validation,
        )
