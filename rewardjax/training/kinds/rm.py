"""objective.kind = "rm": an outcome reward model on preference pairs and/or ratings.

A head "reward" read at the last token. On preference pairs, loss
`bt_pairwise` (margin: `objective.margin_scale` × the pair's margin;
centering: `center_coef`) or `bt_tie_aware` (tie pairs pulled together). On
rated responses (JSONL format "ratings", `data.ratings_path`, or generated
from the task), `regression_rm` fits one output per attribute of
`data.attributes` (K of them: `model.overrides.reward_outputs = K`), and
`bt_plus_regression` adds that regression, × `objective.kwargs.regression_coef`,
to the Bradley-Terry loss on pairs; its pair reward is output 0, the first
attribute. Ensembles are several `rm` runs (different seeds: different
initialisations), combined at use time (`rewardjax.scoring.RewardModelEnsemble`,
`orm_ensemble_reward`).

  python -m experiments.train --config configs/rm_arithmetic.py --workdir /tmp/rm
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import models
from rewardjax.evaluation.scorers import evaluate_orm
from rewardjax.models.transformer import ScalarHead
from rewardjax.registry import REWARD_MODEL_LOSSES, bind
from rewardjax.scoring.models import OutcomeRewardModel
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.kinds.data import (
    ArrayBatches,
    JointBatches,
    encode_pairs,
    encode_train_pairs,
    load_records,
    ratings_of_split,
    reader_of,
)

Array = jax.Array

__all__ = ["RATING_RM_LOSSES", "RewardModelObjective", "attribute_scores", "make_rm_loss"]

_PAIR_RM_LOSSES = ("bt_pairwise", "bt_tie_aware")
# Losses on rated responses (regression_rm) or on pairs plus rated responses.
RATING_RM_LOSSES = ("regression_rm", "bt_plus_regression")
# The prefix of the rated responses' keys in a bt_plus_regression batch.
_RATED = "rated_"


def attribute_scores(
    model: models.Decoder,
    params,
    prompt_tokens: Array,  # [B, L]
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
) -> Array:
    """The reward head at each row's last real token: [B, K], K = config.reward_outputs."""
    full_tokens = jnp.concatenate([prompt_tokens, tokens], axis=1)
    full_mask = jnp.concatenate(
        [prompt_mask.astype(jnp.int32), (mask > 0).astype(jnp.int32)], axis=1
    )
    hidden = model.apply({"params": params}, full_tokens, full_mask, method="hidden_states")
    k = model.config.reward_outputs
    values = ScalarHead(model.config, num_outputs=k).apply(
        {"params": params["reward_head"]}, hidden
    )
    scores = models.gather_positions(values, models.last_token_positions(full_mask))
    return scores.reshape(scores.shape[0], k)


def _concat(*parts):
    return jnp.concatenate(parts, axis=0)


def make_rm_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict, margin_scale: float):
    """Reward-model loss `(params, minibatch, rng, totals) -> (loss, metrics)`, one forward.

    Minibatch keys: pairs (bt_pairwise, bt_tie_aware): prompt_tokens,
    prompt_mask [B, L], chosen_/rejected_ tokens and mask [B, T], margin, tie
    [B]; ratings (regression_rm): prompt_tokens, prompt_mask, tokens, mask,
    ratings, rating_mask [B, K]; bt_plus_regression: the pair keys plus the
    ratings keys prefixed "rated_". The pair reward is the head's output 0.
    """
    known = (*_PAIR_RM_LOSSES, *RATING_RM_LOSSES)
    if loss_name not in known:
        raise ValueError(
            f"objective.loss={loss_name!r}: the rm kind trains on preference pairs with "
            f"{', '.join(_PAIR_RM_LOSSES)}; on ratings with regression_rm; on pairs and "
            "ratings with bt_plus_regression"
        )
    kwargs = dict(loss_kwargs)
    if "attribute_weights" in kwargs:
        kwargs["attribute_weights"] = jnp.asarray(kwargs["attribute_weights"], jnp.float32)
    loss_fn = bind(
        REWARD_MODEL_LOSSES.get(loss_name),
        kwargs,
        what="objective.kwargs",
        reserved={
            "margin": "objective.margin_scale",
            "total_weight": "the batch",
            "weights": "the batch",
            "target_mask": "the ratings (absent attributes)",
        },
    )
    scores_fn = functools.partial(attribute_scores, model)

    def rm_loss(params, mb, rng, totals):
        del rng
        p = params["policy"]
        if loss_name == "regression_rm":
            preds = scores_fn(p, mb["prompt_tokens"], mb["prompt_mask"], mb["tokens"], mb["mask"])
            loss, metrics = loss_fn(
                preds,
                mb["ratings"],
                target_mask=mb["rating_mask"],
                total_weight=totals["num_rows"],
            )
            metrics = dict(metrics, prediction_mean=jax.lax.stop_gradient(jnp.mean(preds)))
            return loss, metrics
        b = mb["chosen_tokens"].shape[0]
        # One forward over [chosen; rejected] (; rated responses for bt_plus_regression).
        prompts, prompt_mask = [mb["prompt_tokens"]] * 2, [mb["prompt_mask"]] * 2
        tokens = [mb["chosen_tokens"], mb["rejected_tokens"]]
        mask = [mb["chosen_mask"], mb["rejected_mask"]]
        if loss_name == "bt_plus_regression":
            prompts.append(mb[_RATED + "prompt_tokens"])
            prompt_mask.append(mb[_RATED + "prompt_mask"])
            tokens.append(mb[_RATED + "tokens"])
            mask.append(mb[_RATED + "mask"])
        scores = scores_fn(
            p, _concat(*prompts), _concat(*prompt_mask), _concat(*tokens), _concat(*mask)
        )
        chosen, rejected = scores[:b, 0], scores[b : 2 * b, 0]
        margin = margin_scale * mb["margin"] if margin_scale else None
        if loss_name == "bt_plus_regression":
            loss, metrics = loss_fn(
                chosen,
                rejected,
                scores[2 * b :],
                mb[_RATED + "ratings"],
                margin=margin,
                target_mask=mb[_RATED + "rating_mask"],
            )
            # Both terms are means over this micro-batch's b rows; × b / B makes
            # the sum over micro-batches the mean over the whole batch.
            return loss * (b / totals["num_rows"]), dict(metrics)
        kwargs = dict(margin=margin, total_weight=totals["num_rows"])
        if loss_name == "bt_tie_aware":
            loss, metrics = loss_fn(chosen, rejected, mb["tie"], **kwargs)
        else:
            loss, metrics = loss_fn(chosen, rejected, **kwargs)
        return loss, dict(metrics)

    return rm_loss


class RewardModelObjective:
    """objective.kind = "rm": a Bradley-Terry and/or rating-regression ORM.

    Config keys read: objective.{loss, kwargs, margin_scale}, data.* (with
    attributes, ratings_path, ratings_test_path for the rating losses),
    model.overrides.reward_outputs, export_hf, batch_size, seed, eval.num_records.
    """

    kind = "rm"
    heads = ("lm", "reward")

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        self.loss_name = c.objective.loss
        self.rated = self.loss_name in RATING_RM_LOSSES
        self._check_outputs()
        self.loss = make_rm_loss(
            model,
            loss_name=c.objective.loss,
            loss_kwargs=dict(c.objective.kwargs),
            margin_scale=c.objective.margin_scale,
        )
        self._scores_fn = jax.jit(functools.partial(attribute_scores, model))
        parts = {}
        if self.loss_name != "regression_rm":
            arrays = encode_train_pairs(
                c, task, tokenizer=tokenizer, model_config=model_config, params=params
            )
            parts[""] = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        if self.rated:
            ratings = ratings_of_split(c, task, tokenizer, "train")
            prefix = "" if self.loss_name == "regression_rm" else _RATED
            parts[prefix] = ArrayBatches(ratings, batch_size=c.batch_size, seed=c.seed + 1)
            self.test_ratings = ratings_of_split(c, task, tokenizer, "test")
        self.data = parts[""] if len(parts) == 1 else JointBatches(parts)
        self.test_pairs = []
        if self.loss_name != "regression_rm":
            self.test_pairs = load_records(
                task,
                "preference_pairs",
                path=c.data.test_path,
                num=c.data.num_test,
                split="test",
                seed=c.seed,
                **reader_of(c.data, "test"),
            )
        if self.rated and self.test_pairs:
            self.test_pair_arrays = encode_pairs(
                tokenizer,
                self.test_pairs,
                prompt_length=c.data.prompt_length,
                completion_length=c.data.completion_length,
                source=c.data.test_path or "generated test pairs",
            )
        self.test_ranked, self.test_solutions = [], []
        if not c.data.test_path and not self.rated:  # best-of-4 lists and graded solutions too
            num = c.eval.num_records
            self.test_ranked = load_records(
                task, "ranked_lists", num=num, split="test", seed=c.seed, error_rate=0.5
            )
            self.test_solutions = load_records(
                task, "step_labels", num=num, split="test", seed=c.seed, error_rate=0.5
            )

    def _check_outputs(self) -> None:
        c, k = self.config, self.model_config.reward_outputs
        attributes = list(c.data.attributes)
        if self.rated:
            if not attributes or len(set(attributes)) != len(attributes):
                raise ValueError(
                    f"config data.attributes={attributes!r}: {self.loss_name} needs distinct "
                    "attribute names, one per output of the reward head"
                )
            if len(attributes) != k:
                raise ValueError(
                    f"config data.attributes names {len(attributes)} attributes but the reward "
                    f"head has {k} outputs: set model.overrides.reward_outputs={len(attributes)}"
                )
        elif k != 1:
            raise ValueError(
                f"config objective.loss={self.loss_name!r} trains a scalar reward: "
                f"model.overrides.reward_outputs={k} must be 1"
            )
        if k > 1 and c.export_hf:
            raise ValueError(
                f"config export_hf=True: HF exports carry a scalar reward head, not "
                f"reward_outputs={k}; set export_hf=False (the Orbax checkpoints keep it)"
            )

    def next_batch(self):
        batch = next(self.data)
        # Completion tokens of every side (pairs and rated responses).
        tokens = sum(
            float(v.sum())
            for k, v in batch.items()
            if k.endswith("mask") and not k.endswith(("prompt_mask", "rating_mask"))
        )
        return batch, {"data/tokens": tokens}

    def _predict(self, params, arrays: dict[str, np.ndarray], side: str = "") -> np.ndarray:
        """Head outputs [N, K] of the rows of `arrays`, batch_size rows per call."""
        size = self.config.batch_size
        tokens = arrays[f"{side}tokens"]
        n = tokens.shape[0]
        out = []
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n  # the last chunk wraps around
            out.append(
                np.asarray(
                    self._scores_fn(
                        params,
                        arrays["prompt_tokens"][idx],
                        arrays["prompt_mask"][idx],
                        tokens[idx],
                        arrays[f"{side}mask"][idx],
                    )
                )
            )
        return np.concatenate(out)[:n]

    def evaluate(self, params, rng) -> dict[str, float]:
        del rng
        if self.rated:
            return self._evaluate_ratings(params["policy"])
        scorer = OutcomeRewardModel(
            self.model_config, params["policy"], self.tokenizer, batch_size=self.config.batch_size
        )
        return evaluate_orm(
            scorer, pairs=self.test_pairs, ranked=self.test_ranked, solutions=self.test_solutions
        )

    def _evaluate_ratings(self, params) -> dict[str, float]:
        """Per-attribute MSE and Pearson r on held-out ratings; pair accuracy of output 0."""
        preds = self._predict(params, self.test_ratings)
        ratings, present = self.test_ratings["ratings"], self.test_ratings["rating_mask"] > 0
        out = {}
        for j, name in enumerate(self.config.data.attributes):
            p, r = preds[present[:, j], j], ratings[present[:, j], j]
            out[f"ratings/{name}_mse"] = float(np.mean((p - r) ** 2)) if len(r) else float("nan")
            ok = len(r) > 1 and np.std(p) > 0 and np.std(r) > 0
            out[f"ratings/{name}_pearson"] = float(np.corrcoef(p, r)[0, 1]) if ok else float("nan")
        if self.test_pairs:
            pairs = self.test_pair_arrays
            chosen = self._predict(params, pairs, "chosen_")[:, 0]
            rejected = self._predict(params, pairs, "rejected_")[:, 0]
            out["pairwise_accuracy"] = float(np.mean(chosen > rejected))
        return out
