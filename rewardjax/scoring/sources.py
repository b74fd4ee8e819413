"""Trained reward models as reward sources of the RL loop (`MODEL_REWARDS`).

Chosen in `config.rewards.sources` by key or `name` (see
`rewardjax.training.rl_rewards.RewardComputer`):

  orm_reward            r(x, y) of one ORM (raw score or its sigmoid)
  orm_ensemble_reward   K ORMs aggregated by mean / median / min / mean − λ·std
  prm_reward            PRM step scores aggregated by min / last / prod / mean into
                        one score, or turned into step rewards by a credit rule
                        (sum_form, min_form, clip, delta) placed at step-end tokens
  implicit_prm_reward   the same for an implicit PRM's σ(Q_s) (aggregation) or its
                        step rewards β·Σ_{t ∈ s} q_t (credit)
  pav_progress_reward   PAV's progress α·(V^μ(h_≤s) − V^μ(h_<s)) under a prover policy μ,
                        its values estimated by Monte Carlo rollouts, at step-end tokens
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.data.steps import policy_step_ends, split_steps
from rewardjax.inference.selection import PRM_AGGREGATIONS, prm_aggregate
from rewardjax.labeling.montecarlo import Completer, monte_carlo_values
from rewardjax.objectives.credit import (
    clip_delta_bounded,
    min_form_returns,
    pav_progress,
    returns_to_step_rewards,
    step_to_token,
)
from rewardjax.registry import MODEL_REWARDS
from rewardjax.scoring.models import (
    ImplicitProcessRewardModel,
    OutcomeRewardModel,
    ProcessRewardModel,
    RewardModelEnsemble,
    load_scorer_tokenizer,
)
from rewardjax.tokenizers import Tokenizer

__all__ = [
    "CREDIT_MODES",
    "ModelRewardSource",
    "implicit_prm_reward",
    "orm_ensemble_reward",
    "orm_reward",
    "pav_progress_reward",
    "prm_reward",
]

CREDIT_MODES = ("none", "sum_form", "min_form", "clip", "delta")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


class ModelRewardSource:
    """One model-based reward source of the RL loop.

    `__call__(prompts, completions, *, tokens, lengths, problems)` returns
    (scores [B] or None, token_rewards [B, T] or None, stats). `problems` are
    the rows' task problems (a source that grades rollouts reads them).
    """

    token_level = False

    def __call__(self, prompts, completions, *, tokens=None, lengths=None, problems=None):
        raise NotImplementedError


class _OutcomeSource(ModelRewardSource):
    def __init__(self, scorer, *, transform: str):
        if transform not in ("raw", "sigmoid"):
            raise ValueError(f"transform={transform!r}; known: raw, sigmoid")
        self.scorer, self.transform = scorer, transform

    def __call__(self, prompts, completions, *, tokens=None, lengths=None, problems=None):
        scores = np.asarray(self.scorer.scores(prompts, completions), np.float64)
        if self.transform == "sigmoid":
            scores = _sigmoid(scores)
        return scores, None, {"mean": float(scores.mean())}


@MODEL_REWARDS.register("orm_reward")
def orm_reward(
    *,
    path: str,
    tokenizer: str = "",
    transform: str = "raw",
    batch_size: int = 64,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """Outcome reward r(x, y) of a trained Bradley-Terry ORM.

    Args:
      path: exported ORM directory (head "reward"; another head is an error).
      tokenizer: its tokenizer spec; empty: the policy's.
      transform: "raw" (the BT logit) or "sigmoid" (in (0, 1)).
      batch_size: rows per forward.
      policy_tokenizer: supplied by the reward computer.
    """
    tok = load_scorer_tokenizer(tokenizer or policy_tokenizer, path)
    return _OutcomeSource(
        OutcomeRewardModel.load(path, tokenizer=tok, batch_size=batch_size), transform=transform
    )


@MODEL_REWARDS.register("orm_ensemble_reward")
def orm_ensemble_reward(
    *,
    paths: Sequence[str],
    mode: str = "mean",
    std_coef: float = 1.0,
    tokenizer: str = "",
    transform: str = "raw",
    batch_size: int = 64,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """An ensemble of K ORMs: mean / median / min / mean − λ·std of their scores.

    Source: "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking".

    Args:
      paths: K exported ORM directories.
      mode: aggregation (`rm_ensemble`); std_coef: λ.
      tokenizer, transform, batch_size, policy_tokenizer: as `orm_reward`
        (the transform applies after aggregation).
    """
    if isinstance(paths, str) or not paths:
        raise ValueError(f"orm_ensemble_reward: paths must be a non-empty list, got {paths!r}")
    members = [
        OutcomeRewardModel.load(
            p,
            tokenizer=load_scorer_tokenizer(tokenizer or policy_tokenizer, p),
            batch_size=batch_size,
        )
        for p in paths
    ]
    return _OutcomeSource(
        RewardModelEnsemble(members, mode=mode, std_coef=std_coef), transform=transform
    )


class _ProcessSource(ModelRewardSource):
    def __init__(
        self,
        scorer,
        *,
        aggregation: str,
        credit: str,
        threshold: float | None,
        separator: str,
        max_steps: int,
        policy_tokenizer: Tokenizer | None,
        placement: str = "sparse",
    ):
        if placement not in ("sparse", "spread"):
            raise ValueError(f"placement={placement!r}; known: sparse, spread")
        if credit not in CREDIT_MODES:
            raise ValueError(f"credit={credit!r}; known: {', '.join(CREDIT_MODES)}")
        if credit == "none" and aggregation not in PRM_AGGREGATIONS:
            raise ValueError(f"aggregation={aggregation!r}; known: {', '.join(PRM_AGGREGATIONS)}")
        if credit != "none" and policy_tokenizer is None:
            raise ValueError(
                f"credit={credit!r} places step rewards on policy tokens: needs the policy tokenizer"
            )
        self.scorer, self.aggregation, self.credit = scorer, aggregation, credit
        self.threshold, self.separator, self.max_steps = threshold, separator, max_steps
        self.policy_tokenizer, self.placement = policy_tokenizer, placement
        self.token_level = credit != "none"

    def __call__(self, prompts, completions, *, tokens=None, lengths=None, problems=None):
        steps = [split_steps(c, self.separator)[: self.max_steps] for c in completions]
        if self.credit == "none":
            scores = prm_aggregate(self.scorer.step_scores(prompts, steps), method=self.aggregation)
            return np.asarray(scores, np.float64), None, {"mean": float(np.mean(scores))}
        if tokens is None or lengths is None:
            raise ValueError(f"credit={self.credit!r} needs the completion tokens and lengths")
        rows = self.scorer.step_rewards(prompts, steps)
        s = max(len(r) for r in rows)
        p = np.zeros((len(rows), s), np.float32)
        for i, r in enumerate(rows):
            p[i, : len(r)] = r
        step_end, step_mask = policy_step_ends(
            self.policy_tokenizer, tokens, lengths, [len(r) for r in rows], self.separator, s
        )
        p, sm = jnp.asarray(p), jnp.asarray(step_mask)
        if self.credit == "sum_form":
            step_rewards = p * sm
        elif self.credit == "min_form":
            step_rewards = returns_to_step_rewards(min_form_returns(p, sm), sm)
        else:
            step_rewards = clip_delta_bounded(p, sm, mode=self.credit, threshold=self.threshold)
        token_rewards = _on_tokens(
            step_rewards, step_end, step_mask, lengths, tokens, self.placement
        )
        return None, token_rewards, _step_stats(steps, step_rewards, step_mask, token_rewards)


def _on_tokens(step_rewards, step_end, step_mask, lengths, tokens, placement: str) -> np.ndarray:
    """[B, T] float32: step rewards [B, S] placed on the completion tokens (`step_to_token`)."""
    t = np.asarray(tokens).shape[1]
    mask = (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
    token_rewards = step_to_token(
        jnp.asarray(step_rewards),
        jnp.asarray(step_end),
        jnp.asarray(step_mask),
        jnp.asarray(mask),
        mode=placement,
    )
    return np.asarray(token_rewards, np.float32)


def _step_stats(steps, step_rewards, step_mask, token_rewards) -> dict[str, float]:
    """Reward-hacking signals of a process reward: steps per solution, step length, totals."""
    step_mask = np.asarray(step_mask)
    return {
        "step_reward_mean": float(np.sum(np.asarray(step_rewards)) / max(step_mask.sum(), 1.0)),
        "total_mean": float(token_rewards.sum(axis=1).mean()),
        "steps_per_solution": float(np.mean([len(x) for x in steps])),
        "step_chars_mean": float(np.mean([len(step) for x in steps for step in x] or [0.0])),
    }


@MODEL_REWARDS.register("prm_reward")
def prm_reward(
    *,
    path: str,
    aggregation: str = "min",
    credit: str = "none",
    threshold: float | None = None,
    tokenizer: str = "",
    separator: str = "\n",
    max_steps: int = 64,
    batch_size: int = 64,
    placement: str = "sparse",
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """Process rewards from a trained PRM: one aggregated score, or step rewards on tokens.

      credit = "none":     r = agg_s p_s,  agg ∈ {min, last, prod, mean}
      credit = "sum_form": step reward p_s at each step end (reward-to-go: Σ_{k≥s} p_k)
      credit = "min_form": step rewards whose reward-to-go is min_{k≥s} p_k (PURE)
      credit = "clip":     min(p_s − η, 0);   credit = "delta": p_s − p_{s+1}, p_S

    Token-level credit needs an advantage estimator that reads token rewards
    (e.g. `reinforce_pp`, `gae`, `token_reward_returns`).

    Sources: "Stop Summation: Min-Form Credit Assignment Is All Process Reward
    Model Needs for Reasoning"; "On Designing Effective RL Reward at Training
    Time for LLM Reasoning" (Clip, Delta); "The Lessons of Developing Process
    Reward Models in Mathematical Reasoning" (aggregation).

    Args:
      path: exported PRM directory (head "prm").
      aggregation: response score for credit = "none".
      credit: "none", "sum_form", "min_form", "clip" or "delta".
      threshold: η of clip (None: the batch mean step score).
      tokenizer: the PRM's tokenizer spec; empty: the policy's.
      separator: step separator; max_steps: steps scored per completion.
      batch_size: rows per forward.
      placement: where a step's reward lands (`step_to_token`): "sparse", on its
        last token, or "spread", evenly over its tokens.
      policy_tokenizer: supplied by the reward computer.
    """
    tok = load_scorer_tokenizer(tokenizer or policy_tokenizer, path)
    scorer = ProcessRewardModel.load(
        path, tokenizer=tok, batch_size=batch_size, separator=separator
    )
    return _ProcessSource(
        scorer,
        aggregation=aggregation,
        credit=credit,
        threshold=threshold,
        separator=separator,
        max_steps=max_steps,
        policy_tokenizer=policy_tokenizer,
        placement=placement,
    )


@MODEL_REWARDS.register("implicit_prm_reward")
def implicit_prm_reward(
    *,
    path: str,
    reference: str,
    beta: float = 0.05,
    aggregation: str = "last",
    credit: str = "none",
    threshold: float | None = None,
    tokenizer: str = "",
    separator: str = "\n",
    max_steps: int = 64,
    batch_size: int = 64,
    placement: str = "sparse",
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """Process rewards from an implicit PRM (β·log π_ψ/π_ref), as `prm_reward`.

    With credit = "none" the step scores σ(Q_s) are aggregated ("last" is
    σ(Q) of the whole response); otherwise the step rewards β·Σ_{t ∈ s} q_t go
    through the credit rule and onto the step-end tokens.

    Source: "Free Process Rewards without Process Labels"; "Process
    Reinforcement through Implicit Rewards" (PRIME).

    Args:
      path: exported implicit PRM (a causal LM); reference: π_ref directory.
      beta: β it was trained with.
      aggregation, credit, threshold, tokenizer, separator, max_steps,
      batch_size, placement, policy_tokenizer: as `prm_reward`.
    """
    tok = load_scorer_tokenizer(tokenizer or policy_tokenizer, path)
    scorer = ImplicitProcessRewardModel.load(
        path,
        reference=reference,
        tokenizer=tok,
        beta=beta,
        batch_size=batch_size,
        separator=separator,
    )
    return _ProcessSource(
        scorer,
        aggregation=aggregation,
        credit=credit,
        threshold=threshold,
        separator=separator,
        max_steps=max_steps,
        policy_tokenizer=policy_tokenizer,
        placement=placement,
    )


class _ProgressSource(ModelRewardSource):
    """PAV progress under a prover: Monte Carlo prefix values → α·(V_s − V_{s−1}) on step ends."""

    token_level = True

    def __init__(self, completer, *, task, k, coef, separator, max_steps, placement, seed):
        if task is None:
            raise ValueError("pav_progress_reward grades prover rollouts: needs the run's task")
        if k < 1:
            raise ValueError(f"k={k}: each prefix needs at least one prover rollout")
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps} must be >= 1")
        if placement not in ("sparse", "spread"):
            raise ValueError(f"placement={placement!r}; known: sparse, spread")
        self.completer, self.task, self.k, self.coef = completer, task, k, coef
        self.separator, self.max_steps, self.placement = separator, max_steps, placement
        self._rng = jax.random.key(seed)

    def _grade(self, problem, text: str) -> bool:
        return self.task.grade(problem, text).correct

    def __call__(self, prompts, completions, *, tokens=None, lengths=None, problems=None):
        if tokens is None or lengths is None or problems is None:
            raise ValueError("pav_progress_reward needs the rows' problems, tokens and lengths")
        self._rng, key, prompt_key = jax.random.split(self._rng, 3)
        steps = [split_steps(c, self.separator) for c in completions]
        values = monte_carlo_values(
            self.completer,
            problems,
            steps,
            k=self.k,
            grade=self._grade,
            rng=key,
            separator=self.separator,
            max_prefixes=self.max_steps,
        )
        # V^μ of the prompt alone, once per distinct prompt (a group shares it).
        first: dict = {}
        for prompt, problem in zip(prompts, problems):
            first.setdefault(prompt, problem)
        distinct = list(first)
        rollouts = self.completer.continuations(
            [first[prompt] for prompt in distinct], k=self.k, rng=prompt_key
        )
        prompt_value = {
            prompt: float(np.mean([self._grade(first[prompt], text) for text in texts]))
            for prompt, texts in zip(distinct, rollouts)
        }
        num_steps = [len(v) for v in values.values]
        width = max(num_steps)
        v = np.zeros((len(steps), width), np.float32)
        for i, row in enumerate(values.values):
            v[i, : len(row)] = row
        step_end, step_mask = policy_step_ends(
            self.completer.tokenizer, tokens, lengths, num_steps, self.separator, width
        )
        step_rewards = pav_progress(
            jnp.asarray(v),
            jnp.asarray([prompt_value[p] for p in prompts], jnp.float32),
            jnp.asarray(step_mask),
            coef=self.coef,
        )
        token_rewards = _on_tokens(
            step_rewards, step_end, step_mask, lengths, tokens, self.placement
        )
        stats = _step_stats(steps, step_rewards, step_mask, token_rewards)
        stats.update(
            prover_prompt_value=float(np.mean(list(prompt_value.values()))),
            prover_rollouts=float(values.rollouts + self.k * len(distinct)),
            prover_seconds=values.seconds,
        )
        return None, token_rewards, stats


@MODEL_REWARDS.register("pav_progress_reward")
def pav_progress_reward(
    *,
    prover_path: str,
    coef: float,
    k: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_prefixes: int = 64,
    separator: str = "\n",
    max_steps: int = 16,
    placement: str = "sparse",
    seed: int = 0,
    policy_tokenizer: Tokenizer | None = None,
    task=None,
) -> ModelRewardSource:
    """PAV process rewards: the progress of each step under a prover policy μ.

      V^μ(h) = (1/K)·Σ_k 1[rollout k of μ from prefix h is graded correct]
      reward_s = α·(V^μ(h_≤s) − V^μ(h_<s)),  h_<1 = the prompt alone

    The value of the whole solution is its own grade; Σ_s reward_s =
    α·(outcome − V^μ(prompt)). Added to the outcome reward of the
    `task_correct` source, the effective reward is PAV's Q^π + α·A^μ.

    Args:
      prover_path: the prover μ, an exported causal LM: a different checkpoint
        than the policy being trained (e.g. the SFT start, or a best-of-K prover).
      coef: α.
      k: prover rollouts per prefix.
      temperature, max_new_tokens, batch_prefixes: the prover's sampling.
      separator: the step separator.
      max_steps: steps rewarded per completion (later steps get no reward).
      placement: "sparse" (each step's last token) or "spread" (over its tokens).
      seed: seed of the prover rollouts.
      policy_tokenizer, task: supplied by the reward computer.

    Source: "Rewarding Progress: Scaling Automated Process Verifiers for LLM
    Reasoning" (PAV).
    """
    if policy_tokenizer is None:
        raise ValueError("pav_progress_reward places rewards on policy tokens: needs its tokenizer")
    completer = Completer.load(
        prover_path,
        tokenizer=policy_tokenizer,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_prefixes=batch_prefixes,
    )
    return _ProgressSource(
        completer,
        task=task,
        k=k,
        coef=coef,
        separator=separator,
        max_steps=max_steps,
        placement=placement,
        seed=seed,
    )
