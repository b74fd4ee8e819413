"""objective.kind = "rm": a Bradley-Terry outcome reward model on preference pairs.

A scalar head "reward" read at the last token; loss `bt_pairwise` (margin:
`objective.margin_scale` × the pair's margin; centering: `center_coef`) or
`bt_tie_aware` (tie pairs pulled together). Ensembles are K `rm` runs
(different seeds: different initialisations), combined at use time
(`rewardjax.scoring.RewardModelEnsemble`, `orm_ensemble_reward`).

  python -m experiments.train --config configs/rm_arithmetic.py --workdir /tmp/rm
"""

from __future__ import annotations

import jax.numpy as jnp

from rewardjax import models
from rewardjax.evaluation.scorers import evaluate_orm
from rewardjax.registry import REWARD_MODEL_LOSSES, bind
from rewardjax.scoring.models import OutcomeRewardModel, last_token_scores
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.kinds.data import ArrayBatches, encode_train_pairs, load_records

__all__ = ["RewardModelObjective", "make_rm_loss"]

_PAIR_RM_LOSSES = ("bt_pairwise", "bt_tie_aware")


def make_rm_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict, margin_scale: float):
    """Pairwise reward-model loss over one concatenated [chosen; rejected] forward."""
    if loss_name not in _PAIR_RM_LOSSES:
        raise ValueError(
            f"objective.loss={loss_name!r}: the rm kind trains on preference pairs with "
            f"{', '.join(_PAIR_RM_LOSSES)}"
        )
    loss_fn = bind(
        REWARD_MODEL_LOSSES.get(loss_name),
        loss_kwargs,
        what="objective.kwargs",
        reserved={"margin": "objective.margin_scale", "total_weight": "the batch"},
    )

    def rm_loss(params, mb, rng, totals):
        del rng
        b = mb["chosen_tokens"].shape[0]
        scores = last_token_scores(
            model,
            params["policy"],
            jnp.concatenate([mb["prompt_tokens"]] * 2),
            jnp.concatenate([mb["prompt_mask"]] * 2),
            jnp.concatenate([mb["chosen_tokens"], mb["rejected_tokens"]]),
            jnp.concatenate([mb["chosen_mask"], mb["rejected_mask"]]),
            head="reward",
        )
        chosen, rejected = scores[:b], scores[b:]
        margin = margin_scale * mb["margin"] if margin_scale else None
        kwargs = dict(margin=margin, total_weight=totals["num_rows"])
        if loss_name == "bt_tie_aware":
            loss, metrics = loss_fn(chosen, rejected, mb["tie"], **kwargs)
        else:
            loss, metrics = loss_fn(chosen, rejected, **kwargs)
        return loss, dict(metrics)

    return rm_loss


class RewardModelObjective:
    """objective.kind = "rm": a Bradley-Terry ORM on preference pairs.

    Config keys read: objective.{loss, kwargs, margin_scale}, data.*, eval.num_records.
    """

    kind = "rm"
    heads = ("lm", "reward")

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        arrays = encode_train_pairs(
            c, task, tokenizer=tokenizer, model_config=model_config, params=params
        )
        self.data = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        self.loss = make_rm_loss(
            model,
            loss_name=c.objective.loss,
            loss_kwargs=dict(c.objective.kwargs),
            margin_scale=c.objective.margin_scale,
        )
        self.test_pairs = load_records(
            task,
            "preference_pairs",
            path=c.data.test_path,
            num=c.data.num_test,
            split="test",
            seed=c.seed,
        )
        self.test_ranked, self.test_solutions = [], []
        if not c.data.test_path:  # procedural: best-of-4 lists and graded solutions too
            num = c.eval.num_records
            self.test_ranked = load_records(
                task, "ranked_lists", num=num, split="test", seed=c.seed, error_rate=0.5
            )
            self.test_solutions = load_records(
                task, "step_labels", num=num, split="test", seed=c.seed, error_rate=0.5
            )

    def next_batch(self):
        batch = next(self.data)
        return batch, {
            "data/tokens": float(batch["chosen_mask"].sum() + batch["rejected_mask"].sum())
        }

    def evaluate(self, params, rng) -> dict[str, float]:
        del rng
        scorer = OutcomeRewardModel(
            self.model_config, params["policy"], self.tokenizer, batch_size=self.config.batch_size
        )
        return evaluate_orm(
            scorer, pairs=self.test_pairs, ranked=self.test_ranked, solutions=self.test_solutions
        )
