"""The RL loss and the advantage step: config → registered estimator and policy loss.

  loss = make_rl_loss(policy, critic, loss_name="ppo_clip", ...)   # (params, mb, rng, totals)
  advantages, returns = compute_advantages("grpo_group_norm", {}, rewards=r, mask=m, group_size=8)
"""

from __future__ import annotations

import inspect

import jax

from rewardjax import models, ops
from rewardjax.models import forward
from rewardjax.objectives import aggregation as agg
from rewardjax.objectives.advantages import broadcast_to_tokens, outcome_to_token_rewards
from rewardjax.objectives.kl import kl_in_loss
from rewardjax.objectives.policy import value_loss_clipped
from rewardjax.registry import ADVANTAGES, POLICY_LOSSES

Array = jax.Array


def _accepted(fn, kwargs: dict) -> dict:
    """The subset of kwargs that fn's signature accepts."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def compute_advantages(
    name: str,
    kwargs: dict,
    *,
    rewards: Array,  # [B]
    mask: Array,  # [B, T]
    group_size: int,
    token_rewards: Array | None = None,  # [B, T]
    values: Array | None = None,  # [B, T]
    baseline_rewards: Array | None = None,  # [B]
) -> tuple[Array, Array | None]:
    """Runs the registered estimator `name`; returns (advantages [B, T], returns [B, T] or None).

    Estimators declare what they need by argument name (rewards, mask,
    group_size, token_rewards, values, baseline_rewards); the rest is left out.
    """
    fn = ADVANTAGES.get(name)
    if token_rewards is None:
        token_rewards = outcome_to_token_rewards(rewards, mask)
    available = dict(
        rewards=rewards,
        mask=mask,
        group_size=group_size,
        token_rewards=token_rewards,
        values=values,
        baseline_rewards=baseline_rewards,
    )
    params = inspect.signature(fn).parameters
    missing = [
        k
        for k, p in params.items()
        if p.default is inspect.Parameter.empty and available.get(k) is None and k not in kwargs
    ]
    if missing:
        raise ValueError(
            f"advantage estimator {name!r} needs {missing}, which this run does not provide"
        )
    call = {k: v for k, v in available.items() if k in params and v is not None}
    out = fn(**call, **kwargs)
    returns = None
    if isinstance(out, tuple):
        out, returns = out
    if out.ndim == 1:
        out = broadcast_to_tokens(out, mask)
    return out, returns


def make_rl_loss(
    policy: models.Decoder,
    critic: models.Decoder | None,
    *,
    loss_name: str,
    loss_kwargs: dict,
    aggregation: str,
    temperature: float,
    kl_placement: str,
    kl_estimator: str,
    entropy_coef: float,
    value_coef: float,
    value_clip: float | None,
    logprob_impl: str = "auto",
    fused_kl_coef: float | None = None,
):
    """The RL loss `(params, minibatch, rng, totals) -> (loss, metrics)`.

    params: {"policy": ..., ["critic": ...]}. Minibatch keys: prompt_tokens,
    prompt_mask, tokens, mask, old_logprobs, rollout_logprobs, advantages, and
    when used ref_logprobs + kl_coef (KL in the loss), old_values + returns
    (critic).

    `ppo_clip` with a fixed KL coefficient (`fused_kl_coef` not None) and the
    k3 estimator runs as one fused pass (`rewardjax.ops.policy_loss`: ratio,
    clipping, k3 KL, entropy bonus and aggregation, forward and backward);
    every other combination composes the registered objectives.
    """
    loss_fn = POLICY_LOSSES.get(loss_name)
    fused = (
        fused_kl_coef is not None
        and loss_name == "ppo_clip"
        and loss_kwargs.get("tis_mode", "off") == "off"
        and (kl_placement != "loss" or kl_estimator in ("kl_k3", "k3"))
    )

    def rl_loss(params, mb, rng, totals):
        del rng
        logp, entropy = forward.completion_logprobs(
            policy,
            params["policy"],
            mb["prompt_tokens"],
            mb["prompt_mask"],
            mb["tokens"],
            mb["mask"],
            temperature=temperature,
            impl=logprob_impl,
        )
        mask = mb["mask"]
        counts = dict(num_tokens=totals["num_tokens"], num_seqs=totals["num_seqs"])
        if fused:
            loss, metrics = ops.policy_loss(
                logp,
                mb["old_logprobs"],
                mb["advantages"],
                mask,
                ref_logprobs=mb["ref_logprobs"] if kl_placement == "loss" else None,
                entropy=entropy,
                clip_low=loss_kwargs.get("clip_low", 0.2),
                clip_high=loss_kwargs.get("clip_high", 0.2),
                dual_clip=loss_kwargs.get("dual_clip"),
                kl_coef=fused_kl_coef if kl_placement == "loss" else 0.0,
                entropy_coef=entropy_coef,
                aggregation=aggregation,
                loss_scale_factor=loss_kwargs.get("loss_scale_factor"),
                impl=logprob_impl,
                **counts,
            )
            metrics = dict(metrics)
            metrics["entropy"] = agg.masked_mean(jax.lax.stop_gradient(entropy), mask)
            return loss + _critic_loss(params, mb, mask, counts, metrics), metrics
        call = dict(
            aggregation=aggregation,
            rollout_logprobs=mb["rollout_logprobs"],
            **counts,
            **loss_kwargs,
        )
        loss, metrics = loss_fn(
            logp, mb["old_logprobs"], mb["advantages"], mask, **_accepted(loss_fn, call)
        )
        metrics = dict(metrics)
        entropy_mean = agg.masked_mean(jax.lax.stop_gradient(entropy), mask)
        metrics["entropy"] = entropy_mean
        if entropy_coef:
            loss = loss - entropy_coef * agg.aggregate(
                entropy, mask, aggregation=aggregation, **counts
            )
        if kl_placement == "loss":
            kl_loss, kl_metrics = kl_in_loss(
                logp,
                mb["ref_logprobs"],
                mask,
                kl_coef=mb["kl_coef"][0],
                estimator=kl_estimator,
                aggregation=aggregation,
                **counts,
            )
            loss = loss + kl_loss
            metrics.update(kl_metrics)
        return loss + _critic_loss(params, mb, mask, counts, metrics), metrics

    def _critic_loss(params, mb, mask, counts, metrics):
        if critic is None:
            return 0.0
        values = forward.completion_values(
            critic,
            params["critic"],
            mb["prompt_tokens"],
            mb["prompt_mask"],
            mb["tokens"],
            mb["mask"],
        )
        vloss, vmetrics = value_loss_clipped(
            values,
            mb["old_values"],
            mb["returns"],
            mask,
            clip=value_clip,
            aggregation="token_mean",
            **counts,
        )
        metrics.update({f"critic/{k}": v for k, v in vmetrics.items()})
        metrics["critic/value_loss"] = vloss
        return value_coef * vloss

    return rl_loss
