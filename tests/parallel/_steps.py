"""SFT, DPO, reward-model and GRPO update steps on the tiny preset, for the sharding tests.

Each `make_case(name)` returns (update_fn, state, batch, logical_axes): an
un-jitted `training.step.make_update_step` update, a fresh float32 TrainState,
a fixed host batch of 8 rows and the logical axes of `state.params`. Log-probs
come straight from the model's logits so that these tests depend only on the
model, the objectives and the update-step factory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import models
from rewardjax.objectives.advantages import broadcast_to_tokens, grpo_group_norm
from rewardjax.objectives.policy import ppo_clip_loss
from rewardjax.objectives.preference import dpo_sigmoid_loss
from rewardjax.objectives.reward_modeling import bt_pairwise_loss
from rewardjax.objectives.sft import sft_nll_loss
from rewardjax.training.optim import make_optimizer
from rewardjax.training.step import TrainState, make_update_step

CASES = ("sft", "dpo", "rm", "grpo")
ROWS = 8  # divides over every data-parallel size of the tested meshes (8, 2, 4, 4)
LENGTH = 12
GROUP = 4


def tiny_config() -> models.ModelConfig:
    return models.preset("tiny")


def optimizer():
    # A large Adam eps: Adam's first step is ≈ sign(g), so a gradient entry near
    # zero would turn float32 summation-order noise (~1e-9) into an lr-sized
    # difference; eps=1e-3 bounds that amplification by lr/eps = 10.
    return make_optimizer(learning_rate=1e-2, eps=1e-3, weight_decay=0.01, max_grad_norm=1.0)


def target_logprobs(model, params, tokens, attention_mask):
    """log π(tokens[:, t+1] | tokens[:, :t+1]) for t < T-1: [B, T-1]."""
    logits = model.apply({"params": params}, tokens, attention_mask)
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def _right_padded_mask(rng: np.random.Generator, rows: int, length: int, min_len: int):
    lengths = rng.integers(min_len, length + 1, size=rows)
    return (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)


def _tokens(rng: np.random.Generator, rows: int, length: int, vocab: int):
    return rng.integers(1, vocab, size=(rows, length)).astype(np.int32)


def make_case(name: str, seed: int = 0):
    cfg = tiny_config()
    rng = np.random.default_rng(seed)
    heads = ("reward",) if name == "rm" else ("lm",)
    model = models.build(cfg, heads)
    axes = {"policy": models.logical_axes(cfg, heads)}
    opt = optimizer()
    # One compiled init instead of a few hundred eager ops.
    state = jax.jit(
        lambda key: TrainState.create({"policy": models.init_params(cfg, key, heads)}, opt)
    )(jax.random.key(seed))
    params = state.params["policy"]
    v = cfg.vocab_size

    if name == "sft":
        attn = _right_padded_mask(rng, ROWS, LENGTH, 4)
        batch = dict(tokens=_tokens(rng, ROWS, LENGTH, v), attention_mask=attn, mask=attn[:, 1:])

        def loss_fn(p, mb, key, totals):
            del key
            logp = target_logprobs(model, p["policy"], mb["tokens"], mb["attention_mask"])
            return sft_nll_loss(logp, mb["mask"], num_tokens=totals["num_tokens"])

        return make_update_step(loss_fn, opt, microbatches=2), state, batch, axes

    if name == "dpo":
        ca = _right_padded_mask(rng, ROWS, LENGTH, 4)
        ra = _right_padded_mask(rng, ROWS, LENGTH, 4)
        batch = dict(
            chosen=_tokens(rng, ROWS, LENGTH, v),
            chosen_attn=ca,
            rejected=_tokens(rng, ROWS, LENGTH, v),
            rejected_attn=ra,
            ref_chosen=(-40.0 + rng.normal(size=ROWS)).astype(np.float32),
            ref_rejected=(-40.0 + rng.normal(size=ROWS)).astype(np.float32),
        )

        def loss_fn(p, mb, key, totals):
            del key, totals
            # Chosen and rejected rows in one forward pass, as the trainers do.
            tokens = jnp.concatenate([mb["chosen"], mb["rejected"]])
            attn = jnp.concatenate([mb["chosen_attn"], mb["rejected_attn"]])
            logp = target_logprobs(model, p["policy"], tokens, attn)
            seq = jnp.sum(logp * attn[:, 1:], axis=-1)  # [2B]
            chosen, rejected = jnp.split(seq, 2)
            return dpo_sigmoid_loss(
                chosen, rejected, mb["ref_chosen"], mb["ref_rejected"], beta=0.1
            )

        return make_update_step(loss_fn, opt), state, batch, axes

    if name == "rm":
        batch = dict(
            chosen=_tokens(rng, ROWS, LENGTH, v),
            chosen_attn=_right_padded_mask(rng, ROWS, LENGTH, 4),
            rejected=_tokens(rng, ROWS, LENGTH, v),
            rejected_attn=_right_padded_mask(rng, ROWS, LENGTH, 4),
        )

        def loss_fn(p, mb, key, totals):
            del key, totals
            tokens = jnp.concatenate([mb["chosen"], mb["rejected"]])
            attn = jnp.concatenate([mb["chosen_attn"], mb["rejected_attn"]])
            scores = model.apply({"params": p["policy"]}, tokens, attn)  # [2B, T]
            last = models.gather_positions(scores, models.last_token_positions(attn))
            r_w, r_l = jnp.split(last, 2)
            return bt_pairwise_loss(r_w, r_l, center_coef=0.01)

        return make_update_step(loss_fn, opt), state, batch, axes

    if name == "grpo":
        prompt_len = 4
        prompt_mask = np.ones((ROWS, prompt_len), np.int32)
        prompt_mask[::3, 0] = 0  # some left padding
        mask = _right_padded_mask(rng, ROWS, LENGTH - prompt_len, 2)
        batch = dict(
            prompt_tokens=_tokens(rng, ROWS, prompt_len, v),
            prompt_mask=prompt_mask,
            tokens=_tokens(rng, ROWS, LENGTH - prompt_len, v),
            mask=mask,
            rewards=rng.integers(0, 2, size=ROWS).astype(np.float32),
        )
        # Behaviour-policy log-probs: the initial policy's, perturbed so that the
        # clip is active on some tokens.
        logp0 = np.asarray(jax.jit(lambda p, b: _completion_logprobs(model, p, b))(params, batch))
        noise = rng.normal(scale=0.3, size=logp0.shape)
        batch["old_logprobs"] = ((logp0 + noise) * mask).astype(np.float32)

        def loss_fn(p, mb, key, totals):
            del key
            logp = _completion_logprobs(model, p["policy"], mb)
            adv = grpo_group_norm(mb["rewards"], group_size=GROUP)
            adv = broadcast_to_tokens(adv, mb["mask"])
            return ppo_clip_loss(
                logp,
                mb["old_logprobs"],
                adv,
                mb["mask"].astype(jnp.float32),
                clip_low=0.2,
                clip_high=0.28,
                num_tokens=totals["num_tokens"],
            )

        return make_update_step(loss_fn, opt), state, batch, axes

    raise ValueError(f"unknown case {name!r}; known: {', '.join(CASES)}")


def _completion_logprobs(model, params, mb):
    """log-probs [B, T] of completion tokens after a left-padded prompt."""
    tokens = jnp.concatenate([mb["prompt_tokens"], mb["tokens"]], axis=1)
    attn = jnp.concatenate([mb["prompt_mask"], mb["mask"]], axis=1)
    logp = target_logprobs(model, params, tokens, attn)  # [B, L+T-1]
    length = mb["prompt_tokens"].shape[1]
    return logp[:, length - 1 :]
