"""PRIME online: an implicit PRM that learns from every RL step's graded rollouts.

"Process Reinforcement through Implicit Rewards" (PRIME; verl-recipe
`recipe/prime`). The implicit PRM ψ is a causal LM started from the initial
policy; π_ref is the frozen initial policy (the trainer's one reference copy,
shared with the KL terms). Every RL step:

  1. ψ takes `prime.updates` gradient steps of the outcome cross-entropy
       L(ψ) = BCE(σ(β·Σ_t mask_t·(log π_ψ(y_t) − log π_ref(y_t))), correct)
     on the step's rollouts (`implicit_prm_loss`; the label of a row is the
     verifier's `correct`), with its own optimizer;
  2. its token rewards β·(log π_ψ(y_t) − log π_ref(y_t)) on completion tokens
     (`implicit_process_rewards`) become the batch's process rewards, which
     `prime_combined_rloo` combines with the outcome reward.

`prime.update_order` orders the two: "before" (PRIME's and verl's default) rewards
the batch with ψ after this step's update, at the cost of a second ψ forward
pass; "after" rewards it with ψ before the update (what verl reads off the
update's own forward pass). Log-probs of ψ and π_ref are taken at temperature
1 (a reward model's distribution, not the sampler's), as in verl's PRM worker
and the offline implicit_prm kind.

ψ's TrainState lives in the trainer's `aux_states["prime"]`, so it is
checkpointed and restored with the policy (`training.loop.Trainer`).

  prm = OnlinePRM(c.prime, model=policy, policy_params=p, logical=axes, ...)
  state = prm.init_state(p)
  state, token_rewards, metrics = prm.step(state, batch, ref_params, rng)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rewardjax import models, parallel
from rewardjax.models import forward
from rewardjax.objectives.reward_modeling import implicit_process_rewards
from rewardjax.training.kinds.implicit_prm import make_implicit_prm_loss
from rewardjax.training.optim import make_optimizer
from rewardjax.training.rl_loss import takes_input
from rewardjax.training.step import TrainState, make_update_step

Array = jax.Array

UPDATE_ORDERS = ("before", "after")
_FORWARD_KEYS = ("prompt_tokens", "prompt_mask", "tokens", "mask")


def check_prime_config(
    prime, *, advantage_name: str, estimator: Callable, token_level_sources: Sequence[str]
) -> None:
    """Errors at start for a `prime` block this run cannot honour (ranges: config_checks).

    Args:
      prime: the config's `prime` block.
      advantage_name: advantage.name, for the message.
      estimator: the bound advantage estimator.
      token_level_sources: reward sources that already give token-level rewards.
    """
    if prime.update_order not in UPDATE_ORDERS:
        raise ValueError(
            f"prime.update_order={prime.update_order!r}; known: {', '.join(UPDATE_ORDERS)}"
        )
    if not prime.enabled:
        return
    if not (takes_input(estimator, "process_rewards") or takes_input(estimator, "token_rewards")):
        raise ValueError(
            f"prime.enabled gives token-level (process) rewards, but "
            f"advantage.name={advantage_name!r} reads only the outcome, so they would be "
            "dropped: use prime_combined_rloo (PRIME), or another estimator that reads token "
            "rewards (reinforce_pp, token_reward_returns, gae)"
        )
    if token_level_sources:
        raise ValueError(
            f"prime.enabled gives the process rewards, but rewards.sources "
            f"{list(token_level_sources)} give token-level rewards too: set their credit='none' "
            "or remove them, or set prime.enabled=False"
        )


class OnlinePRM:
    """ψ's optimizer, its jitted update and its reward pass (ψ's state is the caller's).

    Args:
      prime: the config's `prime` block (beta, learning_rate, updates, update_order).
      model: the policy's Decoder (ψ shares its architecture).
      policy_params: the initial policy params (shapes and shardings of ψ).
      logical: their logical axes.
      mesh: the mesh ψ is sharded on, like the policy.
      optim: the policy's optim block; ψ uses it with prime.learning_rate
        (0: the policy's learning rate).
      microbatches: gradient-accumulation steps of ψ's update.
      group_size: rows per shared prompt in forward passes (1: none).
      logprob_impl: `ops` log-prob implementation.
      chunked: `(fn, params, batch, keys) -> outputs`, the trainer's fixed-size
        chunked forward pass over a host batch.
    """

    def __init__(
        self,
        prime,
        *,
        model: models.Decoder,
        policy_params,
        logical,
        mesh: jax.sharding.Mesh,
        optim: Mapping,
        microbatches: int,
        group_size: int,
        logprob_impl: str,
        chunked: Callable,
    ):
        self.beta = float(prime.beta)
        self.updates = prime.updates
        self.update_first = prime.update_order == "before"
        self.mesh = mesh
        self._chunked = chunked
        self.optimizer = make_optimizer(
            **{**dict(optim), "learning_rate": prime.learning_rate or optim["learning_rate"]}
        )
        abstract = jax.eval_shape(self._create, policy_params)
        self.state_sharding = parallel.state_shardings(abstract, mesh, {"policy": logical})
        loss = make_implicit_prm_loss(
            model,
            loss_name="implicit_prm",
            loss_kwargs={"beta": self.beta},
            logprob_impl=logprob_impl,
            group_size=group_size,
        )
        batch_sharding = parallel.batch_sharding(mesh)
        self.update_fn = parallel.jit_step(
            make_update_step(loss, self.optimizer, microbatches=microbatches),
            mesh,
            self.state_sharding,
            batch_sharding,
        )
        # One compiled pass for ψ and π_ref alike (same shapes and shardings).
        self.logprob_fn = jax.jit(
            functools.partial(
                forward.completion_logprobs, model, impl=logprob_impl, group_size=group_size
            ),
            out_shardings=batch_sharding,
        )
        self._rewards_fn = jax.jit(functools.partial(implicit_process_rewards, beta=self.beta))
        self._distance = jax.jit(
            lambda a, b: optax.tree.norm(jax.tree.map(lambda x, y: x - y, a, b))
        )

    def _create(self, policy_params) -> TrainState:
        # A copy: the policy's buffers are donated to its own updates.
        return TrainState.create({"policy": jax.tree.map(jnp.copy, policy_params)}, self.optimizer)

    def init_state(self, policy_params) -> TrainState:
        """ψ's TrainState: ψ = the initial policy, with a fresh optimizer state."""
        return jax.jit(self._create, out_shardings=self.state_sharding)(policy_params)

    def token_rewards(self, state: TrainState, batch: Mapping, ref_logprobs: Array) -> Array:
        """[B, T] β·(log π_ψ − log π_ref) on completion tokens, 0 elsewhere."""
        logprobs, _ = self._chunked(self.logprob_fn, state.params["policy"], batch, _FORWARD_KEYS)
        return self._rewards_fn(logprobs, ref_logprobs, jnp.asarray(batch["mask"]))

    def step(
        self, state: TrainState, batch: Mapping[str, np.ndarray], ref_params, rng: Array
    ) -> tuple[TrainState, Array, dict[str, Array]]:
        """ψ's updates on a graded rollout batch, and the batch's token rewards.

        Args:
          state: ψ's TrainState.
          batch: host arrays from `RLTrainer.collect`: prompt_tokens, prompt_mask
            [B, L]; tokens, mask [B, T]; correct [B] (the labels).
          ref_params: π_ref.
          rng: a key for the update steps.

        Returns:
          (state, token_rewards [B, T], metrics): prime/loss and prime/accuracy
          (sign of β·Σ_t q_t against the label) of ψ before each update,
          averaged over the updates; prime/reward_mean (Σ_t of the token
          rewards given to the policy, row mean); prime/param_distance
          (‖ψ − π_ref‖₂, how far ψ has moved from its start); prime/grad_norm;
          prime/skipped (non-finite updates).
        """
        ref_logprobs, _ = self._chunked(self.logprob_fn, ref_params, batch, _FORWARD_KEYS)
        if not self.update_first:
            rewards = self.token_rewards(state, batch, ref_logprobs)
        update_batch = {k: batch[k] for k in _FORWARD_KEYS}
        update_batch.update(ref_logprobs=ref_logprobs, outcome=batch["correct"])
        update_batch = parallel.shard_batch(update_batch, self.mesh)
        per_update = []
        for key in jax.random.split(rng, self.updates):
            state, metrics = self.update_fn(state, update_batch, key)
            per_update.append(metrics)
        if self.update_first:
            rewards = self.token_rewards(state, batch, ref_logprobs)
        mean = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *per_update)
        metrics = {
            "prime/loss": mean["loss"],
            "prime/accuracy": mean["accuracy"],
            "prime/grad_norm": mean["grad_norm"],
            "prime/skipped": mean["skipped"],
            "prime/reward_mean": jnp.mean(jnp.sum(rewards, axis=-1)),
            "prime/param_distance": self._distance(state.params["policy"], ref_params),
        }
        return state, rewards, metrics
