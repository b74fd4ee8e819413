"""The RL loop's reward step: the task's own checker, registered reward functions and reward models.

Config (`config.rewards`):
  sources: {key: {weight, kwargs[, name]}}. The key "task_correct" is the
    task's step-level checker (1.0 for a correct final answer); a key (or
    `name`) of `MODEL_REWARDS` is a trained reward model
    (`rewardjax.scoring.sources`: orm_reward, orm_ensemble_reward,
    prm_reward, implicit_prm_reward; kwargs give its directory and how its
    scores become rewards); any other key names a `rewardjax.rewards`
    function, run by `rewardjax.rewards.RewardFunctionPool` (or set `name` to
    use one function twice under different keys).
    Weights mix the sources, e.g. the verifiable outcome with a PRM:
      {"task_correct": {weight: 1.0}, "prm_reward": {weight: 0.5, kwargs: {path: ..., aggregation: "min"}}}
  fallback: score for samples whose reward function raised, timed out or
    returned a non-finite value (each counted by reason).
  timeout_s: per-sample limit for registered reward functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardjax import scoring  # noqa: F401  (registers MODEL_REWARDS)
from rewardjax.data.tasks.base import Problem
from rewardjax.registry import MODEL_REWARDS


class RewardComputer:
    """Scores completions: r = Σ_k w_k·r_k over the configured sources.

    Returns `(scores [B] float32, info)` with info["correct"] [B] (the task's
    outcome, or the first source's score > 0.5 without a task checker) and
    info["stats"] (per-source means and fallback counts). Process-reward
    sources with a credit rule add info["token_rewards"] [B, T] float32: Σ_k
    w_k·(step rewards placed at the step-end tokens of the policy's own
    completion tokens), to be added to the outcome placed at the last token.
    """

    def __init__(self, rewards_cfg, *, task, tokenizer, max_new_tokens: int | None = None):
        self.task = task
        self.fallback = float(rewards_cfg.fallback)
        self.max_new_tokens = max_new_tokens
        sources = dict(rewards_cfg.sources)
        if not sources:
            raise ValueError("config rewards.sources is empty: nothing to reward")
        self.task_weight = 0.0
        specs = []
        self._models: list[tuple[str, float, Any]] = []
        for key, spec in sources.items():
            spec = dict(spec)
            if key == "task_correct":
                if task is None:
                    raise ValueError("rewards.sources.task_correct needs a task with a checker")
                self.task_weight = float(spec.get("weight", 1.0))
                continue
            if spec.get("name", key) in MODEL_REWARDS:
                self._models.append(
                    (key, float(spec.get("weight", 1.0)), _model_source(key, spec, tokenizer))
                )
                continue
            specs.append(
                dict(
                    name=spec.get("name", key),
                    key=key,
                    weight=float(spec.get("weight", 1.0)),
                    kwargs=dict(spec.get("kwargs", {})),
                    timeout_s=float(rewards_cfg.timeout_s),
                    fallback=self.fallback,
                )
            )
        self._external = None
        if specs:
            from rewardjax.rewards.base import RewardFunctionPool

            self._external = RewardFunctionPool(specs)

    def __call__(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        lengths: np.ndarray,
        truncated: np.ndarray,
        tokens: np.ndarray | None = None,  # [B, T] the policy's completion tokens
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = len(completions)
        scores = np.zeros(n, np.float64)
        stats: dict[str, float] = {}
        correct = np.zeros(n, bool)
        if self.task is not None:
            grades = [self.task.grade(p, c) for p, c in zip(problems, completions)]
            correct = np.array([g.correct for g in grades])
            stats["task_correct"] = float(correct.mean())
            stats["well_formed"] = float(np.mean([g.well_formed for g in grades]))
            scores += self.task_weight * correct
        if self._external is not None:
            fields = []
            for p, length, trunc in zip(problems, lengths, truncated):
                f = dict(p.fields)
                f.setdefault("answer", p.answer)
                f["completion_length"] = int(length)
                f["truncated"] = bool(trunc)
                if self.max_new_tokens is not None:
                    f["max_length"] = self.max_new_tokens
                fields.append(f)
            ext_scores, ext_stats = self._external(
                [p.prompt for p in problems], list(completions), fields
            )
            ext_scores = np.asarray(ext_scores, np.float64)
            ext_scores = np.where(np.isfinite(ext_scores), ext_scores, self.fallback)
            scores += ext_scores
            for k, v in _flatten(ext_stats).items():
                stats[k] = v
            if self.task is None:
                correct = ext_scores > 0.5
        token_rewards = None
        prompts = [p.prompt for p in problems]
        for key, weight, source in self._models:
            model_scores, model_tokens, model_stats = source(
                prompts, list(completions), tokens=tokens, lengths=np.asarray(lengths)
            )
            if model_scores is not None:
                scores += weight * np.asarray(model_scores, np.float64)
                if self.task is None and self._external is None and not correct.any():
                    correct = np.asarray(model_scores) > 0.5
            if model_tokens is not None:
                token_rewards = (
                    weight * model_tokens
                    if token_rewards is None
                    else token_rewards + weight * model_tokens
                )
            stats.update({f"{key}/{k}": v for k, v in model_stats.items()})
        info: dict[str, Any] = {"correct": correct, "stats": stats}
        if token_rewards is not None:
            info["token_rewards"] = token_rewards.astype(np.float32)
        return scores.astype(np.float32), info


def _flatten(stats: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in stats.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "/"))
        else:
            try:
                out[name] = float(v)
            except (TypeError, ValueError):
                continue
    return out


def _model_source(key: str, spec: dict, tokenizer):
    """Builds a `MODEL_REWARDS` source; errors name the config key."""
    name = spec.get("name", key)
    kwargs = dict(spec.get("kwargs", {}))
    try:
        return MODEL_REWARDS.get(name)(**kwargs, policy_tokenizer=tokenizer)
    except TypeError as e:
        raise TypeError(f"config rewards.sources.{key} ({name}): {e}") from None
    except ValueError as e:
        raise type(e)(f"config rewards.sources.{key} ({name}): {e}") from None
