"""objective.kind = "sft": a registered SFT loss on task demonstrations.

Demonstrations come from the procedural task (`DemonstrationIterator`, with
`data.error_rate` of them carrying an injected error); the held-out
evaluation samples from the policy and grades with the task.

  python -m experiments.train --config configs/sft_arithmetic.py --workdir /tmp/sft
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rewardjax import models
from rewardjax.data.iterators import DemonstrationIterator
from rewardjax.data.tasks.base import Problem
from rewardjax.models import forward
from rewardjax.registry import SFT_LOSSES, bind
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.rollout import encode_prompts, evaluate_policy

__all__ = ["SFTObjective", "encode_demonstrations", "make_sft_loss", "sft_batch"]


def encode_demonstrations(
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
    tokens, mask, truncated = encode_demonstrations(
        tokenizer, [d for _, d in examples], length=completion_length
    )
    batch = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, tokens=tokens, mask=mask)
    return batch, {"data/truncated_frac": truncated / len(examples)}


def make_sft_loss(model: models.Decoder, *, loss_name: str, loss_kwargs: dict, logprob_impl: str):
    loss_fn = bind(
        SFT_LOSSES.get(loss_name),
        loss_kwargs,
        what="objective.kwargs",
        reserved={"num_tokens": "the batch", "num_seqs": "the batch"},
    )

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
        return evaluate_policy(
            c.eval,
            self.model_config,
            params["policy"],
            self.tokenizer,
            self.task,
            problems,
            rng=rng,
        )
