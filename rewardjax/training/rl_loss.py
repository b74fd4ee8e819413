"""The RL loss and the advantage step: config → registered estimator and policy loss.

Everything a config chooses is bound and checked once, at start; β (the KL
coefficient) is the one value that changes between steps, and it reaches the
loss as a scalar input of the update step (`totals["kl_coef"]`, see
`training.step`), never as a compiled constant.

  use_kl = check_kl_config(c.kl.placement, c.kl.coef, c.kl.adaptive)          # start
  loss = make_rl_loss(policy, critic, loss_name="ppo_clip", loss_kwargs={...}, ...)
  estimator = advantage_estimator("grpo_group_norm", {"eps": 1e-6})              # start
  advantages, returns = compute_advantages(estimator, rewards=r, mask=m, group_size=8)
  state, metrics = update_fn(state, batch, rng, {"kl_coef": β})                  # per step
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from rewardjax import models, registry
from rewardjax.models import forward
from rewardjax.objectives.advantages import broadcast_to_tokens, outcome_to_token_rewards
from rewardjax.objectives.aggregation import masked_mean
from rewardjax.objectives.policy import policy_loss_impl, value_loss_clipped
from rewardjax.objectives.reward_modeling import laser_last_token_mse_loss
from rewardjax.registry import ADVANTAGES, POLICY_LOSSES

Array = jax.Array

KL_PLACEMENTS = ("none", "loss", "reward")

# Keywords of a policy loss that make_rl_loss passes itself, and where each comes
# from: setting one in loss.kwargs is an error that names its real config key.
POLICY_LOSS_INPUTS = {
    "aggregation": "loss.aggregation",
    "num_tokens": "the batch totals",
    "num_seqs": "the batch totals",
    "rollout_logprobs": "the rollout",
    "ref_logprobs": "the reference policy (kl.placement='loss')",
    "kl_coef": "kl.coef (a scalar input of each step)",
    "kl_estimator": "kl.estimator",
    "entropy": "the policy forward pass",
    "entropy_coef": "entropy_coef",
}

# Arguments of an advantage estimator that compute_advantages passes itself.
ADVANTAGE_INPUTS = {
    k: "the trainer"
    for k in (
        "rewards",
        "mask",
        "group_size",
        "group_id",
        "valid",
        "token_rewards",
        "values",
        "baseline_rewards",
        "process_rewards",
        "outcome_rewards",
    )
}


def check_kl_config(placement: str, coef: float, adaptive: bool) -> bool:
    """Checks kl.{placement, coef, adaptive} at start; True when the run needs π_ref.

    A KL term exists exactly when `placement != "none"`, and then β = coef > 0
    (the adaptive controller scales β multiplicatively, so it needs a positive
    start too). Anything else is an error rather than a silent no-KL run:
    `kl.coef=0.04` alone would otherwise train without KL, and a placement with
    β = 0 would run the reference model every step for nothing (the β = 0 point
    of a sweep is `placement="none"`).

    Args:
      placement: "none" | "loss" | "reward".
      coef: β, or the adaptive controller's initial β.
      adaptive: whether β follows `adaptive_kl_controller`.

    Returns:
      Whether a reference policy is needed.
    """
    if placement not in KL_PLACEMENTS:
        raise ValueError(f"kl.placement={placement!r}; known: {', '.join(KL_PLACEMENTS)}")
    if coef < 0:
        raise ValueError(f"kl.coef={coef} must be >= 0")
    if placement == "none":
        if coef > 0 or adaptive:
            raise ValueError(
                f"kl.coef={coef} (kl.adaptive={adaptive}) with kl.placement='none' would train "
                "without KL: set kl.placement='loss' (GRPO) or 'reward' (PPO), or kl.coef=0 "
                "and kl.adaptive=False"
            )
        return False
    if coef == 0:
        raise ValueError(
            f"kl.placement={placement!r} with kl.coef=0 adds no KL (an adaptive β starting at 0 "
            "stays 0) but runs the reference model every step: set kl.coef > 0, or "
            "kl.placement='none' for no KL"
        )
    return True


def advantage_estimator(name: str, kwargs: Mapping) -> functools.partial:
    """The registered estimator `name` with `kwargs` bound and checked (call once, at start)."""
    return registry.bind(
        ADVANTAGES.get(name), kwargs, what="advantage.kwargs", reserved=ADVANTAGE_INPUTS
    )


def compute_advantages(
    estimator: Callable,
    *,
    rewards: Array,  # [B]
    mask: Array,  # [B, T]
    group_size: int,
    token_rewards: Array | None = None,  # [B, T]
    values: Array | None = None,  # [B, T]
    baseline_rewards: Array | None = None,  # [B]
    valid: Array | None = None,  # [B] 1.0 = scored
    process_rewards: Array | None = None,  # [B, T] process rewards alone (no outcome)
) -> tuple[Array, Array | None]:
    """Runs a bound estimator; returns (advantages [B, T], returns [B, T] or None).

    Estimators declare what they need by argument name (rewards, mask,
    group_size, token_rewards, values, baseline_rewards, valid, and for
    estimators that weigh the sources apart, process_rewards and
    outcome_rewards = rewards); the rest is left out. Rows with valid = 0 (unscorable) get advantage 0; an estimator
    that takes `valid` also leaves them out of its group statistics, and one
    that does not is an error when some row is unscorable.

    Args:
      estimator: from `advantage_estimator`.
      rewards, mask, group_size, token_rewards, values, baseline_rewards, valid,
        process_rewards: the inputs this run has (None: not available).
    """
    if token_rewards is None:
        token_rewards = outcome_to_token_rewards(rewards, mask)
    available = dict(
        rewards=rewards,
        mask=mask,
        group_size=group_size,
        token_rewards=token_rewards,
        values=values,
        baseline_rewards=baseline_rewards,
        valid=valid,
        process_rewards=process_rewards,
        outcome_rewards=rewards,
    )
    params = inspect.signature(estimator).parameters
    if valid is not None and "valid" not in params:
        name = getattr(estimator, "func", estimator).__name__
        raise ValueError(
            f"advantage estimator {name!r} cannot leave unscorable rows out of its statistics "
            "(it takes no `valid`): use rewards.unscorable='fallback' or a group estimator"
        )
    missing = [
        k
        for k, p in params.items()
        if p.default is inspect.Parameter.empty and available.get(k) is None
    ]
    if missing:
        name = getattr(estimator, "func", estimator).__name__
        raise ValueError(
            f"advantage estimator {name!r} needs {missing}, which this run does not provide"
        )
    out = estimator(**{k: v for k, v in available.items() if k in params and v is not None})
    returns = None
    if isinstance(out, tuple):
        out, returns = out
    if out.ndim == 1:
        out = broadcast_to_tokens(out, mask)
    if valid is not None:
        out = out * (valid > 0)[:, None]
    return out, returns


def takes_input(estimator: Callable, name: str) -> bool:
    """Whether a bound estimator reads the input `name` (e.g. "valid", "baseline_rewards")."""
    return name in inspect.signature(estimator).parameters


def _step_kl_coef(totals: Mapping[str, Array]) -> Array:
    if "kl_coef" not in totals:
        raise KeyError(
            "kl.placement='loss' needs β as a scalar input of the step: "
            "update_fn(state, batch, rng, {'kl_coef': β})"
        )
    return totals["kl_coef"]


def rl_loss_from_config(
    config,
    policy: models.Decoder,
    critic: models.Decoder | None,
    *,
    logprob_impl: str,
    laser_token: int | None = None,
):
    """`make_rl_loss` with every argument read from an RL config (the trainer's own loss).

    laser_token: the token id t* of LaSeR's self-reward when `laser.enabled`.
    """
    c = config
    laser = None
    if c.laser.enabled:
        if laser_token is None:
            raise ValueError(
                "laser.enabled needs the token id t* (the trainer resolves laser.token)"
            )
        laser = dict(token=laser_token, kl_coef=c.laser.kl_coef, coef=c.laser.coef)
    return make_rl_loss(
        policy,
        critic,
        loss_name=c.loss.name,
        loss_kwargs=dict(c.loss.kwargs),
        aggregation=c.loss.aggregation,
        temperature=c.rollout.temperature,
        kl_placement=c.kl.placement,
        kl_estimator=c.kl.estimator,
        entropy_coef=c.entropy_coef,
        value_coef=c.critic.coef,
        value_clip=c.critic.clip,
        logprob_impl=logprob_impl,
        group_size=c.rollout.group_size if c.updates.shared_prompt else 1,
        laser=laser,
    )


def make_rl_loss(
    policy: models.Decoder,
    critic: models.Decoder | None,
    *,
    loss_name: str,
    loss_kwargs: Mapping,
    aggregation: str,
    temperature: float,
    kl_placement: str,
    kl_estimator: str,
    entropy_coef: float,
    value_coef: float,
    value_clip: float | None,
    logprob_impl: str = "auto",
    group_size: int = 1,
    laser: Mapping | None = None,
):
    """The RL loss `(params, minibatch, rng, totals) -> (loss, metrics)`.

    params: {"policy": ..., ["critic": ...]}. Minibatch keys: prompt_tokens,
    prompt_mask, tokens, mask, old_logprobs (optional: without it the
    behaviour policy is the current one, see `rl_loss`), rollout_logprobs, advantages,
    ref_logprobs with kl_placement="loss", old_values + returns with a critic.
    totals: num_tokens, num_seqs and, with kl_placement="loss", the step's β as
    `kl_coef` (a replicated f32 scalar: a new β never recompiles).

    The registered policy loss `loss_name` is bound here with `loss_kwargs`
    (every key checked: a typo fails now, naming itself) and computes the
    policy term, the KL-in-loss term and the entropy bonus. Its `impl`
    (loss.kwargs.impl, "auto" by default) is resolved here, once: `ppo_clip`
    runs as one fused kernel pass where that applies (`policy_loss_impl`).

    group_size > 1: a minibatch's rows come in groups of that many consecutive
    rows with one prompt, and the policy runs each prompt once
    (`forward.shared_prompt_hidden`).

    laser = {token, kl_coef, coef}: LaSeR's last-token self-rewarding term is
    added (`laser_last_token_mse`): the same forward pass reads log π(t*)
    after each completion's last token, fit to the minibatch's
    `verifier_rewards` [B]; its constant c is the scalar input
    `totals["laser_ref_constant"]`.
    """
    if kl_placement not in KL_PLACEMENTS:
        raise ValueError(f"kl.placement={kl_placement!r}; known: {', '.join(KL_PLACEMENTS)}")
    registered = POLICY_LOSSES.get(loss_name)
    if "impl" not in registry.hyperparameters(registered):
        raise ValueError(
            f"loss.name={loss_name!r} is not a policy loss of (logprobs, old_logprobs, "
            "advantages, mask)"
        )
    loss_fn = registry.bind(
        registered, loss_kwargs, what="loss.kwargs", reserved=POLICY_LOSS_INPUTS
    )
    bound = registry.hyperparameters(loss_fn)  # defaults are now the bound values
    kl_in_loss = kl_placement == "loss"
    try:
        impl = policy_loss_impl(
            registered,
            bound["impl"].default,
            tis_mode=bound["tis_mode"].default,
            kl_estimator=kl_estimator,
            with_kl=kl_in_loss,
        )
    except ValueError as e:
        raise ValueError(f"loss.kwargs.impl: {e}") from None
    loss_fn = functools.partial(
        loss_fn,
        impl=impl,
        aggregation=aggregation,
        kl_estimator=kl_estimator,
        entropy_coef=entropy_coef,
    )

    def rl_loss(params, mb, rng, totals):
        del rng
        inputs = (mb["prompt_tokens"], mb["prompt_mask"], mb["tokens"], mb["mask"])
        kw = dict(temperature=temperature, impl=logprob_impl, group_size=group_size)
        if laser is None:
            logp, entropy = forward.completion_logprobs(policy, params["policy"], *inputs, **kw)
        else:
            logp, entropy, next_logp = forward.completion_logprobs_and_next(
                policy, params["policy"], *inputs, next_token=laser["token"], **kw
            )
        mask = mb["mask"]
        counts = dict(num_tokens=totals["num_tokens"], num_seqs=totals["num_seqs"])
        kl = {}
        if kl_in_loss:
            kl = dict(ref_logprobs=mb["ref_logprobs"], kl_coef=_step_kl_coef(totals))
        # Without old_logprobs the update is the rollout policy's only one (one
        # epoch, one minibatch): the behaviour policy is the current one, so its
        # log-probs are this forward pass's, held constant.
        in_step = "old_logprobs" not in mb
        old_logprobs = jax.lax.stop_gradient(logp) if in_step else mb["old_logprobs"]
        loss, metrics = loss_fn(
            logp,
            old_logprobs,
            mb["advantages"],
            mask,
            rollout_logprobs=mb["rollout_logprobs"],
            # Logged always; differentiated only when it is in the loss.
            entropy=entropy if entropy_coef else jax.lax.stop_gradient(entropy),
            **kl,
            **counts,
        )
        metrics = dict(metrics)
        if laser is not None:
            laser_loss, laser_metrics = laser_last_token_mse_loss(
                next_logp,
                mb["verifier_rewards"],
                kl_coef=laser["kl_coef"],
                ref_constant=totals["laser_ref_constant"],
                coef=laser["coef"],
                valid=(jnp.sum(mask, axis=-1) > 0).astype(jnp.float32),
                total_weight=totals["num_seqs"],
            )
            loss = loss + laser_loss
            metrics.update({f"laser/{k}": v for k, v in laser_metrics.items()})
        if in_step:  # what the trainer's separate old-log-prob pass would have logged
            gap = jnp.abs(old_logprobs - mb["rollout_logprobs"])
            metrics["rollout/logp_gap_mean"] = masked_mean(gap, mask)
            metrics["rollout/logp_gap_max"] = jnp.max(jnp.where(mask > 0, gap, 0.0))
            metrics["rollout/entropy"] = masked_mean(jax.lax.stop_gradient(entropy), mask)
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

    rl_loss.impl = impl
    return rl_loss
