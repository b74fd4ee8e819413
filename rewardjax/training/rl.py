"""The RL loop: rollout → rewards (host) → advantages (device) → K epochs of minibatch updates.

GRPO, Dr.GRPO, DAPO, GSPO, RLOO, REINFORCE++ and PPO differ only in config:
the advantage estimator, the policy loss and its aggregation, where the KL
term goes, whether a critic is trained, and the curation rule. PRIME adds an
implicit PRM trained online beside the policy (`prime.enabled`, prime.py).
Old log-probs are recomputed by the trainer; their gap to the sampler's is
logged.

  python -m experiments.train --config configs/grpo_arithmetic.py --workdir /tmp/grpo
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rewardjax import models, parallel, sampling
from rewardjax.data.curation import PromptStats, dynamic_sampling, pass_rate_filter
from rewardjax.data.tasks.base import Problem
from rewardjax.models import forward, lora
from rewardjax.objectives import aggregation as agg
from rewardjax.objectives.advantages import outcome_to_token_rewards, zero_variance_policy
from rewardjax.objectives.kl import kl_in_reward
from rewardjax.registry import KL_ESTIMATORS
from rewardjax.rewards.likelihood import forced_answer_inputs
from rewardjax.scoring.models import laser_token_id
from rewardjax.training import guidance
from rewardjax.training.config_checks import ConfigError
from rewardjax.training.curriculum import Curriculum, group_signal, top_groups
from rewardjax.training.loop import Trainer, finite_or_none
from rewardjax.training.prime import OnlinePRM, check_prime_config
from rewardjax.training.prompts import PromptSource
from rewardjax.training.rl_loss import (
    advantage_estimator,
    check_kl_config,
    compute_advantages,
    rl_loss_from_config,
    takes_input,
)
from rewardjax.training.rl_rewards import RewardComputer
from rewardjax.training.rollout import (
    decode_completions,
    encode_prompts,
    evaluate_policy,
    truncated_rows,
)

Array = jax.Array

# The hint path's reward-seed namespace: main-path rounds use step·R + r, hinted
# groups HINT_SEED_OFFSET + step·R + r, so step-seeded shaping (noise flips) never
# draws the same numbers for a hinted batch and a main batch.
HINT_SEED_OFFSET = 1 << 40


class RLTrainer(Trainer):
    """Owns the models, state and data of one RL run; `run()` trains to `config.steps`."""

    desc = "rl"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        super().__init__(config, workdir)
        c = config
        self.group_size = c.rollout.group_size
        self.rows = c.rollout.prompts_per_step * c.rollout.group_size
        if self.rows % c.updates.minibatches:
            raise ValueError(
                f"rollout.prompts_per_step × group_size = {self.rows} rows do not divide into "
                f"updates.minibatches={c.updates.minibatches}"
            )
        self.use_kl = check_kl_config(c.kl.placement, c.kl.coef, c.kl.adaptive)
        # With updates.shared_prompt, forward passes see whole groups in order.
        self.prompt_group = self.group_size if c.updates.shared_prompt else 1
        self._check_prompt_groups()
        completion_bucket = sampling.bucket(c.rollout.max_new_tokens, sampling.DEFAULT_BUCKETS)
        if c.rollout.cache_block and completion_bucket % c.rollout.cache_block:
            raise ValueError(
                f"rollout.cache_block={c.rollout.cache_block} must divide the completion "
                f"bucket {completion_bucket} of rollout.max_new_tokens={c.rollout.max_new_tokens}"
            )
        # One update per rollout (one epoch, one minibatch) is taken at the rollout
        # policy itself: its old log-probs are the update's own forward pass
        # (rl_loss), not a second pass over the batch. The KL terms read them
        # beside the reference's, so they keep the separate pass.
        # Hinted and replayed rows take their ratio against the log-probs they
        # were sampled with, so those runs keep the separate pass too.
        self.behaviour_rows = c.curriculum.hints.enabled or c.curriculum.replay.enabled
        self.old_logprobs_in_update = (
            c.updates.epochs == 1
            and c.updates.minibatches == 1
            and not self.use_kl
            and not self.behaviour_rows
        )
        self.model_config, params, logical = self.load_model()
        self.policy = models.build(self.model_config)
        train_params, train_logical = {"policy": params}, {"policy": logical}
        self.critic = None
        if c.critic.enabled:
            critic_config, train_params["critic"], train_logical["critic"] = self.load_model(
                ("value",)
            )
            self.critic = models.build(critic_config, ("value",))
        self.create_state(train_params, train_logical)
        # π_ref: the initial policy, a copy with the policy's shardings (one copy
        # serves the KL terms and PRIME's implicit PRM). With LoRA it is the
        # frozen base with the adapters off, read from the state itself: no copy.
        self.lora = bool(self.model_config.lora_rank)
        if self.lora and c.prime.enabled:
            raise ConfigError(
                "config prime.enabled with lora.rank > 0: PRIME's implicit PRM is a full "
                "copy of the policy; train it without LoRA"
            )
        self.ref_params = (
            jax.jit(lambda p: jax.tree.map(jnp.copy, p))(self.state.params["policy"])
            if (self.use_kl or c.prime.enabled) and not self.lora
            else None
        )
        self.kl_coef = float(c.kl.coef)
        if c.kl.adaptive:
            self.kl_controller = KL_ESTIMATORS.get("adaptive_kl_controller")(
                init_kl_coef=c.kl.coef, target=c.kl.target, horizon=c.kl.horizon
            )
        else:
            self.kl_controller = None

        # curation.oversample = f: each round samples f·P prompts, and the filters
        # keep P of them (PRIME: ×4 with the pass-rate filter).
        if c.curation.oversample < 1:
            raise ValueError(f"curation.oversample={c.curation.oversample} must be >= 1")
        if c.curation.oversample > 1 and not (
            c.curation.dynamic_sampling or c.curation.pass_rate.enabled
        ):
            raise ValueError(
                f"curation.oversample={c.curation.oversample} samples extra prompts for a filter "
                "to choose from, but neither curation.dynamic_sampling nor "
                "curation.pass_rate.enabled is on"
            )
        prio = c.curriculum.priority
        if prio.enabled and c.curation.oversample > 1:
            raise ValueError(
                "curation.oversample and curriculum.priority.oversample both draw extra "
                "prompts; use one"
            )
        draws = c.curation.oversample * (prio.oversample if prio.enabled else 1)

        def make_source(task_cfg, prompts):
            return PromptSource(task_cfg, batch_size=prompts * draws, seed=c.seed)

        self.source = make_source(c.task, c.rollout.prompts_per_step)
        # Each prompt's pass rate over every group sampled for it (checkpointed).
        self.prompt_stats = PromptStats()
        # Which prompts each step samples, and hints and replay (checkpointed).
        self.curriculum = Curriculum(
            c.curriculum,
            task_cfg=c.task,
            source=self.source,
            prompts_per_step=c.rollout.prompts_per_step,
            group_size=self.group_size,
            prompt_group=self.prompt_group,
            seed=c.seed,
            make_source=make_source,
        )
        self.stage = self.curriculum.stage
        self.counters: dict[str, float] = self.source.check_lengths(
            self.tokenizer,
            max_new_tokens=max(c.rollout.max_new_tokens, c.eval.max_new_tokens),
            max_length=self.model_config.max_position_embeddings,
            skip=c.task.skip_long_prompts,
        )
        self.task = self.source.task
        self.rewards = RewardComputer(
            c.rewards,
            task=self.task,
            tokenizer=self.tokenizer,
            max_new_tokens=c.rollout.max_new_tokens,
            group_size=self.group_size,
        )
        if self.behaviour_rows and self.rewards.device_sources:
            raise ConfigError(
                f"rewards.sources {sorted(self.rewards.device_sources)} score each row's prompt "
                "with the policy; curriculum.hints and curriculum.replay put rows sampled "
                "elsewhere in the batch, which these sources do not score"
            )
        self.laser_token = (
            laser_token_id(self.tokenizer, c.laser.token) if c.laser.enabled else None
        )
        # LaSeR's constant c: estimated from the initial policy on the first batch.
        self.laser_ref_constant = (
            None
            if c.laser.enabled and c.laser.estimate_ref_constant
            else float(c.laser.ref_constant)
        )
        loss = rl_loss_from_config(
            c, self.policy, self.critic, logprob_impl=c.logprob_impl, laser_token=self.laser_token
        )
        self.advantage_estimator = advantage_estimator(c.advantage.name, c.advantage.kwargs)
        self._check_group_rules()
        self.compile_step(loss, rows=self.rows // c.updates.minibatches)
        batch_sharding = parallel.batch_sharding(self.mesh)

        def logprob_fn(model, **kwargs):
            fn = functools.partial(
                forward.completion_logprobs, model, impl=c.logprob_impl, **kwargs
            )
            return jax.jit(fn, out_shardings=batch_sharding)

        sampled = dict(temperature=c.rollout.temperature, group_size=self.prompt_group)
        self._logprob_fn = logprob_fn(self.policy, **sampled)
        # The reference's log-probs: the policy's own function, or with LoRA the
        # base model's (the same kernels, no adapters).
        self._ref_logprob_fn = self._logprob_fn
        if self.lora:
            self._ref_logprob_fn = logprob_fn(
                models.build(lora.base_config(self.model_config)), **sampled
            )
            # lora.merge_for_rollout: W + (α/r)·A·B once per rollout
            self._merged_config = lora.base_config(self.model_config)
            self._merge = jax.jit(lambda p: lora.merge(self.model_config, p)[1])
        if self.rewards.device_sources:
            # Likelihood rewards read the policy's own distribution (temperature 1).
            self._forced_logprob_fn = logprob_fn(self.policy)
        if self.critic is not None:
            self._value_fn = jax.jit(
                functools.partial(forward.completion_values, self.critic),
                out_shardings=batch_sharding,
            )
        # PRIME online: the implicit PRM ψ, started from the initial policy and
        # checkpointed with it, learns from each step's rollouts (prime.py).
        self.prime = None
        if c.prime.enabled:
            self.prime = OnlinePRM(
                c.prime,
                model=self.policy,
                policy_params=self.state.params["policy"],
                logical=logical,
                mesh=self.mesh,
                optim=c.optim,
                microbatches=c.microbatches,
                group_size=self.prompt_group,
                logprob_impl=c.logprob_impl,
                chunked=self._chunked,
            )
            self.aux_states["prime"] = self.prime.init_state(self.state.params["policy"])
        # The sampler's KV cache follows the batch over the data axes when the
        # mesh has more than one device.
        self._cache_sharding = (
            parallel.kv_cache_sharding(self.mesh) if self.mesh.devices.size > 1 else None
        )
        self.restore()

    def export(self, path: str) -> str:
        """The policy (`Trainer.export`); with PRIME also ψ, to the sibling `prime_hf/`.

        ψ is an implicit PRM: `scoring.ImplicitProcessRewardModel.load(prime_hf,
        reference=<the start model>, beta=prime.beta)` scores steps with it.
        """
        out = super().export(path)
        if self.prime is not None:
            self.export_params(
                os.path.join(os.path.dirname(path), "prime_hf"),
                self.aux_states["prime"].params["policy"],
            )
        return out

    def _laser_constant(self, batch) -> float:
        """The current policy's mean log π(t*) after each completion (LaSeR's c, at step 0)."""
        c = self.config
        fn = jax.jit(
            functools.partial(
                forward.completion_logprobs_and_next,
                self.policy,
                next_token=self.laser_token,
                impl=c.logprob_impl,
                group_size=self.prompt_group,
            )
        )
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
        _, _, next_logprob = self._chunked(fn, self.state.params["policy"], batch, keys)
        rows = np.asarray(batch["mask"]).sum(-1) > 0
        return float(np.asarray(next_logprob)[rows].mean())

    def _check_group_rules(self) -> None:
        """Rules over groups that this run's group size or estimator cannot serve (error at start)."""
        c = self.config
        if self.group_size == 1 and c.curation.zero_variance == "mask":
            raise ValueError(
                "curation.zero_variance='mask' drops groups whose rewards are all equal; with "
                "rollout.group_size=1 every group is one row, so every row would be dropped"
            )
        # Process (token-level) rewards need an estimator that reads them.
        token_sources = self.rewards.token_level_sources
        reads_tokens = takes_input(self.advantage_estimator, "token_rewards") or takes_input(
            self.advantage_estimator, "process_rewards"
        )
        if token_sources and not reads_tokens:
            raise ValueError(
                f"rewards.sources {token_sources} give token-level (process) rewards, but "
                f"advantage.name={c.advantage.name!r} reads only the outcome, so they would be "
                "dropped: pick an estimator that reads token rewards (reinforce_pp, "
                "token_reward_returns, gae, prime_combined_rloo) or the source's credit='none'"
            )
        check_prime_config(
            c.prime,
            advantage_name=c.advantage.name,
            estimator=self.advantage_estimator,
            token_level_sources=token_sources,
        )
        # ReMax's baseline: the reward of one greedy rollout per prompt.
        self.greedy_baseline = takes_input(self.advantage_estimator, "baseline_rewards")
        self.exclude_unscorable = self.rewards.unscorable == "exclude"
        if self.exclude_unscorable and not takes_input(self.advantage_estimator, "valid"):
            raise ValueError(
                f"rewards.unscorable='exclude' leaves unscorable rows out of their group's "
                f"statistics, but advantage.name={c.advantage.name!r} takes no `valid` rows: "
                "use a group estimator (grpo_group_norm, rloo, ...) or rewards.unscorable='fallback'"
            )

    def _check_prompt_groups(self) -> None:
        """With a shared prompt, every forward pass must hold whole groups (error at start)."""
        c, g = self.config, self.prompt_group
        if g == 1:
            return
        minibatch = self.rows // c.updates.minibatches
        passes = {
            "updates.minibatches": minibatch,
            "updates.forward_chunk": min(c.updates.forward_chunk, self.rows),
        }
        if c.microbatches >= 1 and minibatch % c.microbatches == 0:  # else compile_step says so
            passes["microbatches"] = minibatch // c.microbatches
        for key, rows in passes.items():
            if rows % g:
                raise ValueError(
                    f"updates.shared_prompt runs each prompt once per group of "
                    f"rollout.group_size={g} rows, but {key} gives passes of {rows} rows: "
                    f"make them a multiple of {g}, or set updates.shared_prompt=False"
                )

    # ------------------------------------------------------------------ checkpoints

    def signature(self) -> dict:
        return dict(super().signature(), critic=self.critic is not None)

    def meta(self) -> dict:
        return dict(
            source=self.source.state(),
            kl_coef=self.kl_coef,
            counters=self.counters,
            prompt_stats=self.prompt_stats.state_dict(),
            curriculum=self.curriculum.state_dict(),
            laser_ref_constant=self.laser_ref_constant,
        )

    def load_meta(self, meta: dict) -> None:
        self.source.restore(meta["source"])
        self.kl_coef = meta["kl_coef"]
        self.counters = meta["counters"]
        # Runs saved before the store existed resume with an empty one.
        self.prompt_stats = PromptStats.from_state_dict(meta.get("prompt_stats", {}))
        if "curriculum" in meta:
            self.curriculum.load_state_dict(meta["curriculum"])
        self._set_stage(self.curriculum.stage)
        if self.config.laser.enabled:
            self.laser_ref_constant = meta.get("laser_ref_constant", self.laser_ref_constant)

    # ------------------------------------------------------------------ rollout

    def _set_stage(self, stage) -> None:
        """Samples stage.prompts × stage.group rows per step from here on (their product is fixed)."""
        self.stage = stage
        self.group_size = stage.group
        self.rewards.group_size = stage.group

    def _generate(self, problems, rng, *, greedy: bool = False):
        """G samples per prompt, or with `greedy` one greedy completion per prompt."""
        tokens, mask = encode_prompts(self.tokenizer, problems)
        return tokens, mask, self._sample((tokens, mask), rng, greedy=greedy)

    def _sample(self, prompts, rng, *, greedy: bool = False):
        """The sampler on encoded prompts (tokens, mask), with the rollout block's settings."""
        c = self.config
        model_config, params = self.model_config, self.state.params["policy"]
        if self.lora and c.lora.merge_for_rollout:
            model_config, params = self._merged_config, self._merge(params)
        return sampling.generate(
            model_config,
            params,
            prompts,
            rng=rng,
            n=1 if greedy else self.group_size,
            max_new_tokens=c.rollout.max_new_tokens,
            temperature=0.0 if greedy else c.rollout.temperature,
            top_p=c.rollout.top_p,
            top_k=c.rollout.top_k,
            eos_ids=self.tokenizer.stop_ids,
            pad_id=self.tokenizer.pad_id,
            cache_sharding=self._cache_sharding,
            cache_block=c.rollout.cache_block or None,
            compact_min_rows=c.rollout.compact_min_rows,
        )

    def collect(self) -> tuple[dict[str, np.ndarray], list[Problem], dict[str, Any]]:
        """Samples groups (refilling dropped ones under dynamic sampling) and scores them.

        Returns:
          batch: host arrays of exactly prompts_per_step × group_size rows, the
            G samples of a prompt adjacent: prompt_tokens, prompt_mask [B, L];
            tokens, mask, rollout_logprobs [B, T]; rewards, correct, lengths,
            truncated [B]; token_rewards [B, T] when a process-reward source
            gives step rewards.
          problems: the prompts_per_step problems, in row order.
          metrics: rollout metrics.
        """
        c = self.config
        stage = self.curriculum.begin_step(self.step, self.prompt_stats)
        if stage is not self.stage:
            self._set_stage(stage)
        want = stage.prompts
        g = self.group_size
        curriculum_stats: dict[str, float] = {}
        kept: list[dict[str, np.ndarray]] = []
        kept_problems: list = []
        rounds, generated_groups, dropped_groups = 0, 0, 0
        reward_stats: dict[str, float] = {}
        while len(kept_problems) < want:
            if rounds >= c.curation.max_rounds:
                raise RuntimeError(
                    f"curation kept {len(kept_problems)} of {want} groups after "
                    f"curation.max_rounds={c.curation.max_rounds} rounds (dynamic sampling drops "
                    "groups without reward variance, the pass-rate filter groups outside "
                    "[lo, hi]); raise the cap, or change the task difficulty"
                )
            rounds += 1
            problems = self.curriculum.next_problems(self.step, rounds, self.prompt_stats)
            prompt_tokens, prompt_mask, out = self._generate(problems, self.next_key())
            # Every process reads the whole rollout (a collective on a multi-host mesh).
            out = parallel.gather_to_host(out)
            texts = decode_completions(self.tokenizer, out.tokens, out.lengths)
            row_problems = [p for p in problems for _ in range(g)]
            truncated = truncated_rows(out, self.tokenizer.stop_ids)
            lengths = out.lengths
            # tokens: process rewards (rewarding.py) land on the policy's own step-end tokens.
            scores, info = self.rewards(
                row_problems,
                texts,
                lengths=lengths,
                truncated=truncated,
                tokens=out.tokens,
                # A distinct seed per curation round (step-seeded shaping, e.g. noise flips; rounds ≥ 1).
                step=self.step * c.curation.max_rounds + rounds,
                device_scores=self._likelihood_rewards(prompt_tokens, prompt_mask, texts, problems),
            )
            for k, v in info["stats"].items():
                reward_stats[k] = reward_stats.get(k, 0.0) + v
            n = len(problems)
            self.prompt_stats.update(
                [p.uid for p in problems],
                info["correct"].reshape(n, g).astype(np.float64),
                step=self.step,
            )
            arrays = dict(
                prompt_tokens=np.repeat(prompt_tokens, g, axis=0),
                prompt_mask=np.repeat(prompt_mask, g, axis=0).astype(np.int32),
                tokens=out.tokens,
                mask=out.mask,
                rollout_logprobs=out.logprobs,
                rewards=scores.astype(np.float32),
                correct=info["correct"].astype(np.float32),
                lengths=lengths,
                truncated=truncated,
                # The policy's own outcomes, before hints or replay change rows.
                policy_correct=info["correct"].astype(np.float32),
            )
            if "token_rewards" in info:  # [B, T] process rewards from a PRM source
                arrays["token_rewards"] = info["token_rewards"]
            if self.exclude_unscorable:  # [B] False: unscorable rows
                arrays["valid"] = np.asarray(info["valid"], bool)
            if self.greedy_baseline:  # [B] the greedy reward of each row's prompt
                arrays["baseline_rewards"] = np.repeat(self._greedy_rewards(problems), g)
            generated_groups += n
            self.counters["rollout_rows"] = self.counters.get("rollout_rows", 0) + n * g
            if self.behaviour_rows:  # hints and replay put rows sampled elsewhere in the batch
                arrays = {k: np.array(v) for k, v in arrays.items()}  # writable copies
                arrays["behaviour"] = np.zeros(n * g, bool)
                arrays["advantage_weight"] = np.ones(n * g, np.float32)
                round_stats = self._guide_groups(problems, arrays, rounds)
                for k, v in round_stats.items():  # counts add up over rounds; rates: the last
                    add = k.endswith(("groups", "rows"))
                    curriculum_stats[k] = curriculum_stats.get(k, 0.0) * add + v
            correct = arrays["correct"].reshape(n, g).astype(np.float64)
            keep = np.ones(n, bool)
            if c.curation.dynamic_sampling:
                keep &= dynamic_sampling(arrays["rewards"].reshape(n, g))
            if c.curation.pass_rate.enabled:
                keep &= pass_rate_filter(
                    correct,
                    lo=c.curation.pass_rate.lo,
                    hi=c.curation.pass_rate.hi,
                    truncated=arrays["truncated"].reshape(n, g),
                    filter_truncate=c.curation.pass_rate.filter_truncate,
                )
            if c.curriculum.priority.enabled and c.curriculum.priority.by == "rollouts":
                # The groups of most signal among this round's oversampled prompts.
                signal = np.where(keep, group_signal(correct), -1.0)
                keep &= top_groups(signal, want - len(kept_problems))
            dropped_groups += int((~keep).sum())
            rows = np.repeat(keep, g)
            kept.append({k: v[rows] for k, v in arrays.items()})
            kept_problems += [p for p, k in zip(problems, keep) if k]
        # Prompt buckets can differ between rounds; left-pad to the longest.
        width = max(x["prompt_tokens"].shape[1] for x in kept)
        for x in kept:
            extra = width - x["prompt_tokens"].shape[1]
            if extra:
                x["prompt_tokens"] = np.pad(
                    x["prompt_tokens"], ((0, 0), (extra, 0)), constant_values=self.tokenizer.pad_id
                )
                x["prompt_mask"] = np.pad(x["prompt_mask"], ((0, 0), (extra, 0)))
        batch = {k: np.concatenate([x[k] for x in kept])[: want * g] for k in kept[0]}
        problems = kept_problems[:want]
        policy_correct = batch.pop("policy_correct")
        self.curriculum.end_step(
            [p.uid for p in problems],
            policy_correct.reshape(want, g),
            accuracy=float(policy_correct.mean()),
        )
        metrics = {
            "rollout/rounds": rounds,
            "rollout/rows_total": self.counters["rollout_rows"],
            "rollout/policy_accuracy": float(policy_correct.mean()),
            "rollout/dropped_group_frac": dropped_groups / max(generated_groups, 1),
            "curriculum/drive_stage": float(stage is not self.curriculum.uniform),
            "curriculum/level": float(self.curriculum.level),
            **{f"curriculum/{k}": v for k, v in curriculum_stats.items()},
            **{f"prompts/{k}": v for k, v in self.prompt_stats.summary().items()},
            **{f"reward/{k}": v / rounds for k, v in reward_stats.items()},
        }
        return batch, problems, metrics

    def _guide_groups(self, problems, arrays: dict, round_: int) -> dict[str, float]:
        """Hints and replay for this round's groups that failed entirely (in place in `arrays`).

        Rows put in from elsewhere are marked `behaviour` (their old log-probs
        are the ones they were sampled with) and replayed rows carry their
        `advantage_weight` (guidance.py). Returns counts for the curriculum metrics.
        """
        c = self.config.curriculum
        g = self.group_size
        replay = self.curriculum.replay
        stats: dict[str, float] = {}
        if replay is not None:
            guidance.remember_correct(replay, problems, arrays, g)
        failed = guidance.failed_groups(arrays, g)
        stats["fail_groups"] = float(failed.sum())
        if c.hints.enabled:
            stats.update(self._hint_groups(problems, arrays, failed, round_))
        if replay is not None:
            replayed = 0
            for i in np.flatnonzero(guidance.failed_groups(arrays, g)):
                item = replay.get(problems[i].uid)
                if item is not None:
                    guidance.put_row(
                        arrays,
                        i * g + g - 1,
                        item,
                        weight=c.replay.weight,
                        pad_id=self.tokenizer.pad_id,
                    )
                    replayed += 1
            stats["replay_rows"] = float(replayed)
            stats["replay_buffer"] = float(len(replay))
        return stats

    def _hint_groups(self, problems, arrays, failed, round_: int) -> dict[str, float]:
        """Samples the failed groups again with a hint (Guide); their rows replace the failed ones."""
        c = self.config.curriculum.hints
        g, width = self.group_size, arrays["tokens"].shape[1]
        picks, unavailable = guidance.pick_hints(
            self.curriculum,
            problems,
            failed,
            tokenizer=self.tokenizer,
            width=width,
            placement=c.placement,
            max_groups=c.max_groups,
        )
        stats = {"hint_groups": float(len(picks)), "hint_unavailable_groups": float(unavailable)}
        if not picks:
            return dict(stats, hint_signal_groups=0.0)
        prompts, hint_ids = guidance.hint_prompts(
            self.curriculum, problems, picks, tokenizer=self.tokenizer, placement=c.placement
        )
        self.counters["rollout_rows"] += prompts[0].shape[0] * g  # padding rows are sampled too
        out = parallel.gather_to_host(self._sample(prompts, self.next_key()))
        rows = guidance.hinted_rows(out, hint_ids, group=g, width=width, tokenizer=self.tokenizer)
        chosen = [problems[i] for i, _, _ in picks]
        scores, info = self.rewards(
            [p for p in chosen for _ in range(g)],
            decode_completions(self.tokenizer, rows["tokens"], rows["lengths"]),
            lengths=rows["lengths"],
            truncated=rows["truncated"],
            tokens=rows["tokens"],
            # Step-seeded shaping draws apart from every main-path round's (step·R + r < 2^40).
            step=HINT_SEED_OFFSET + self.step * self.config.curation.max_rounds + round_,
        )
        rates = guidance.write_groups(arrays, picks, rows, scores, info, group=g)
        for problem, (_, _, lines), rate in zip(chosen, picks, rates):
            self.curriculum.record_hint(problem, lines, rate)
        rates = np.asarray(rates)
        return dict(
            stats,
            # Hinted groups with both outcomes: the ones that carry a gradient.
            hint_signal_groups=float(np.sum((rates > 0) & (rates < 1))),
            hint_pass_rate=float(rates.mean()),
            hint_lines=float(np.mean([lines for _, _, lines in picks])),
        )

    def _likelihood_rewards(self, prompt_tokens, prompt_mask, texts, problems, *, group=None):
        """{key: [B]} of the likelihood reward sources, or None when there are none.

        Each row's sampled reasoning is followed by the reference answer
        (`forced_answer_inputs`) and teacher-forced through the current policy
        at temperature 1; RLPR's debiased form adds a pass with no reasoning.
        Rows are padded to a length bucket (one compile per bucket).
        """
        sources = self.rewards.device_sources
        if not sources:
            return None
        g = group or self.group_size
        answers = [p.answer for p in problems for _ in range(g)]
        prompts = dict(
            prompt_tokens=np.repeat(prompt_tokens, g, axis=0),
            prompt_mask=np.repeat(prompt_mask, g, axis=0).astype(np.int32),
        )
        passes = {}

        def teacher_forced(prefix: str, reasoning: bool):
            if (prefix, reasoning) not in passes:
                forced = forced_answer_inputs(
                    self.tokenizer, texts, answers, answer_prefix=prefix, reasoning=reasoning
                )
                width = forced["tokens"].shape[1]
                pad = ((0, 0), (0, sampling.bucket(width, sampling.DEFAULT_BUCKETS) - width))
                forced = {
                    k: np.pad(v, pad, constant_values=self.tokenizer.pad_id if k == "tokens" else 0)
                    for k, v in forced.items()
                }
                batch = dict(prompts, tokens=forced["tokens"], mask=forced["mask"])
                keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
                logprobs, _ = self._chunked(
                    self._forced_logprob_fn, self.state.params["policy"], batch, keys
                )
                passes[prefix, reasoning] = (logprobs, jnp.asarray(forced["answer_mask"]))
            return passes[prefix, reasoning]

        scores = {}
        for source in sources:
            logprobs, answer_mask = teacher_forced(source.answer_prefix, True)
            if source.baseline:
                base, base_mask = teacher_forced(source.answer_prefix, False)
                r = source.fn(logprobs, answer_mask, base, base_mask)
            else:
                r = source.fn(logprobs, answer_mask)
            scores[source.key] = np.asarray(r, np.float64)
        return scores

    def _greedy_rewards(self, problems) -> np.ndarray:
        """[P] rewards of one greedy completion per prompt, scored like the samples."""
        prompt_tokens, prompt_mask, out = self._generate(problems, self.next_key(), greedy=True)
        out = parallel.gather_to_host(out)
        texts = decode_completions(self.tokenizer, out.tokens, out.lengths)
        scores, _ = self.rewards(
            problems,
            texts,
            lengths=out.lengths,
            truncated=truncated_rows(out, self.tokenizer.stop_ids),
            tokens=out.tokens,
            group_ids=np.arange(len(problems)),  # one greedy row per prompt
            step=self.step,
            device_scores=self._likelihood_rewards(
                prompt_tokens, prompt_mask, texts, problems, group=1
            ),
        )
        return np.asarray(scores, np.float32)

    # ------------------------------------------------------------------ one iteration

    def _chunked(self, fn, params, batch, keys):
        """Applies fn to fixed-size row chunks (bounded memory, one compile)."""
        rows = batch["tokens"].shape[0]
        size = min(self.config.updates.forward_chunk, rows)
        outs = []
        for start in range(0, rows, size):
            chunk = parallel.shard_batch(
                {k: batch[k][start : start + size] for k in keys}, self.mesh
            )
            outs.append(parallel.addressable(fn(params, *(chunk[k] for k in keys))))
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)

    def prepare(self, batch: dict) -> tuple[dict[str, Array], dict[str, float]]:
        """Old/ref log-probs, values and advantages for a collected batch."""
        c = self.config
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
        params = self.state.params
        mask = jnp.asarray(batch["mask"])
        rewards = jnp.asarray(batch["rewards"])
        token_rewards = outcome_to_token_rewards(rewards, mask)
        process_rewards = None
        if "token_rewards" in batch:  # process rewards at step-end tokens (rewarding.py)
            process_rewards = jnp.asarray(batch["token_rewards"]) * mask
            token_rewards = token_rewards + process_rewards
        metrics: dict[str, float] = {}
        device = {k: jnp.asarray(batch[k]) for k in keys}
        device["rollout_logprobs"] = jnp.asarray(batch["rollout_logprobs"])
        if not self.old_logprobs_in_update:  # else the update's forward gives them (rl_loss)
            old_logprobs, entropy = self._chunked(self._logprob_fn, params["policy"], batch, keys)
            device["old_logprobs"] = old_logprobs
            gap = jnp.abs(old_logprobs - device["rollout_logprobs"])
            metrics["rollout/logp_gap_mean"] = agg.masked_mean(gap, mask)
            metrics["rollout/logp_gap_max"] = jnp.max(jnp.where(mask > 0, gap, 0.0))
            metrics["rollout/entropy"] = agg.masked_mean(entropy, mask)
            if "behaviour" in batch and batch["behaviour"].any():
                # Hinted and replayed rows: the ratio's denominator is the
                # distribution they were sampled from (Guide's correction).
                rows = jnp.asarray(batch["behaviour"])[:, None]
                device["old_logprobs"] = jnp.where(rows, device["rollout_logprobs"], old_logprobs)
                ratio = jnp.exp(old_logprobs - device["rollout_logprobs"])
                on = mask * rows
                metrics["curriculum/behaviour_rows"] = jnp.sum(rows)
                metrics["curriculum/is_ratio_mean"] = agg.masked_mean(ratio, on)
                metrics["curriculum/is_ratio_min"] = jnp.min(jnp.where(on > 0, ratio, jnp.inf))
                metrics["curriculum/is_ratio_max"] = jnp.max(jnp.where(on > 0, ratio, 0.0))
        if self.use_kl:
            ref = lora.strip(params["policy"]) if self.lora else self.ref_params
            ref_logprobs, _ = self._chunked(self._ref_logprob_fn, ref, batch, keys)
            metrics["kl/ref_k1"] = agg.masked_mean(old_logprobs - ref_logprobs, mask)
            metrics["kl/coef"] = self.kl_coef
            if c.kl.placement == "reward":
                token_rewards, kl_metrics = kl_in_reward(
                    token_rewards,
                    old_logprobs,
                    ref_logprobs,
                    mask,
                    kl_coef=self.kl_coef,
                    estimator=c.kl.estimator,
                )
                metrics.update({f"kl/{k}": v for k, v in kl_metrics.items()})
            else:
                device["ref_logprobs"] = ref_logprobs
        values = None
        if self.critic is not None:
            values = self._chunked(self._value_fn, params["critic"], batch, keys)
            device["old_values"] = values
        valid = jnp.asarray(batch["valid"], jnp.float32) if "valid" in batch else None
        baseline = batch.get("baseline_rewards")
        if baseline is not None:
            baseline = jnp.asarray(baseline)
            metrics["rollout/greedy_reward_mean"] = jnp.mean(baseline)
        advantages, returns = compute_advantages(
            self.advantage_estimator,
            rewards=rewards,
            mask=mask,
            group_size=self.group_size,
            token_rewards=token_rewards,
            values=values,
            valid=valid,
            baseline_rewards=baseline,
            process_rewards=process_rewards,
        )
        if "advantage_weight" in batch:  # replayed rows count with their weight
            advantages = advantages * jnp.asarray(batch["advantage_weight"])[:, None]
        device["advantages"] = advantages
        if self.laser_token is not None:  # LaSeR fits its self-reward to the verifier
            device["verifier_rewards"] = jnp.asarray(batch["correct"], jnp.float32)
        if valid is not None:
            metrics["rollout/unscorable_frac"] = 1.0 - jnp.mean(valid)
        if self.group_size > 1:  # a group of one row has no variance to speak of
            row_weight, zv_metrics = zero_variance_policy(
                rewards, group_size=self.group_size, valid=valid, mode=c.curation.zero_variance
            )
            if c.curation.zero_variance == "mask":
                # Rows of zero-variance groups leave the loss and its normalisers.
                device["mask"] = device["mask"] * row_weight[:, None]
            metrics["rollout/zero_std_row_frac"] = zv_metrics["zero_std_frac"]
        if self.critic is not None:
            if returns is None:
                raise ValueError(
                    f"critic.enabled needs an advantage estimator that returns value targets "
                    f"(e.g. 'gae'), not {c.advantage.name!r}"
                )
            device["returns"] = returns
        if self.group_size > 1:
            group_rewards = np.asarray(batch["rewards"]).reshape(-1, self.group_size)
            metrics["rollout/zero_std_group_frac"] = float(np.mean(group_rewards.std(axis=1) == 0))
        metrics["advantage/mean"] = agg.masked_mean(advantages, mask)
        metrics["advantage/abs_max"] = jnp.max(jnp.abs(advantages))
        return device, metrics

    def train_step(self) -> dict[str, float]:
        """One RL iteration: collect, prepare, and epochs × minibatches updates."""
        c = self.config
        t0 = time.time()
        batch, problems, metrics = self.collect()
        t_rollout = time.time() - t0
        if self.prime is not None:  # ψ learns from this batch; its token rewards join it
            self.aux_states["prime"], batch["token_rewards"], prime_metrics = self.prime.step(
                self.aux_states["prime"], batch, self.ref_params, self.next_key()
            )
            metrics.update(prime_metrics)
        device, prep_metrics = self.prepare(batch)
        metrics.update(prep_metrics)
        scalars = {"kl_coef": self.kl_coef}
        if self.laser_token is not None:
            if self.laser_ref_constant is None:
                self.laser_ref_constant = self._laser_constant(batch)
            scalars["laser_ref_constant"] = self.laser_ref_constant
            metrics["laser/ref_constant"] = self.laser_ref_constant
        minibatch = self.rows // c.updates.minibatches
        update_metrics = []
        for _ in range(c.updates.epochs):
            perm_key = self.next_key()
            # Shuffling moves whole groups when forward passes share prompts.
            units = self.rows // self.prompt_group
            order = (
                np.asarray(jax.random.permutation(perm_key, units))
                if c.updates.shuffle
                else np.arange(units)
            )
            order = (order[:, None] * self.prompt_group + np.arange(self.prompt_group)).ravel()
            for m in range(c.updates.minibatches):
                idx = order[m * minibatch : (m + 1) * minibatch]
                mb = {k: v[idx] for k, v in device.items()}
                update_metrics.append(self.update(mb, scalars))
        update_metrics = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *update_metrics)
        if self.kl_controller is not None and "kl/ref_k1" in metrics:
            kl_state = self.kl_controller.update(
                type(self.kl_controller.init())(jnp.float32(self.kl_coef)),
                metrics["kl/ref_k1"],
                self.rows,
            )
            self.kl_coef = float(kl_state.kl_coef)
        rewards = batch["rewards"]
        metrics.update(
            {k if k.startswith("rollout/") else f"train/{k}": v for k, v in update_metrics.items()}
        )
        metrics.update(
            {
                "reward/mean": float(rewards.mean()),
                "reward/std": float(rewards.std()),
                "reward/accuracy": float(batch["correct"].mean()),
                "rollout/length_mean": float(batch["lengths"].mean()),
                "rollout/truncated_frac": float(batch["truncated"].mean()),
                "time/rollout_s": t_rollout,
                "time/step_s": time.time() - t0,
                "rollout/tokens": float(batch["mask"].sum()),
            }
        )
        self.step += 1
        if c.log.samples_every and self.step % c.log.samples_every == 0:
            texts = decode_completions(self.tokenizer, batch["tokens"], batch["lengths"])
            self.writer.write_samples(
                self.step,
                [
                    dict(
                        prompt=problems[i // self.group_size].prompt,
                        completion=texts[i],
                        reward=float(rewards[i]),
                    )
                    for i in range(min(len(texts), c.log.num_samples))
                ],
            )
        return metrics

    def evaluate(
        self, *, num_problems: int | None = None, n: int | None = None
    ) -> dict[str, float]:
        """Held-out pass@k (unbiased estimator) on the test split of the task."""
        c = self.config
        problems = self.source.test_problems(num_problems or c.eval.num_problems)
        return evaluate_policy(
            c.eval,
            self.model_config,
            self.state.params["policy"],
            self.tokenizer,
            self.task,
            problems,
            rng=self.next_key(),
            n=n,
        )

    def progress_fields(self, metrics) -> dict[str, float | None]:
        return dict(
            tokens=metrics["rollout/tokens"],
            reward=float(metrics["reward/mean"]),
            kl=finite_or_none(metrics.get("kl/ref_k1")),
            ent=finite_or_none(metrics.get("rollout/entropy")),
            clip=finite_or_none(metrics.get("train/clip_frac")),
        )


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs RL training as configured; returns the last logged metrics."""
    trainer = RLTrainer(config, workdir)
    return trainer.run()
