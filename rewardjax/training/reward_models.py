"""Reward models in the offline loop, and their evaluation.

Three objective kinds (`config.objective.kind`):

  rm            Bradley-Terry outcome reward model on preference pairs: a scalar
                head "reward" read at the last token; loss `bt_pairwise`
                (margin: `objective.margin_scale` × the pair's margin; centering:
                `center_coef`) or `bt_tie_aware` (tie pairs pulled together).
  prm           process reward model on step-labelled solutions: head "prm" read
                at each step's last token (its separator, the EOS for the last
                step); loss `prm_step_bce` on hard or soft labels.
  implicit_prm  a causal LM trained with the outcome cross-entropy
                BCE(σ(β·Σ_t log π_ψ/π_ref), correct); its token rewards are β·log π_ψ/π_ref.

Ensembles are K `rm` runs (different seeds: different initialisations),
combined at use time (`RewardModelEnsemble`, `orm_ensemble_reward`).

Evaluation (`evaluate_orm`, `evaluate_prm`, `selection_curves`) runs a scorer
of `rewardjax.training.model_rewards` over held-out data and computes the
metrics of `rewardjax.evaluation`: pairwise accuracy, best-of-4 accuracy,
ProcessBench F1, step AUROC, calibration, score-correctness correlation, and
accuracy against N for the selection rules of `rewardjax.inference`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import evaluation, inference, models
from rewardjax.data.formats import PreferencePair, RankedList, StepLabels
from rewardjax.objectives.reward_modeling import implicit_prm_loss, prm_step_bce_loss
from rewardjax.registry import REWARD_MODEL_LOSSES
from rewardjax.tokenizers import Tokenizer
from rewardjax.training import forward
from rewardjax.training.model_rewards import (
    ImplicitProcessRewardModel,
    OutcomeRewardModel,
    ProcessRewardModel,
    last_token_scores,
    prm_step_logits,
    split_steps,
)
from rewardjax.training.offline_data import (
    ArrayBatches,
    encode_step_records,
    encode_train_pairs,
    first_error_label,
    load_records,
    outcome_label,
)
from rewardjax.training.preference import load_reference

Array = jax.Array

__all__ = [
    "ImplicitPRMObjective",
    "ProcessRewardObjective",
    "RewardModelObjective",
    "evaluate_orm",
    "evaluate_prm",
    "selection_curves",
]

_PAIR_RM_LOSSES = ("bt_pairwise", "bt_tie_aware")


def _sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# --------------------------------------------------------------------------- evaluation


def evaluate_orm(
    scorer,
    *,
    pairs: Sequence[PreferencePair] = (),
    ranked: Sequence[RankedList] = (),
    solutions: Sequence[StepLabels] = (),
) -> dict[str, float]:
    """Outcome-RM metrics on held-out data (each block only when its data is given).

    Args:
      scorer: anything with `scores(prompts, completions) -> [B]` (an ORM, an
        ensemble, an implicit PRM).
      pairs: preference pairs → `pairwise_accuracy` (strict: ties count wrong).
      ranked: lists of 4 responses with one best → `best_of_4_accuracy`
        (lists whose top score is shared are skipped).
      solutions: step-labelled solutions with outcomes → `brier`, `ece`
        (of σ(r) against correctness), `pearson`, `spearman`, `auroc`.

    Returns:
      A flat dict of floats.
    """
    out: dict[str, float] = {}
    if pairs:
        prompts = [p.prompt for p in pairs]
        chosen = scorer.scores(prompts, [p.chosen for p in pairs])
        rejected = scorer.scores(prompts, [p.rejected for p in pairs])
        out["pairwise_accuracy"] = evaluation.rm_pairwise_accuracy(chosen, rejected)
        out["num_pairs"] = float(len(pairs))
    if ranked:
        chosen_scores, rejected_scores = [], []
        for r in ranked:
            order = r.order()
            values = r.scores if r.scores is not None else [-i for i in range(len(order))]
            if r.scores is not None and values[order[0]] == values[order[1]]:
                continue
            scores = scorer.scores([r.prompt] * len(r.responses), r.responses)
            chosen_scores.append(scores[order[0]])
            rejected_scores.append([scores[k] for k in order[1:4]])
        if chosen_scores:
            out["best_of_4_accuracy"] = evaluation.best_of_4_accuracy(
                chosen_scores, rejected_scores
            )
            out["num_ranked"] = float(len(chosen_scores))
    if solutions:
        prompts = [s.prompt for s in solutions]
        scores = scorer.scores(prompts, ["\n".join(s.steps) for s in solutions])
        correct = np.array([outcome_label(s) >= 0.5 for s in solutions], np.float64)
        out.update(evaluation.calibration(_sigmoid(scores), correct))
        out.update(evaluation.score_correctness_correlation(scores, correct))
    return out


def evaluate_prm(
    scorer,
    solutions: Sequence[StepLabels],
    *,
    threshold: float = 0.5,
    aggregation: str = "min",
    validation: Sequence[StepLabels] = (),
) -> dict[str, float]:
    """PRM metrics on held-out step-labelled solutions.

    Args:
      scorer: anything with `step_scores(prompts, steps)` returning B arrays of
        step-correctness probabilities (a PRM, an implicit PRM).
      solutions: step-labelled solutions (first error from `first_error` or the labels).
      threshold: τ of the ProcessBench first-error prediction.
      aggregation: `prm_aggregate` rule of the response score correlated with
        the outcome.
      validation: other labelled solutions on which τ is tuned
        (`processbench_best_threshold`); the tuned τ is then applied to
        `solutions`, so the reported F1 never sees its own labels.

    Returns:
      processbench_f1, acc_erroneous, acc_correct (at τ); with validation data,
      tuned_threshold and tuned_processbench_f1; step_auroc; step_brier,
      step_ece; outcome_auroc and outcome_pearson of the aggregated score.
    """
    if not solutions:
        raise ValueError("evaluate_prm: no solutions to score")
    prompts = [s.prompt for s in solutions]
    scores = scorer.step_scores(prompts, [s.steps for s in solutions])
    first_errors = np.array([first_error_label(s) for s in solutions])
    out: dict[str, float] = {}
    pb = evaluation.processbench_f1(scores, first_errors, threshold=threshold)
    out["processbench_f1"] = pb["f1"]
    out["acc_erroneous"] = pb["acc_erroneous"]
    out["acc_correct"] = pb["acc_correct"]
    if validation:
        val_scores = scorer.step_scores(
            [s.prompt for s in validation], [s.steps for s in validation]
        )
        val_labels = np.array([first_error_label(s) for s in validation])
        tuned, _ = evaluation.processbench_best_threshold(val_scores, val_labels)
        out["tuned_threshold"] = tuned
        out["tuned_processbench_f1"] = evaluation.processbench_f1(
            scores, first_errors, threshold=tuned
        )["f1"]
    labels = [np.asarray(s.labels, np.float64) for s in solutions]
    hard = [(lab >= 0.5).astype(np.float64) for lab in labels]
    out["step_auroc"] = evaluation.step_auroc(scores, hard)
    cal = evaluation.calibration(np.concatenate(scores), np.concatenate(labels))
    out["step_brier"], out["step_ece"] = cal["brier"], cal["ece"]
    response = inference.prm_aggregate(scores, method=aggregation)
    correct = np.array([outcome_label(s) >= 0.5 for s in solutions], np.float64)
    corr = evaluation.score_correctness_correlation(response, correct)
    out["outcome_auroc"], out["outcome_pearson"] = corr["auroc"], corr["pearson"]
    return out


def selection_curves(
    problems: Sequence[Any],
    candidates,
    *,
    orm=None,
    prm=None,
    ns: Sequence[int] | None = None,
    num_subsets: int = 100,
    seed: int = 0,
    separator: str = "\n",
) -> dict[str, dict[int, float]]:
    """Test-time selection: accuracy against N for every rule, next to pass@N.

    Scores n graded candidates per held-out problem with the ORM (σ(r) as
    vote weights) and the PRM (step probabilities, every `prm_aggregate`
    rule), and runs `inference.accuracy_vs_n` (majority vote, best-of-N,
    weighted votes).

    Args:
      problems: the P held-out problems.
      candidates: `rollout.EvalResult` of sampling n completions per problem
        (`sample_and_grade`): texts, answers and correctness.
      orm: optional scorer with `scores(prompts, completions)`.
      prm: optional scorer with `step_scores(prompts, steps)`.
      ns, num_subsets, seed: as `accuracy_vs_n` (default N = 1, 2, 4, ..., ≤ 64).
      separator: step separator of the PRM.

    Returns:
      {rule: {N: accuracy}}, "pass_at_n" first.
    """
    n = candidates.correct.shape[1]
    prompts = [p.prompt for p in problems for _ in range(n)]
    texts = [t for row in candidates.texts for t in row]
    orm_scores = prm_scores = None
    if orm is not None:
        orm_scores = _sigmoid(orm.scores(prompts, texts)).reshape(len(problems), n)
    if prm is not None:
        flat = prm.step_scores(prompts, [split_steps(t, separator) for t in texts])
        prm_scores = [flat[i * n : (i + 1) * n] for i in range(len(problems))]
    return inference.accuracy_vs_n(
        candidates.answers,
        candidates.correct,
        orm_scores=orm_scores,
        prm_step_scores=prm_scores,
        ns=ns,
        num_subsets=num_subsets,
        seed=seed,
    )


# --------------------------------------------------------------------------- rm


def make_rm_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict, margin_scale: float):
    """Pairwise reward-model loss over one concatenated [chosen; rejected] forward."""
    if loss_name not in _PAIR_RM_LOSSES:
        raise ValueError(
            f"objective.loss={loss_name!r}: the rm kind trains on preference pairs with "
            f"{', '.join(_PAIR_RM_LOSSES)}"
        )
    loss_fn = REWARD_MODEL_LOSSES.get(loss_name)

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
        kwargs = dict(loss_kwargs, margin=margin, total_weight=totals["num_rows"])
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
        self.test_pairs = load_records(c.data, task, "preference_pairs", split="test", seed=c.seed)
        self.test_ranked, self.test_solutions = [], []
        if not c.data.test_path:  # procedural: best-of-4 lists and graded solutions too
            num = c.eval.num_records
            self.test_ranked = task_records(
                task, "ranked_lists", num=num, seed=c.seed, error_rate=0.5
            )
            self.test_solutions = task_records(
                task, "step_labels", num=num, seed=c.seed, error_rate=0.5
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


def task_records(
    task, fmt: str, *, num: int, seed: int, error_rate: float = 0.5, split: str = "test"
) -> list:
    """Records generated from a procedural task (held-out test split by default)."""
    from rewardjax.data import generators

    if fmt == "ranked_lists":
        return generators.ranked_lists(task, num=num, num_responses=4, split=split, seed=seed)
    if fmt == "step_labels":
        return generators.step_labels(task, num=num, error_rate=error_rate, split=split, seed=seed)
    if fmt == "preference_pairs":
        return generators.preference_pairs(task, num=num, split=split, seed=seed)
    raise ValueError(f"unknown record format {fmt!r}")


# --------------------------------------------------------------------------- prm


def make_prm_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict):
    """Per-step BCE at step-end tokens; micro-batch losses sum to the full-batch mean."""
    if loss_name != "prm_step_bce":
        raise ValueError(f"objective.loss={loss_name!r}: the prm kind trains with prm_step_bce")
    last_step_only = bool(loss_kwargs.get("last_step_only"))

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
        loss, metrics = prm_step_bce_loss(logits, mb["step_labels"], mb["step_mask"], **loss_kwargs)
        # prm_step_bce averages over this micro-batch's steps; rescale to the batch's.
        counted = (
            jnp.sum(mb["step_mask"] > 0, -1) > 0 if last_step_only else jnp.sum(mb["step_mask"])
        )
        return loss * jnp.sum(counted) / mb["counted_steps"][0], dict(metrics)

    return prm_loss


class _StepData:
    def _steps(self, config, tokenizer, task, split: str):
        c = config
        records = load_records(c.data, task, "step_labels", split=split, seed=c.seed)
        path = c.data.train_path if split == "train" else c.data.test_path
        arrays = encode_step_records(
            tokenizer,
            records,
            prompt_length=c.data.prompt_length,
            completion_length=c.data.completion_length,
            max_steps=c.data.max_steps,
            separator=c.data.step_separator,
            source=path or f"generated {split} step labels",
        )
        return records, arrays


def _validation(config, task) -> list:
    """Solutions for tuning τ: generated from the train split with another seed (procedural data only)."""
    if config.data.test_path or not config.eval.num_records:
        return []
    return task_records(
        task,
        "step_labels",
        num=config.eval.num_records,
        seed=config.seed + 1,
        error_rate=config.data.error_rate,
        split="train",
    )


class ProcessRewardObjective(_StepData):
    """objective.kind = "prm": per-step BCE at the step-separator positions.

    Config keys read: objective.{loss, kwargs}, data.{..., max_steps,
    step_separator, error_rate}, eval.threshold.
    """

    kind = "prm"
    heads = ("lm", "prm")

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        _, arrays = self._steps(c, tokenizer, task, "train")
        self.data = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        self.test_solutions, _ = self._steps(c, tokenizer, task, "test")
        self.validation = _validation(c, task)
        self.last_step_only = bool(dict(c.objective.kwargs).get("last_step_only"))
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


# --------------------------------------------------------------------------- implicit prm


def make_implicit_prm_loss(
    model: models.Decoder, *, loss_name: str, loss_kwargs: dict, logprob_impl: str
):
    """Outcome cross-entropy on β·Σ_t log π_ψ/π_ref (reference log-probs in the batch)."""
    if loss_name != "implicit_prm":
        raise ValueError(
            f"objective.loss={loss_name!r}: the implicit_prm kind trains with implicit_prm"
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
        )
        value, metrics = implicit_prm_loss(
            logp,
            jax.lax.stop_gradient(mb["ref_logprobs"]),
            mb["mask"],
            mb["outcome"],
            total_weight=totals["num_rows"],
            **loss_kwargs,
        )
        return value, dict(metrics)

    return loss


def _token_logprobs(model, params, prompt_tokens, prompt_mask, tokens, mask, *, impl):
    logp, _ = forward.completion_logprobs(
        model, params, prompt_tokens, prompt_mask, tokens, mask, impl=impl
    )
    return logp * mask


class ImplicitPRMObjective(_StepData):
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
        _, arrays = self._steps(c, tokenizer, task, "train")
        if c.reference.precompute:
            arrays["ref_logprobs"] = self._reference(arrays)
        self.data = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        self.test_solutions, _ = self._steps(c, tokenizer, task, "test")
        self.validation = _validation(c, task)
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
        out["outcome_brier"] = evaluation.calibration(_sigmoid(logits), correct)["brier"]
        return out
