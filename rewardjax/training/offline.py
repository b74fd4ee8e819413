"""One offline loop for SFT, DPO-family, reward-model and PRM training.

data iterator → batch of arrays → registered loss → the shared update step,
with the same checkpoints, metrics and progress bar as the RL loop. What
differs between the kinds (`objective.kind`: sft, dpo, rm, prm, implicit_prm)
is only how a batch is built, which loss reads it and how the result is
evaluated: `SFTObjective` below, `training.preference.PreferenceObjective`
and the three of `training.reward_models`.

  python -m experiments.train --config configs/sft_arithmetic.py --workdir /tmp/sft
  python -m experiments.train --config configs/rm_arithmetic.py --workdir /tmp/rm
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import rewardjax.objectives  # noqa: F401  (registers the losses read by name)
from rewardjax import models, parallel
from rewardjax.data.iterators import DemonstrationIterator
from rewardjax.data.tasks.base import Problem
from rewardjax.registry import SFT_LOSSES, TASKS
from rewardjax.tokenizers import Tokenizer
from rewardjax.training import forward
from rewardjax.training.checkpoint import Checkpointer, check_compatible
from rewardjax.training.optim import make_optimizer
from rewardjax.training.policy import load_policy, load_tokenizer_for
from rewardjax.training.rollout import encode_prompts, sample_and_grade
from rewardjax.training.step import TrainState, make_update_step
from rewardjax.training.writers import MetricWriter, Progress

Array = jax.Array


def encode_completions(
    tokenizer: Tokenizer, completions: list[str], *, length: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Right-padded completion tokens [B, length] ending in EOS, mask, and #truncated rows."""
    tokens = np.full((len(completions), length), tokenizer.pad_id, np.int32)
    mask = np.zeros((len(completions), length), np.float32)
    truncated = 0
    for i, text in enumerate(completions):
        ids = [*tokenizer.encode(text), tokenizer.eos_id]
        if len(ids) > length:
            ids = ids[:length]
            truncated += 1
        tokens[i, : len(ids)] = ids
        mask[i, : len(ids)] = 1.0
    return tokens, mask, truncated


def sft_batch(
    tokenizer: Tokenizer, examples: list[tuple[Problem, str]], *, completion_length: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Arrays for SFT from (problem, demonstration) pairs."""
    prompt_tokens, prompt_mask = encode_prompts(tokenizer, [p.prompt for p, _ in examples])
    tokens, mask, truncated = encode_completions(
        tokenizer, [d for _, d in examples], length=completion_length
    )
    batch = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, tokens=tokens, mask=mask)
    return batch, {"data/truncated_frac": truncated / len(examples)}


def make_sft_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict, logprob_impl: str):
    loss_fn = SFT_LOSSES.get(loss_name)

    def sft_loss(params, mb, rng, totals):
        del rng
        logp, entropy = forward.completion_logprobs(
            model,
            params["policy"],
            mb["prompt_tokens"],
            mb["prompt_mask"],
            mb["tokens"],
            mb["mask"],
            impl=logprob_impl,
        )
        loss, metrics = loss_fn(
            logp,
            mb["mask"],
            num_tokens=totals["num_tokens"],
            num_seqs=totals["num_seqs"],
            **loss_kwargs,
        )
        metrics = dict(metrics)
        metrics["entropy"] = jnp.sum(entropy * mb["mask"]) / jnp.maximum(jnp.sum(mb["mask"]), 1.0)
        return loss, metrics

    return sft_loss


class SFTObjective:
    """objective.kind = "sft": a registered SFT loss on task demonstrations.

    Config keys read: objective.{loss, kwargs}, data.{error_rate,
    completion_length}, batch_size, seed, logprob_impl, eval.*.
    """

    kind = "sft"
    heads = ("lm",)

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        del params
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        self.data = DemonstrationIterator(
            task, batch_size=c.batch_size, error_rate=c.data.error_rate, seed=c.seed
        )
        self.loss = make_sft_loss(
            model,
            loss_name=c.objective.loss,
            loss_kwargs=dict(c.objective.kwargs),
            logprob_impl=c.logprob_impl,
        )

    def next_batch(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        batch, metrics = sft_batch(
            self.tokenizer, next(self.data), completion_length=self.config.data.completion_length
        )
        metrics["data/tokens"] = float(batch["mask"].sum())
        return batch, metrics

    def evaluate(self, params, rng) -> dict[str, float]:
        c = self.config
        problems = self.task.problems(0, c.eval.num_problems, split="test", seed=c.seed)
        result = sample_and_grade(
            self.model_config,
            params["policy"],
            self.tokenizer,
            self.task,
            problems,
            rng=rng,
            n=c.eval.num_samples,
            max_new_tokens=c.data.completion_length,
            temperature=c.eval.temperature,
            batch_prompts=c.eval.batch_prompts,
        )
        return result.summary()


def _objectives() -> dict[str, type]:
    from rewardjax.training.preference import PreferenceObjective
    from rewardjax.training.reward_models import (
        ImplicitPRMObjective,
        ProcessRewardObjective,
        RewardModelObjective,
    )

    kinds = (
        SFTObjective,
        PreferenceObjective,
        RewardModelObjective,
        ProcessRewardObjective,
        ImplicitPRMObjective,
    )
    return {k.kind: k for k in kinds}


# objective.kind → how a batch is built, which loss reads it, and how the result
# is evaluated. Each class takes (config, tokenizer, model_config, model, params,
# task) and offers `heads`, `data` (get_state/set_state), `loss`, `next_batch()`
# and `evaluate(params, rng)`.
OBJECTIVE_KINDS = ("sft", "dpo", "rm", "prm", "implicit_prm")


class OfflineTrainer:
    """SFT, DPO-family, reward-model, PRM and implicit-PRM training: one loop, by `objective.kind`."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = c = config
        self.workdir = workdir
        objectives = _objectives()
        if c.objective.kind not in objectives:
            raise ValueError(
                f"objective.kind={c.objective.kind!r}; this trainer runs: {', '.join(OBJECTIVE_KINDS)}"
            )
        objective_cls = objectives[c.objective.kind]
        os.makedirs(workdir, exist_ok=True)
        self.rng = jax.random.key(c.seed)
        self.tokenizer = load_tokenizer_for(c.model)
        self.rng, init_key = jax.random.split(self.rng)
        self.model_config, params = load_policy(
            c.model, self.tokenizer, init_key, heads=objective_cls.heads
        )
        self.model = models.build(self.model_config, objective_cls.heads)
        self.task = TASKS.get(c.task.name)(**c.task.kwargs)
        self.objective = objective_cls(
            c,
            tokenizer=self.tokenizer,
            model_config=self.model_config,
            model=self.model,
            params=params,
            task=self.task,
        )
        self.data = self.objective.data
        self.optimizer = make_optimizer(**c.optim)
        # Params, optimizer state and batches live on one mesh (data, fsdp,
        # tensor), as in the RL loop; the step is jitted with explicit shardings.
        self.mesh = parallel.mesh_from_config(c.mesh)
        state = TrainState.create({"policy": jax.tree.map(jnp.asarray, params)}, self.optimizer)
        logical = {"policy": models.logical_axes(self.model_config, objective_cls.heads)}
        self.state_sharding = parallel.state_shardings(state, self.mesh, logical)
        self.state = jax.device_put(state, self.state_sharding)
        micro_rows = c.batch_size // c.microbatches
        parallel_rows = parallel.batch_parallelism(self.mesh)
        if c.batch_size % c.microbatches or micro_rows % parallel_rows:
            raise ValueError(
                f"batch_size={c.batch_size} in {c.microbatches} micro-batches does not divide "
                f"over the {parallel_rows} data-parallel shards of mesh {dict(self.mesh.shape)}"
            )
        self.update_fn = parallel.jit_step(
            make_update_step(self.objective.loss, self.optimizer, microbatches=c.microbatches),
            self.mesh,
            self.state_sharding,
            parallel.batch_sharding(self.mesh),
        )
        self.step = 0
        self.writer = MetricWriter(workdir)
        self.checkpointer = Checkpointer(
            workdir, keep=c.checkpoint.keep, async_save=c.checkpoint.async_save
        )
        self._restore()

    def _signature(self) -> dict:
        mc = self.model_config
        signature = dict(
            vocab_size=mc.vocab_size,
            hidden_size=mc.hidden_size,
            num_layers=mc.num_layers,
            num_heads=mc.num_heads,
            num_kv_heads=mc.num_kv_heads,
            intermediate_size=mc.intermediate_size,
        )
        if self.objective.kind != "sft":
            signature["objective"] = self.objective.kind
        return signature

    def _checkpoint_state(self) -> dict:
        return {"train": self.state, "rng": jax.random.key_data(self.rng)}

    def _restore(self) -> None:
        restored = self.checkpointer.restore_latest(
            self._checkpoint_state(),
            check=lambda meta: check_compatible(meta["model"], self._signature()),
        )
        if restored is None:
            return
        step, state, meta = restored
        self.state = state["train"]
        self.rng = jax.random.wrap_key_data(state["rng"])
        self.data.set_state(meta["data"])
        self.step = step
        logging.info("resumed %s at step %d", self.workdir, step)

    def save(self) -> None:
        meta = dict(
            model=self._signature(), data=self.data.get_state(), config=self.config.to_dict()
        )
        self.checkpointer.save(self.step, self._checkpoint_state(), meta)

    def train_step(self) -> dict[str, Any]:
        batch, metrics = self.objective.next_batch()
        self.rng, key = jax.random.split(self.rng)
        self.state, update_metrics = self.update_fn(
            self.state, parallel.shard_batch(batch, self.mesh), key
        )
        metrics.update({f"train/{k}": v for k, v in update_metrics.items()})
        self.step += 1
        return metrics

    def evaluate(self) -> dict[str, float]:
        """The objective's held-out evaluation (pass@k for policies, RM/PRM metrics for scorers)."""
        self.rng, key = jax.random.split(self.rng)
        return self.objective.evaluate(self.state.params, key)

    def run(self) -> dict[str, float]:
        c = self.config
        progress = Progress(c.steps, initial=self.step, desc=c.objective.kind)
        last: dict[str, float] = {}
        start = time.time()
        while self.step < c.steps:
            metrics = self.train_step()
            if c.eval.every and self.step % c.eval.every == 0:
                metrics.update({f"eval/{k}": v for k, v in self.evaluate().items()})
            if self.step % c.log.every == 0 or self.step == c.steps:
                metrics["time/elapsed_s"] = time.time() - start
                last = self.writer.write_scalars(self.step, metrics)
            progress.update(tokens=metrics["data/tokens"], loss=float(metrics["train/loss"]))
            if int(self.state.consecutive_skips) >= c.max_consecutive_skips:
                self.save()
                self.checkpointer.wait()
                raise FloatingPointError(
                    f"{c.max_consecutive_skips} consecutive updates had a non-finite loss or "
                    f"gradient (step {self.step}); the last good state is checkpointed in {self.workdir}"
                )
            if c.checkpoint.every and self.step % c.checkpoint.every == 0:
                self.save()
        progress.close()
        self.save()
        self.checkpointer.close()
        if c.export_hf:
            self.export(os.path.join(self.workdir, "hf"))
        self.writer.flush()
        return last

    def export(self, path: str) -> str:
        """Writes the current model as an HF checkpoint directory; extra heads ride along."""
        params = jax.tree.map(np.asarray, self.state.params["policy"])
        models.save_hf(path, self.model_config, params)
        return path


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    return OfflineTrainer(config, workdir).run()
