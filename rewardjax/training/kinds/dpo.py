"""objective.kind = "dpo": the DPO family on preference pairs against a frozen reference.

  python -m experiments.train --config configs/dpo_arithmetic.py:sft_path=/tmp/sft/hf --workdir /tmp/dpo

Chosen and rejected completions go through one concatenated forward; the
loss reads per-sequence log-prob sums s = Σ_t mask·log π and the reference's
sums, which are either precomputed once for the whole dataset before training
(`reference.precompute=True`) or computed on the fly for each batch by a
separate compiled forward (never inside the gradient). Every loss of
`PREFERENCE_LOSSES` is selectable by `objective.loss`; `adpo_anchored` sees
each pair as a list of K = 2 candidates with target q = (1, 0).

With `data.format="lists"` the data are ranked lists (`RankedList`, JSONL
format "ranked_lists", or generated from the task) of K = `data.list_size`
candidates each, and `adpo_anchored` (the only listwise loss) matches a
target q over them: `objective.target` "top1", "softmax_scores" (at
`objective.target_temperature`) or "ranking" (q ∝ 1/rank), see
`kinds.data.list_targets`. All K candidates of a batch's B lists go through
one [B·K]-row forward.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import models
from rewardjax.models import forward, lora
from rewardjax.registry import PREFERENCE_LOSSES, bind
from rewardjax.scoring.models import check_reference_vocab
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.kinds.data import (
    ArrayBatches,
    encode_pairs,
    encode_train_pairs,
    lists_of_split,
    load_records,
    reader_of,
)
from rewardjax.training.rollout import evaluate_policy

Array = jax.Array

__all__ = [
    "DATA_FORMATS",
    "PreferenceObjective",
    "load_reference",
    "make_list_preference_loss",
    "make_preference_loss",
    "sequence_logprob_sums",
]

_PAIR_LOSS_ARGS = ("chosen_lengths", "rejected_lengths", "total_weight")
# data.format of the dpo kind.
DATA_FORMATS = ("pairs", "lists")
# The preference losses that take K candidates and a target distribution.
LIST_LOSSES = ("adpo_anchored",)


def sequence_logprob_sums(
    model: models.Decoder,
    params,
    prompt_tokens: Array,  # [B, L]
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    impl: str = "auto",
) -> Array:
    """Σ_t mask·log π(y_t | x, y_<t): [B] float32."""
    logp, _ = forward.completion_logprobs(
        model, params, prompt_tokens, prompt_mask, tokens, mask, impl=impl
    )
    return jnp.sum(logp * mask, axis=-1)


def load_reference(
    reference_cfg, *, policy_config: models.ModelConfig, policy_params, share: bool = False
) -> tuple[models.ModelConfig, Any]:
    """The frozen reference: `reference.path` (an HF directory), else a copy of the initial policy.

    With LoRA the reference is the base with its adapters off. `share` (the
    reference is read only before the first update, e.g. precomputed DPO
    log-probs) returns the policy's own base arrays instead of a copy.

    A reference whose vocabulary differs from the policy's is an error naming
    both embedding shapes.
    """
    if reference_cfg.path:
        ref_config, ref_params = models.load_hf(reference_cfg.path, dtype=policy_config.dtype)
        check_reference_vocab(
            policy_config, ref_config, what=f"config reference.path={reference_cfg.path!r}"
        )
        ref_config = ref_config.replace(
            eos_token_id=policy_config.eos_token_id,
            pad_token_id=policy_config.pad_token_id,
            bos_token_id=policy_config.bos_token_id,
        )
    else:
        ref_config, ref_params = lora.base_config(policy_config), lora.strip(policy_params)
        if share and policy_config.lora_rank:
            return ref_config, ref_params
    # A copy: the policy's buffers are donated to the update step.
    return ref_config, jax.tree.map(lambda x: jnp.array(x, copy=True), ref_params)


def make_preference_loss(
    model: models.Decoder, *, loss_name: str, loss_kwargs: dict, logprob_impl: str
):
    """The DPO-family loss `(params, minibatch, rng, totals) -> (loss, metrics)`.

    Minibatch keys: prompt_tokens, prompt_mask [B, L]; chosen_tokens,
    chosen_mask, rejected_tokens, rejected_mask [B, T]; ref_chosen,
    ref_rejected [B] (reference log-prob sums).
    """
    if loss_name == "pair_weights":
        raise ValueError(
            "objective.loss='pair_weights' is the per-pair reduction, not a preference loss; "
            f"known losses: {', '.join(n for n in PREFERENCE_LOSSES.names() if n != 'pair_weights')}"
        )
    batch_keys = ("chosen_lengths", "rejected_lengths", "total_weight")
    loss_fn = bind(
        PREFERENCE_LOSSES.get(loss_name),
        loss_kwargs,
        what="objective.kwargs",
        reserved={k: "the batch" for k in batch_keys},
    )
    accepted = set(inspect.signature(loss_fn.func).parameters)

    def preference_loss(params, mb, rng, totals):
        del rng
        b = mb["chosen_tokens"].shape[0]
        prompt_tokens = jnp.concatenate([mb["prompt_tokens"]] * 2)
        prompt_mask = jnp.concatenate([mb["prompt_mask"]] * 2)
        tokens = jnp.concatenate([mb["chosen_tokens"], mb["rejected_tokens"]])
        mask = jnp.concatenate([mb["chosen_mask"], mb["rejected_mask"]])
        logp, entropy = forward.completion_logprobs(
            model, params["policy"], prompt_tokens, prompt_mask, tokens, mask, impl=logprob_impl
        )
        sums = jnp.sum(logp * mask, axis=-1)
        chosen, rejected = sums[:b], sums[b:]
        ref_chosen = jax.lax.stop_gradient(mb["ref_chosen"])
        ref_rejected = jax.lax.stop_gradient(mb["ref_rejected"])
        # Per-pair weights (objective.pair_weights): L = Σ w_i·ℓ_i / Σ w_i over the batch.
        weighted = {}
        if "weight" in mb:
            weighted = dict(weights=mb["weight"], total_weight=totals["total_weight"])
        if loss_name == "adpo_anchored":
            target = jnp.tile(jnp.array([[1.0, 0.0]]), (b, 1))
            loss, metrics = loss_fn(
                jnp.stack([chosen, rejected], -1),
                jnp.stack([ref_chosen, ref_rejected], -1),
                target,
                **({"total_weight": totals["num_rows"]} | weighted),
            )
        else:
            extra = dict(
                chosen_lengths=jnp.sum(mb["chosen_mask"], -1),
                rejected_lengths=jnp.sum(mb["rejected_mask"], -1),
                total_weight=totals["num_rows"],
            )
            extra.update(weighted)
            extra = {k: v for k, v in extra.items() if k in accepted}
            loss, metrics = loss_fn(chosen, rejected, ref_chosen, ref_rejected, **extra)
        metrics = dict(metrics)
        metrics["logp_chosen"] = jax.lax.stop_gradient(jnp.mean(chosen))
        metrics["logp_rejected"] = jax.lax.stop_gradient(jnp.mean(rejected))
        metrics["entropy"] = jax.lax.stop_gradient(
            jnp.sum(entropy * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        )
        return loss, metrics

    return preference_loss


def make_list_preference_loss(model: models.Decoder, *, loss_kwargs: dict, logprob_impl: str):
    """`adpo_anchored` on ranked lists: `(params, minibatch, rng, totals) -> (loss, metrics)`.

    Minibatch keys: prompt_tokens, prompt_mask [B, L]; list_tokens, list_mask
    [B, K, T]; target [B, K] (q); ref_logps [B, K] (reference log-prob sums).
    """
    loss_fn = bind(
        PREFERENCE_LOSSES.get("adpo_anchored"),
        loss_kwargs,
        what="objective.kwargs",
        reserved={k: "the batch" for k in ("candidate_mask", "weights", "total_weight")},
    )

    def list_preference_loss(params, mb, rng, totals):
        del rng
        b, k, t = mb["list_tokens"].shape
        tokens = mb["list_tokens"].reshape(b * k, t)
        mask = mb["list_mask"].reshape(b * k, t)
        logp, entropy = forward.completion_logprobs(
            model,
            params["policy"],
            jnp.repeat(mb["prompt_tokens"], k, axis=0),
            jnp.repeat(mb["prompt_mask"], k, axis=0),
            tokens,
            mask,
            impl=logprob_impl,
            group_size=k,  # the K candidates of a list share its prompt: run it once
        )
        sums = jnp.sum(logp * mask, axis=-1).reshape(b, k)
        loss, metrics = loss_fn(
            sums,
            jax.lax.stop_gradient(mb["ref_logps"]),
            mb["target"],
            total_weight=totals["num_rows"],
        )
        metrics = dict(metrics)
        # Candidates are stored best first: column 0 is the list's best response.
        metrics["logp_best"] = jax.lax.stop_gradient(jnp.mean(sums[:, 0]))
        metrics["logp_mean"] = jax.lax.stop_gradient(jnp.mean(sums))
        metrics["entropy"] = jax.lax.stop_gradient(
            jnp.sum(entropy * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        )
        return loss, metrics

    return list_preference_loss


class PreferenceObjective:
    """objective.kind = "dpo": a preference loss on pairs or ranked lists against a frozen reference.

    Config keys read: objective.{loss, kwargs, pair_weights, target,
    target_temperature}, reference.{path, precompute}, data.{format,
    list_size, train_path, test_path, num_train, num_test, prompt_length,
    completion_length}, batch_size, seed, logprob_impl, eval.*.
    """

    kind = "dpo"
    heads = ("lm",)

    def __init__(self, config, *, tokenizer: Tokenizer, model_config, model, params, task):
        c = self.config = config
        self.tokenizer, self.model_config, self.task = tokenizer, model_config, task
        self.listwise = _check_format(c)
        # With LoRA the reference is the base the policy's state holds (its
        # frozen leaves never change): precomputed log-probs read it before any
        # update, on-the-fly ones read it from the current state before each
        # update (`next_batch_reads_policy`). No second copy of the weights.
        self.ref_from_policy = bool(model_config.lora_rank) and not c.reference.path
        self.next_batch_reads_policy = self.ref_from_policy and not c.reference.precompute
        self.ref_config, self.ref_params = load_reference(
            c.reference,
            policy_config=model_config,
            policy_params=params,
            share=c.reference.precompute or self.ref_from_policy,
        )
        self._ref_fn = jax.jit(
            functools.partial(
                sequence_logprob_sums, models.build(self.ref_config), impl=c.logprob_impl
            )
        )
        self._policy_fn = jax.jit(
            functools.partial(sequence_logprob_sums, model, impl=c.logprob_impl)
        )
        if self.listwise:
            arrays = lists_of_split(c, task, tokenizer, "train")
            self.test = lists_of_split(c, task, tokenizer, "test")
            self.loss = make_list_preference_loss(
                model, loss_kwargs=dict(c.objective.kwargs), logprob_impl=c.logprob_impl
            )
        else:
            arrays = self._train_pairs(params)
            test = load_records(
                task,
                "preference_pairs",
                path=c.data.test_path,
                num=c.data.num_test,
                split="test",
                seed=c.seed,
                **reader_of(c.data, "test"),
            )
            self.test = encode_pairs(
                tokenizer,
                test,
                prompt_length=c.data.prompt_length,
                completion_length=c.data.completion_length,
                source=c.data.test_path or "generated test pairs",
            )
            self.loss = make_preference_loss(
                model,
                loss_name=c.objective.loss,
                loss_kwargs=dict(c.objective.kwargs),
                logprob_impl=c.logprob_impl,
            )
        if c.reference.precompute:
            arrays.update(self._reference_sums(arrays))
        self.data = ArrayBatches(arrays, batch_size=c.batch_size, seed=c.seed)
        self.test.update(self._reference_sums(self.test))
        if c.reference.precompute or self.ref_from_policy:
            # Every reference log-prob is computed, or comes from the state's
            # base: drop this handle (a donated buffer must not be read later).
            self.ref_params = None

    def _train_pairs(self, params) -> dict[str, np.ndarray]:
        c = self.config
        rule = c.objective.pair_weights
        weight_field = rule.removeprefix("field:") if rule.startswith("field:") else ""
        if rule not in ("", "margin") and not weight_field:
            raise ValueError(
                f"config objective.pair_weights={rule!r}; known: '' (w = 1), 'margin' "
                "(w_i = the pair's margin), 'field:<key>' (a numeric key of each JSONL record)"
            )
        arrays = encode_train_pairs(
            c,
            self.task,
            tokenizer=self.tokenizer,
            model_config=self.model_config,
            params=params,
            weight_field=weight_field,
        )
        if rule == "margin":
            if np.any(arrays["margin"] < 0):
                raise ValueError("objective.pair_weights='margin' needs margins >= 0")
            arrays["weight"] = arrays["margin"]
        return arrays

    def _sums(self, fn, params, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Log-prob sums of both sides, in chunks of batch_size rows (one compiled shape)."""
        size = self.config.batch_size
        n = arrays["chosen_tokens"].shape[0]
        out = {"chosen": [], "rejected": []}
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n  # the last chunk wraps around
            for side in out:
                out[side].append(
                    np.asarray(
                        fn(
                            params,
                            arrays["prompt_tokens"][idx],
                            arrays["prompt_mask"][idx],
                            arrays[f"{side}_tokens"][idx],
                            arrays[f"{side}_mask"][idx],
                        )
                    )
                )
        return {side: np.concatenate(v)[:n] for side, v in out.items()}

    def _list_sums(self, fn, params, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Log-prob sums [N, K] of every candidate, batch_size lists (B·K rows) per call."""
        size = self.config.batch_size
        n, k, t = arrays["list_tokens"].shape
        out = []
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n  # the last chunk wraps around
            sums = fn(
                params,
                np.repeat(arrays["prompt_tokens"][idx], k, axis=0),
                np.repeat(arrays["prompt_mask"][idx], k, axis=0),
                arrays["list_tokens"][idx].reshape(size * k, t),
                arrays["list_mask"][idx].reshape(size * k, t),
            )
            out.append(np.asarray(sums).reshape(size, k))
        return np.concatenate(out)[:n]

    def _reference_sums(self, arrays, ref_params=None) -> dict[str, np.ndarray]:
        ref_params = self.ref_params if ref_params is None else ref_params
        if self.listwise:
            return {"ref_logps": self._list_sums(self._ref_fn, ref_params, arrays)}
        sums = self._sums(self._ref_fn, ref_params, arrays)
        return {"ref_chosen": sums["chosen"], "ref_rejected": sums["rejected"]}

    def next_batch(self, policy_params=None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The next batch, with its reference log-probs when they are not precomputed.

        policy_params: the current policy (passed by the trainer when
        `next_batch_reads_policy`): with LoRA its base is the reference.
        """
        if self.next_batch_reads_policy and policy_params is None:
            raise ValueError(
                "next_batch needs the current policy parameters: with LoRA and "
                "reference.precompute=False the reference is the state's base"
            )
        batch = next(self.data)
        if not self.config.reference.precompute:
            ref = lora.strip(policy_params) if self.next_batch_reads_policy else None
            batch.update(self._reference_sums(batch, ref))
        if self.listwise:
            tokens = float(batch["list_mask"].sum())
        else:
            tokens = float(batch["chosen_mask"].sum() + batch["rejected_mask"].sum())
        return batch, {"data/tokens": tokens}

    def _held_out_preferences(self, params) -> dict[str, float]:
        if self.listwise:
            # The implicit reward log π − log π_ref ranks each held-out list.
            rewards = self._list_sums(self._policy_fn, params["policy"], self.test)
            rewards = rewards - self.test["ref_logps"]
            best = np.argmax(self.test["target"], -1)
            return {
                "lists/top1_accuracy": float(np.mean(np.argmax(rewards, -1) == best)),
                "lists/best_reward_mean": float(np.mean(rewards[:, 0])),
            }
        sums = self._sums(self._policy_fn, params["policy"], self.test)
        margin = (sums["chosen"] - self.test["ref_chosen"]) - (
            sums["rejected"] - self.test["ref_rejected"]
        )
        return {
            "pairs/reward_accuracy": float(np.mean(margin > 0)),
            "pairs/margin_mean": float(np.mean(margin)),
        }

    def evaluate(self, params, rng) -> dict[str, float]:
        """The implicit-reward accuracy on held-out pairs or lists, and the task's pass@k.

        pass@k runs on the procedural task's held-out problems only when the
        training data comes from that task (generated or policy-sampled pairs);
        a run on a dataset file (UltraFeedback, say) has no task to solve.
        """
        c = self.config
        out = self._held_out_preferences(params)
        if c.data.train_path:
            return out
        problems = self.task.problems(0, c.eval.num_problems, split="test", seed=c.seed)
        out.update(
            evaluate_policy(
                c.eval,
                self.model_config,
                params["policy"],
                self.tokenizer,
                self.task,
                problems,
                rng=rng,
            )
        )
        return out


def _check_format(c) -> bool:
    """Whether the run is listwise; a data format or target its loss cannot take is an error."""
    fmt = c.data.format
    if fmt not in DATA_FORMATS:
        raise ValueError(f"config data.format={fmt!r}; known: {', '.join(DATA_FORMATS)}")
    if fmt == "pairs":
        if c.objective.target != "top1":
            raise ValueError(
                f"config objective.target={c.objective.target!r} needs data.format='lists' "
                "(a pair's target is q = (1, 0), 'top1')"
            )
        return False
    if c.objective.loss not in LIST_LOSSES:
        raise ValueError(
            f"config data.format='lists' with objective.loss={c.objective.loss!r}: only "
            f"{', '.join(LIST_LOSSES)} takes lists of K candidates"
        )
    k = c.data.list_size
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"config data.list_size={k!r} must be an integer >= 2")
    if c.objective.pair_weights:
        raise ValueError(
            f"config objective.pair_weights={c.objective.pair_weights!r} weighs pairs; "
            "leave it empty with data.format='lists'"
        )
    if c.data.pairs_from != "task":
        raise ValueError(
            f"config data.pairs_from={c.data.pairs_from!r} samples pairs; lists come from "
            "data.train_path or the task (leave it 'task')"
        )
    return True
