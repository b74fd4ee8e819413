"""objective.kind = "sft": a registered SFT loss on demonstrations or on the policy's own samples.

Where a batch comes from depends on `objective.loss`:

- sft_nll, dft_prob_weighted, asft_anchored: demonstrations, from a JSONL file
  of `{"prompt", "response"}` rows or `{"messages": [...]}` conversations
  (`data.train_path`, `read_demonstrations`: one demonstration per assistant
  turn, so the loss falls on assistant turns only) or, when that is empty,
  from the procedural task
  (`DemonstrationIterator`, with `data.error_rate` of them carrying an
  injected error). asft_anchored also reads the logits of the frozen initial
  policy on the same positions (`ref_logits` [B, T, V]) for its KL anchor.
- raft_reward_ranked (iterated RAFT): each batch samples
  `data.samples_per_prompt` completions for each of `data.prompts_per_batch`
  task prompts from the current policy, grades them with the task's checker,
  and trains on the `top_k` best of each prompt's group.

The held-out evaluation samples from the policy and grades with the task.

  python -m experiments.train --config configs/sft_arithmetic.py --workdir /tmp/sft
  python -m experiments.train --config configs/raft_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/raft
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import models, ops, parallel, sampling
from rewardjax.data.formats import Demonstration, read_demonstrations
from rewardjax.data.iterators import BatchIterator, DemonstrationIterator, PromptIterator
from rewardjax.models import forward
from rewardjax.objectives.kl import full_vocab_kl
from rewardjax.objectives.sft import reward_ranked_selection
from rewardjax.registry import SFT_LOSSES, bind
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.config_checks import ConfigError
from rewardjax.training.rollout import decode_completions, encode_prompts, evaluate_policy

__all__ = [
    "ANCHORED_LOSSES",
    "SAMPLING_LOSSES",
    "SFTObjective",
    "completion_logits",
    "encode_demonstrations",
    "make_sft_loss",
    "sft_batch",
]

# Losses anchored to the frozen initial policy by a per-position full-vocabulary KL.
ANCHORED_LOSSES = ("asft_anchored",)
# Losses trained on groups sampled from the current policy, not on demonstrations.
SAMPLING_LOSSES = ("raft_reward_ranked",)
_SAMPLING_KEYS = ("data.samples_per_prompt", "data.prompts_per_batch", "data.sample_temperature")


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
    tokenizer: Tokenizer, examples: Sequence[tuple], *, completion_length: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Arrays for SFT from (prompt, demonstration) pairs.

    A prompt is a string or a record (`encode_prompts`), written by the
    tokenizer's prompt format.
    """
    prompt_tokens, prompt_mask = encode_prompts(tokenizer, [p for p, _ in examples])
    tokens, mask, truncated = encode_demonstrations(
        tokenizer, [d for _, d in examples], length=completion_length
    )
    batch = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, tokens=tokens, mask=mask)
    return batch, {"data/truncated_frac": truncated / len(examples)}


def completion_logits(
    model: models.Decoder,
    params,
    prompt_tokens,  # [B, L]
    prompt_mask,  # [B, L]
    tokens,  # [B, T]
    mask,  # [B, T]
):
    """Full logits [B, T, V] (float32) at the positions that predict each completion token."""
    hidden = forward.completion_hidden(model, params, prompt_tokens, prompt_mask, tokens, mask)
    return model.apply({"params": params}, hidden, method="apply_heads")


def make_sft_loss(
    model: models.Decoder,
    *,
    loss_name: str,
    loss_kwargs: dict,
    logprob_impl: str,
    group_size: int | None = None,
):
    """The SFT loss `(params, minibatch, rng, totals) -> (loss, metrics)`.

    Minibatch keys: prompt_tokens, prompt_mask [B, L]; tokens, mask [B, T];
    for ANCHORED_LOSSES ref_logits [B, T, V] (the frozen reference's); for
    SAMPLING_LOSSES rewards [B], rows in groups of `group_size` samples of one
    prompt.
    """
    anchored, samples = loss_name in ANCHORED_LOSSES, loss_name in SAMPLING_LOSSES
    reserved = {"num_tokens": "the batch", "num_seqs": "the batch"}
    if anchored:
        reserved["token_kl"] = "the policy and its frozen initial copy"
    if samples:
        reserved["group_size"] = "data.samples_per_prompt"
    loss_fn = bind(
        SFT_LOSSES.get(loss_name), loss_kwargs, what="objective.kwargs", reserved=reserved
    )
    if samples:
        if not group_size:
            raise ConfigError(f"objective.loss={loss_name!r} needs data.samples_per_prompt >= 1")
        loss_fn = functools.partial(loss_fn, group_size=group_size)

    def sft_loss(params, mb, rng, totals):
        del rng
        policy = params["policy"]
        args, extra = (), {}
        if anchored:
            hidden = forward.completion_hidden(
                model, policy, mb["prompt_tokens"], mb["prompt_mask"], mb["tokens"], mb["mask"]
            )
            kernel = models.lm_head_kernel(model.config, policy)
            out = ops.token_logprobs_from_hidden(hidden, kernel, mb["tokens"], impl=logprob_impl)
            logp, entropy = out.logprobs, out.entropy
            logits = model.apply({"params": policy}, hidden, method="apply_heads")
            # KL(π_θ‖π_ref) as the paper writes it; the reference is data, never differentiated.
            extra["token_kl"] = full_vocab_kl(logits, jax.lax.stop_gradient(mb["ref_logits"]))
        else:
            logp, entropy = forward.completion_logprobs(
                model,
                policy,
                mb["prompt_tokens"],
                mb["prompt_mask"],
                mb["tokens"],
                mb["mask"],
                impl=logprob_impl,
            )
        if samples:
            args = (mb["rewards"],)
        loss, metrics = loss_fn(
            logp,
            mb["mask"],
            *args,
            num_tokens=totals["num_tokens"],
            num_seqs=totals["num_seqs"],
            **extra,
        )
        metrics = dict(metrics)
        metrics["entropy"] = jnp.sum(entropy * mb["mask"]) / jnp.maximum(jnp.sum(mb["mask"]), 1.0)
        return loss, metrics

    return sft_loss


class SFTObjective:
    """objective.kind = "sft": a registered SFT loss on demonstrations or ranked policy samples.

    Config keys read: objective.{loss, kwargs}, data.{train_path, error_rate,
    completion_length, samples_per_prompt, prompts_per_batch,
    sample_temperature}, batch_size, microbatches, seed, logprob_impl, eval.*.

    `next_batch_reads_policy` is True for SAMPLING_LOSSES: the trainer then
    passes the current policy params to `next_batch`.
    """

    kind = "sft"
    heads = ("lm",)

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        loss = c.objective.loss
        self.anchored, self.next_batch_reads_policy = (
            loss in ANCHORED_LOSSES,
            loss in SAMPLING_LOSSES,
        )
        self.group_size = self._check_sampling_keys(c) if self.next_batch_reads_policy else None
        self.loss = make_sft_loss(
            model,
            loss_name=loss,
            loss_kwargs=dict(c.objective.kwargs),
            logprob_impl=c.logprob_impl,
            group_size=self.group_size,
        )
        if self.next_batch_reads_policy:
            if c.data.train_path:
                raise ConfigError(
                    f"config data.train_path={c.data.train_path!r}: objective.loss={loss!r} "
                    "trains on the policy's own samples; leave data.train_path empty"
                )
            self.data = PromptIterator(
                task, batch_size=c.data.prompts_per_batch, split="train", seed=c.seed
            )
            kwargs = c.objective.kwargs
            self._select = functools.partial(
                reward_ranked_selection,
                group_size=self.group_size,
                **{k: kwargs[k] for k in ("top_k", "threshold") if k in kwargs},
            )
            # Item i's samples are drawn with fold_in(key, i): a resumed run redraws them.
            self._sample_key = jax.random.fold_in(jax.random.key(c.seed), 0x52414654)
            return
        if c.data.samples_per_prompt or c.data.prompts_per_batch:
            raise ConfigError(
                "config data.samples_per_prompt and data.prompts_per_batch are read by "
                f"objective.loss in {SAMPLING_LOSSES}, not {loss!r}; leave them 0"
            )
        if c.data.train_path:
            if c.data.error_rate:
                raise ConfigError(
                    f"config data.error_rate={c.data.error_rate} injects errors into generated "
                    "demonstrations; with data.train_path set, leave it 0"
                )
            records = read_demonstrations(c.data.train_path)
            self.data = BatchIterator(records, batch_size=c.batch_size, seed=c.seed)
        else:
            self.data = DemonstrationIterator(
                task, batch_size=c.batch_size, error_rate=c.data.error_rate, seed=c.seed
            )
        if self.anchored:
            # A copy: the policy's buffers are donated to the update step.
            self.ref_params = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
            self._ref_logits = jax.jit(functools.partial(completion_logits, model))

    @staticmethod
    def _check_sampling_keys(c) -> int:
        """N = data.samples_per_prompt, after checking every key the sampling reads."""
        # Absent or 0 (the SFT defaults of configs.common.sft_base) or negative.
        missing = [k for k in _SAMPLING_KEYS if not (c.data.get(k.removeprefix("data.")) or 0) > 0]
        if missing:
            raise ConfigError(
                f"objective.loss={c.objective.loss!r} samples its batches from the policy: set "
                f"{', '.join(missing)} (> 0; batch_size = prompts_per_batch × samples_per_prompt)"
            )
        n, prompts = c.data.samples_per_prompt, c.data.prompts_per_batch
        if c.batch_size != prompts * n:
            raise ConfigError(
                f"config batch_size={c.batch_size} must equal data.prompts_per_batch × "
                f"data.samples_per_prompt = {prompts} × {n} = {prompts * n}"
            )
        if (c.batch_size // c.microbatches) % n:
            raise ConfigError(
                f"config microbatches={c.microbatches}: a micro-batch of "
                f"{c.batch_size // c.microbatches} rows does not hold whole groups of "
                f"data.samples_per_prompt={n}"
            )
        return n

    def next_batch(self, policy_params=None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The next batch; SAMPLING_LOSSES sample it from `policy_params` (the current policy)."""
        if self.next_batch_reads_policy:
            if policy_params is None:
                raise ValueError(
                    f"objective.loss={self.config.objective.loss!r} samples from "
                    "the policy: next_batch needs the current policy params"
                )
            return self._sampled_batch(policy_params)
        items = next(self.data)
        if isinstance(items[0], Demonstration):
            examples = [(r, r.response) for r in items]
        else:
            examples = [(p, d) for p, d in items]
        batch, metrics = sft_batch(
            self.tokenizer, examples, completion_length=self.config.data.completion_length
        )
        if self.anchored:
            batch["ref_logits"] = self._ref_logits(
                self.ref_params,
                batch["prompt_tokens"],
                batch["prompt_mask"],
                batch["tokens"],
                batch["mask"],
            )
        metrics["data/tokens"] = float(batch["mask"].sum())
        return batch, metrics

    def _sampled_batch(self, policy_params) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """N samples per prompt from the policy, graded; rows outside each group's top-k masked."""
        c, n = self.config, self.group_size
        key = jax.random.fold_in(self._sample_key, self.data.index)
        problems = next(self.data)
        prompt_tokens, prompt_mask = encode_prompts(self.tokenizer, problems)
        out = sampling.generate(
            self.model_config,
            policy_params,
            (prompt_tokens, prompt_mask),
            rng=key,
            n=n,
            max_new_tokens=c.data.completion_length,
            temperature=c.data.sample_temperature,
            eos_ids=self.tokenizer.stop_ids,
            pad_id=self.tokenizer.pad_id,
        )
        # Every process reads the whole sample (a collective on a multi-host mesh).
        out = parallel.gather_to_host(out)
        texts = decode_completions(self.tokenizer, out.tokens, out.lengths)
        rows = [p for p in problems for _ in range(n)]
        rewards = np.array(
            [float(self.task.grade(p, t).correct) for p, t in zip(rows, texts)], np.float32
        )
        keep = np.asarray(self._select(jnp.asarray(rewards)))
        # The kept rows only in `mask`, so the batch totals (token and sequence counts) are the
        # kept rows': the loss's normalisers. The loss selects the same rows from `rewards`.
        mask = np.asarray(out.mask, np.float32) * keep[:, None]
        batch = dict(
            prompt_tokens=np.repeat(prompt_tokens, n, axis=0),
            prompt_mask=np.repeat(prompt_mask, n, axis=0).astype(np.int32),
            tokens=np.asarray(out.tokens, np.int32),
            mask=mask,
            rewards=rewards,
        )
        lengths = np.asarray(out.lengths, np.float32)
        metrics = {
            "data/tokens": float(mask.sum()),
            "data/reward_mean": float(rewards.mean()),
            "data/kept_reward_mean": float((rewards * keep).sum() / max(keep.sum(), 1.0)),
            "data/sample_length": float(lengths.mean()),
        }
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
