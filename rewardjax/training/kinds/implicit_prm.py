"""objective.kind = "implicit_prm": a causal LM trained on outcomes, read as a PRM.

Loss: the outcome cross-entropy BCE(σ(β·Σ_t log π_ψ/π_ref), correct); its
token rewards are β·log π_ψ/π_ref ("Free Process Rewards without Process
Labels"). The reference is loaded as in the dpo kind (`reference.path`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from rewardjax import models
from rewardjax.data.steps import outcome_label
from rewardjax.evaluation.rm_metrics import calibration
from rewardjax.evaluation.scorers import evaluate_prm
from rewardjax.models import forward
from rewardjax.objectives.reward_modeling import implicit_prm_loss
from rewardjax.registry import bind
from rewardjax.scoring.models import ImplicitProcessRewardModel
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.kinds.data import ArrayBatches, step_records, validation_step_labels
from rewardjax.training.kinds.dpo import load_reference

__all__ = ["ImplicitPRMObjective", "make_implicit_prm_loss"]


def _sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def make_implicit_prm_loss(
    model: models.Decoder,
    *,
    loss_name: str,
    loss_kwargs: dict,
    logprob_impl: str,
    group_size: int = 1,
):
    """Outcome cross-entropy on β·Σ_t log π_ψ/π_ref (reference log-probs in the batch).

    Batch: prompt_tokens, prompt_mask [B, L]; tokens, mask, ref_logprobs [B, T];
    outcome [B]. group_size > 1: rows come in groups sharing a prompt, run once
    per group (`forward.completion_hidden`; PRIME online, on RL rollouts).
    """
    if loss_name != "implicit_prm":
        raise ValueError(
            f"objective.loss={loss_name!r}: the implicit_prm kind trains with implicit_prm"
        )

    loss_fn = bind(
        implicit_prm_loss,
        loss_kwargs,
        what="objective.kwargs",
        reserved={"total_weight": "the batch"},
    )

    def loss(params, mb, rng, totals):
        del rng
        logp, _ = forward.completion_logprobs(
            model,
            params["policy"],
            mb["prompt_tokens"],
            mb["prompt_mask"],
            mb["tokens"],
            mb["mask"],
            impl=logprob_impl,
            group_size=group_size,
        )
        value, metrics = loss_fn(
            logp,
            jax.lax.stop_gradient(mb["ref_logprobs"]),
            mb["mask"],
            mb["outcome"],
            total_weight=totals["num_rows"],
        )
        return value, dict(metrics)

    return loss


def _token_logprobs(model, params, prompt_tokens, prompt_mask, tokens, mask, *, impl):
    logp, _ = forward.completion_logprobs(
        model, params, prompt_tokens, prompt_mask, tokens, mask, impl=impl
    )
    return logp * mask


class ImplicitPRMObjective:
    """objective.kind = "implicit_prm": a causal LM trained on outcomes, read as a PRM.

    Config keys read: objective.{loss, kwargs.beta}, reference.{path,
    precompute}, data.*, eval.threshold.
    """

    kind = "implicit_prm"
    heads = ("lm",)

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        self.ref_config, self.ref_params = load_reference(
            c.reference, policy_config=model_config, policy_params=params
        )
        self._ref_fn = jax.jit(
            functools.partial(_token_logprobs, models.build(self.ref_config), impl=c.logprob_impl)
        )
        _, arrays = step_records(c, tokenizer, task, "train")
        if c.reference.precompute:
            arrays["ref_logprobs"] = self._reference(arrays)
        self.data = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        self.test_solutions, _ = step_records(c, tokenizer, task, "test")
        self.validation = validation_step_labels(c, task)
        self.beta = float(c.objective.kwargs["beta"])
        self.loss = make_implicit_prm_loss(
            model,
            loss_name=c.objective.loss,
            loss_kwargs=dict(c.objective.kwargs),
            logprob_impl=c.logprob_impl,
        )

    def _reference(self, arrays) -> np.ndarray:
        size = self.config.batch_size
        n = arrays["tokens"].shape[0]
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
        out = []
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n
            out.append(np.asarray(self._ref_fn(self.ref_params, *[arrays[k][idx] for k in keys])))
        return np.concatenate(out)[:n]

    def next_batch(self):
        batch = next(self.data)
        if not self.config.reference.precompute:
            batch["ref_logprobs"] = self._reference(batch)
        return batch, {"data/tokens": float(batch["mask"].sum())}

    def scorer(self, params) -> ImplicitProcessRewardModel:
        return ImplicitProcessRewardModel(
            self.model_config,
            params["policy"],
            self.ref_params,
            self.tokenizer,
            beta=self.beta,
            batch_size=self.config.batch_size,
            separator=self.config.data.step_separator,
            ref_config=self.ref_config,
        )

    def evaluate(self, params, rng) -> dict[str, float]:
        del rng
        scorer = self.scorer(params)
        solutions = self.test_solutions
        out = evaluate_prm(
            scorer,
            solutions,
            threshold=self.config.eval.threshold,
            aggregation="last",
            validation=self.validation,
        )
        logits = scorer.scores(
            [s.prompt for s in solutions], ["\n".join(s.steps) for s in solutions]
        )
        correct = np.array([outcome_label(s) >= 0.5 for s in solutions], np.float64)
        out["outcome_accuracy"] = float(np.mean((logits > 0) == (correct > 0)))
        out["outcome_brier"] = calibration(_sigmoid(logits), correct)["brier"]
        return out
