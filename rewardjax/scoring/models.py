"""Trained reward models as scorers: outcome, process, implicit process, ensembles.

Host-facing, jit inside, fixed-size chunks so a run compiles a few times only:

  orm = OutcomeRewardModel.load("/runs/rm/hf", tokenizer="char")
  orm.scores(prompts, completions)                 # [B] Bradley-Terry scores r(x, y)
  prm = ProcessRewardModel.load("/runs/prm/hf", tokenizer="char")
  prm.step_scores(prompts, steps)                  # B arrays of p_s = σ(z_s)
  iprm = ImplicitProcessRewardModel.load("/runs/iprm/hf", reference="/runs/sft/hf", beta=0.05)
  iprm.step_scores(prompts, steps)                 # B arrays of σ(Q_s), Q_s = Σ_{t ≤ end_s} β·q_t
  ens = RewardModelEnsemble([orm_a, orm_b, orm_c], mode="mean_minus_std", std_coef=1.0)

Steps are split and checked by `rewardjax.data.steps`. The ORM reads its
scalar head at the last real token (the EOS); the PRM reads its per-token head
at each step's last token (the separator, the EOS for the last step). The
forward passes (`reward_scores`, `last_token_scores`, `prm_step_logits`) are
shared with the rm and prm kinds of the offline trainer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import models
from rewardjax.data.steps import check_separator_token, check_steps, split_steps
from rewardjax.data.tokenize import encode_completions, encode_steps
from rewardjax.models import forward
from rewardjax.models.transformer import Decoder, ScalarHead
from rewardjax.objectives.reward_modeling import (
    gather_at_steps,
    implicit_process_rewards,
    rm_ensemble,
)
from rewardjax.sampling import DEFAULT_BUCKETS, bucket
from rewardjax.tokenizers import Tokenizer, check_vocab, load_tokenizer

Array = jax.Array

__all__ = [
    "ENSEMBLE_MODES",
    "ImplicitProcessRewardModel",
    "LastTokenSelfScorer",
    "OutcomeRewardModel",
    "ProcessRewardModel",
    "RewardModelEnsemble",
    "check_reference_vocab",
    "last_token_scores",
    "load_scorer_params",
    "load_scorer_tokenizer",
    "prm_step_logits",
    "reward_scores",
]

ENSEMBLE_MODES = ("mean", "median", "min", "mean_minus_std")


def reward_scores(
    model: Decoder,
    params,
    prompt_tokens: Array,  # [B, L] left-padded
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T] right-padded completion
    mask: Array,  # [B, T]
    *,
    head: str,
) -> Array:
    """A scalar head over [prompt | completion]: [B, L + T] float32, position j reads token j."""
    full_tokens = jnp.concatenate([prompt_tokens, tokens], axis=1)
    full_mask = jnp.concatenate(
        [prompt_mask.astype(jnp.int32), (mask > 0).astype(jnp.int32)], axis=1
    )
    hidden = model.apply({"params": params}, full_tokens, full_mask, method="hidden_states")
    return ScalarHead(model.config).apply({"params": params[f"{head}_head"]}, hidden)


def last_token_scores(
    model: Decoder, params, prompt_tokens, prompt_mask, tokens, mask, *, head: str = "reward"
) -> Array:
    """ORM scores [B]: the scalar head at each row's last real token (the EOS)."""
    values = reward_scores(model, params, prompt_tokens, prompt_mask, tokens, mask, head=head)
    full_mask = jnp.concatenate([prompt_mask, mask], axis=1).astype(jnp.int32)
    return models.gather_positions(values, models.last_token_positions(full_mask))


def prm_step_logits(
    model: Decoder,
    params,
    prompt_tokens: Array,  # [B, L]
    prompt_mask: Array,  # [B, L]
    tokens: Array,  # [B, T]
    mask: Array,  # [B, T]
    step_end: Array,  # [B, S] completion index of each step's last token
    *,
    head: str = "prm",
) -> Array:
    """PRM logits z_s [B, S] read at each step's last token."""
    values = reward_scores(model, params, prompt_tokens, prompt_mask, tokens, mask, head=head)
    completion = values[:, prompt_tokens.shape[1] :]
    return gather_at_steps(completion, step_end)


def load_scorer_tokenizer(spec: str | Tokenizer | None, path: str) -> Tokenizer:
    """A scorer's tokenizer: `spec` itself, the tokenizer it names, else the one saved at `path`."""
    if isinstance(spec, Tokenizer):
        return spec
    return load_tokenizer(spec or path)


def load_scorer_params(
    path: str, *, head: str, dtype: str = "float32"
) -> tuple[models.ModelConfig, dict]:
    """(ModelConfig, params) of an exported reward model; the wrong head type is an error.

    `head` is "reward" (ORM), "prm" (PRM) or "lm" (an implicit PRM or a policy).
    """
    try:
        config, params = models.load_hf(path, dtype=dtype, heads=(head,))
    except models.CheckpointError as e:
        kind = {"reward": "an outcome reward model", "prm": "a process reward model"}.get(
            head, "a causal LM"
        )
        raise models.CheckpointError(f"{path} is not {kind} ({e})") from None
    return config, jax.tree.map(jnp.asarray, params)


def check_reference_vocab(
    policy_config: models.ModelConfig, reference_config: models.ModelConfig, *, what: str
) -> None:
    """The log-ratio log π/π_ref needs one vocabulary: raises naming both embedding shapes."""
    if policy_config.vocab_size != reference_config.vocab_size:
        raise ValueError(
            f"{what}: embedding 'embed/embedding' is [{reference_config.vocab_size}, "
            f"{reference_config.hidden_size}] but the policy's is [{policy_config.vocab_size}, "
            f"{policy_config.hidden_size}]: the reference must share the policy's vocabulary"
        )


class _Chunked:
    """Runs a jitted scoring function over fixed-size row chunks with bucketed lengths."""

    def __init__(self, tokenizer: Tokenizer, *, batch_size: int, separator: str = "\n"):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.separator = separator
        self.add_bos = tokenizer.default_add_bos

    def _render(self, prompts: Sequence[str]) -> list[str]:
        # The tokenizer's prompt format (chat template, system prompt, suffix):
        # a scorer trained in a run with a `prompt` block reads prompts as it did.
        return [self.tokenizer.render_prompt(p) for p in prompts]

    def _lengths(self, prompts, completions_tokens: int) -> tuple[int, int]:
        longest = max(len(self.tokenizer.encode(p, add_bos=self.add_bos)) for p in prompts)
        return bucket(longest, DEFAULT_BUCKETS), bucket(completions_tokens, DEFAULT_BUCKETS)

    def _pad_rows(self, arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        n = next(iter(arrays.values())).shape[0]
        size = math.ceil(n / self.batch_size) * self.batch_size
        if size == n:
            return arrays, n
        return {
            k: np.concatenate([v, np.repeat(v[:1], size - n, axis=0)]) for k, v in arrays.items()
        }, n

    def encode_texts(
        self, prompts: Sequence[str], completions: Sequence[str]
    ) -> dict[str, np.ndarray]:
        prompts = self._render(prompts)
        longest = max(len(self.tokenizer.encode(c)) for c in completions) + 1
        p_len, c_len = self._lengths(prompts, longest)
        return encode_completions(
            self.tokenizer,
            list(prompts),
            list(completions),
            max_prompt_len=p_len,
            max_completion_len=c_len,
            add_bos=self.add_bos,
        )

    def encode_step_lists(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]]
    ) -> dict[str, np.ndarray]:
        check_steps(steps, self.separator)
        texts = [self.separator.join(s) for s in steps]
        longest = max(len(self.tokenizer.encode(t)) for t in texts) + 1
        prompts = self._render(prompts)
        p_len, c_len = self._lengths(prompts, longest)
        s_len = bucket(max(len(s) for s in steps), (4, 8, 16, 32, 64, 128, 256, 512))
        return encode_steps(
            self.tokenizer,
            list(prompts),
            [list(s) for s in steps],
            max_prompt_len=p_len,
            max_completion_len=c_len,
            max_steps=s_len,
            separator=self.separator,
            add_bos=self.add_bos,
        )

    def run(self, fn, params, arrays: dict[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
        padded, n = self._pad_rows({k: arrays[k] for k in keys})
        outs = []
        for start in range(0, padded[keys[0]].shape[0], self.batch_size):
            chunk = [jnp.asarray(padded[k][start : start + self.batch_size]) for k in keys]
            outs.append(np.asarray(fn(params, *chunk)))
        return np.concatenate(outs)[:n]


def _rows(values: np.ndarray, step_mask: np.ndarray) -> list[np.ndarray]:
    return [row[: int(m.sum())].astype(np.float64) for row, m in zip(values, step_mask)]


class OutcomeRewardModel:
    """A Bradley-Terry outcome reward model (scalar head "reward" at the last token).

    Args:
      config: the model's ModelConfig.
      params: its parameters (with `reward_head`).
      tokenizer: the tokenizer it was trained with.
      batch_size: rows per compiled forward.
    """

    head = "reward"

    def __init__(
        self, config: models.ModelConfig, params, tokenizer: Tokenizer, *, batch_size: int = 64
    ):
        check_vocab(tokenizer, config.vocab_size)
        self.config, self.params = config, params
        self._chunks = _Chunked(tokenizer, batch_size=batch_size)
        self._fn = jax.jit(
            functools.partial(last_token_scores, models.build(config), head=self.head)
        )

    @classmethod
    def load(cls, path: str, *, tokenizer: str | Tokenizer | None = None, batch_size: int = 64):
        """From an exported directory; `tokenizer` defaults to the directory's own."""
        config, params = load_scorer_params(path, head=cls.head)
        return cls(config, params, load_scorer_tokenizer(tokenizer, path), batch_size=batch_size)

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """[B] float32 scores r(x, y) (higher is better; σ(r_w − r_l) = P(y_w ≻ y_l))."""
        arrays = self._chunks.encode_texts(prompts, completions)
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
        return self._chunks.run(self._fn, self.params, arrays, keys).astype(np.float32)


class RewardModelEnsemble:
    """K outcome reward models aggregated per response (`rm_ensemble`).

    Args:
      members: the K reward models (any objects with `scores(prompts, completions)`).
      mode: "mean", "median", "min" or "mean_minus_std".
      std_coef: λ of mean − λ·std.
    """

    def __init__(self, members: Sequence[Any], *, mode: str = "mean", std_coef: float = 1.0):
        if not members:
            raise ValueError("an ensemble needs at least one reward model")
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble mode {mode!r}; known: {', '.join(ENSEMBLE_MODES)}")
        self.members, self.mode, self.std_coef = list(members), mode, std_coef

    def member_scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """[M, B] scores of every member."""
        return np.stack([m.scores(prompts, completions) for m in self.members])

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """[B] aggregated scores."""
        member = self.member_scores(prompts, completions)
        return np.asarray(rm_ensemble(jnp.asarray(member), mode=self.mode, std_coef=self.std_coef))


class ProcessRewardModel:
    """A process reward model: head "prm" read at each step's last token, p_s = σ(z_s).

    Args:
      config, params, tokenizer, batch_size: as `OutcomeRewardModel`.
      separator: the step separator the PRM was trained with.
    """

    head = "prm"

    def __init__(
        self,
        config: models.ModelConfig,
        params,
        tokenizer: Tokenizer,
        *,
        batch_size: int = 64,
        separator: str = "\n",
    ):
        check_vocab(tokenizer, config.vocab_size)
        check_separator_token(tokenizer, separator)
        self.config, self.params, self.separator = config, params, separator
        self._chunks = _Chunked(tokenizer, batch_size=batch_size, separator=separator)
        self._fn = jax.jit(functools.partial(prm_step_logits, models.build(config), head=self.head))

    @classmethod
    def load(
        cls,
        path: str,
        *,
        tokenizer: str | Tokenizer | None = None,
        batch_size: int = 64,
        separator: str = "\n",
    ):
        config, params = load_scorer_params(path, head=cls.head)
        return cls(
            config,
            params,
            load_scorer_tokenizer(tokenizer, path),
            batch_size=batch_size,
            separator=separator,
        )

    def step_logits(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """B arrays of logits z_s, one per step."""
        arrays = self._chunks.encode_step_lists(prompts, steps)
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask", "step_end")
        logits = self._chunks.run(self._fn, self.params, arrays, keys)
        return _rows(logits, arrays["step_mask"])

    def step_scores(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """B arrays of step-correctness probabilities p_s = σ(z_s)."""
        return [1.0 / (1.0 + np.exp(-z)) for z in self.step_logits(prompts, steps)]

    def step_rewards(self, prompts, steps) -> list[np.ndarray]:
        """The step rewards handed to credit rules: the probabilities p_s."""
        return self.step_scores(prompts, steps)


def _implicit_step_rewards(
    model: Decoder,
    ref_model: Decoder,
    params,
    ref_params,
    prompt_tokens,  # [B, L]
    prompt_mask,  # [B, L]
    tokens,  # [B, T]
    mask,  # [B, T]
    step_end,  # [B, S]
    step_mask,  # [B, S]
    *,
    beta: float,
) -> Array:
    """Step rewards [B, S] = Σ_{t ∈ step s} β·(log π_ψ(y_t) − log π_ref(y_t))."""
    logp, _ = forward.completion_logprobs(model, params, prompt_tokens, prompt_mask, tokens, mask)
    ref, _ = forward.completion_logprobs(
        ref_model, ref_params, prompt_tokens, prompt_mask, tokens, mask
    )
    return implicit_process_rewards(
        logp, ref, mask, beta=beta, step_end=step_end, step_mask=step_mask
    )


class ImplicitProcessRewardModel:
    """An implicit PRM: a causal LM ψ whose token rewards are β·log π_ψ/π_ref.

    Step reward r_s = Σ_{t ∈ step s} β·q_t; step score p_s = σ(Q_s) with
    Q_s = Σ_{k ≤ s} r_k, the model's estimate of the probability that the
    solution ends correct given its first s steps ("Free Process Rewards
    without Process Labels").

    Args:
      config: the LM's ModelConfig; params, ref_params: ψ and π_ref.
      tokenizer: shared by both; beta: β of training; batch_size, separator:
        as `ProcessRewardModel`; ref_config: π_ref's ModelConfig (default: config).
    """

    head = "lm"

    def __init__(
        self,
        config: models.ModelConfig,
        params,
        ref_params,
        tokenizer: Tokenizer,
        *,
        beta: float = 0.05,
        batch_size: int = 64,
        separator: str = "\n",
        ref_config: models.ModelConfig | None = None,
    ):
        check_vocab(tokenizer, config.vocab_size)
        check_separator_token(tokenizer, separator)
        ref_config = ref_config or config
        check_reference_vocab(config, ref_config, what="implicit PRM reference")
        self.config, self.params, self.ref_params = config, params, ref_params
        self.ref_config = ref_config
        self.beta, self.separator = beta, separator
        self._chunks = _Chunked(tokenizer, batch_size=batch_size, separator=separator)
        self._fn = jax.jit(
            functools.partial(
                _implicit_step_rewards, models.build(config), models.build(ref_config), beta=beta
            )
        )

    @classmethod
    def load(
        cls,
        path: str,
        *,
        reference: str,
        tokenizer: str | Tokenizer | None = None,
        beta: float = 0.05,
        batch_size: int = 64,
        separator: str = "\n",
    ):
        """ψ from `path`, π_ref from `reference` (both exported causal LMs)."""
        if not reference:
            raise ValueError(f"implicit PRM {path}: a reference model directory is required")
        config, params = load_scorer_params(path, head="lm")
        ref_config, ref_params = load_scorer_params(reference, head="lm")
        check_reference_vocab(config, ref_config, what=f"reference {reference}")
        return cls(
            config,
            params,
            ref_params,
            load_scorer_tokenizer(tokenizer, path),
            beta=beta,
            batch_size=batch_size,
            separator=separator,
            ref_config=ref_config,
        )

    def step_rewards(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """B arrays of step rewards β·Σ_{t ∈ s} q_t."""
        arrays = self._chunks.encode_step_lists(prompts, steps)
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask", "step_end", "step_mask")
        fn = lambda params, *xs: self._fn(params[0], params[1], *xs)  # noqa: E731
        rewards = self._chunks.run(fn, (self.params, self.ref_params), arrays, keys)
        return _rows(rewards, arrays["step_mask"])

    def step_scores(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """B arrays of σ(Q_s)."""
        return [1.0 / (1.0 + np.exp(-np.cumsum(r))) for r in self.step_rewards(prompts, steps)]

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """[B] outcome logits Q = β·Σ_t q_t of whole completions."""
        steps = [split_steps(c, self.separator) for c in completions]
        return np.array([r.sum() for r in self.step_rewards(prompts, steps)], np.float32)


def laser_token_id(tokenizer: Tokenizer, text: str, *, where: str = "laser.token") -> int:
    """LaSeR's t*: `text` as its one token id, or the tokenizer's BOS when `text` is empty.

    `where` names the setting in errors (the `laser` block's `laser.token`).
    """
    if not text:
        if tokenizer.bos_id is None:
            raise ValueError(
                f"{where} is empty and tokenizer {tokenizer.source} has no BOS: "
                "name a token (text that encodes to one id)"
            )
        return int(tokenizer.bos_id)
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise ValueError(f"{where}={text!r} encodes to {len(ids)} tokens {ids}, not one")
    return int(ids[0])


class LastTokenSelfScorer:
    """A policy's own LaSeR self-reward: β·(log π(t* | x, y) − c), after the last token.

    The policy is the scorer: t* is read at the position after the
    completion's EOS (`forward.completion_logprobs_and_next`, temperature 1).
    A policy trained with the `laser` block fits this score to the verifier
    reward, so it weighs candidates in `confidence_weighted_vote`.

    Args:
      config, params: the policy; tokenizer: its tokenizer.
      token: t*'s id (the `laser.token` of training, by default the BOS).
      kl_coef: β of training (`laser.kl_coef`).
      ref_constant: c of training (the `laser/ref_constant` metric the run logs).
      batch_size: rows per compiled forward.

    Source: "LaSeR: Reinforcement Learning with Last-Token Self-Rewarding".
    """

    head = "lm"

    def __init__(
        self,
        config: models.ModelConfig,
        params,
        tokenizer: Tokenizer,
        *,
        token: int,
        kl_coef: float,
        ref_constant: float,
        batch_size: int = 64,
    ):
        check_vocab(tokenizer, config.vocab_size)
        if not 0 <= token < config.vocab_size:
            raise ValueError(f"t* = {token} is outside the vocabulary [0, {config.vocab_size})")
        self.config, self.params = config, params
        self.kl_coef, self.ref_constant = float(kl_coef), float(ref_constant)
        self._chunks = _Chunked(tokenizer, batch_size=batch_size)
        self._fn = jax.jit(
            lambda params, *xs: forward.completion_logprobs_and_next(
                models.build(config), params, *xs, next_token=token
            )[2]
        )

    @classmethod
    def load(
        cls,
        path: str,
        *,
        kl_coef: float,
        ref_constant: float,
        token: int | None = None,
        tokenizer: str | Tokenizer | None = None,
        batch_size: int = 64,
    ):
        """From an exported policy directory; t* defaults to its tokenizer's BOS."""
        config, params = load_scorer_params(path, head="lm")
        tok = load_scorer_tokenizer(tokenizer, path)
        if token is None:
            if tok.bos_id is None:
                raise ValueError(f"tokenizer {tok.source} has no BOS: name t* (token=)")
            token = tok.bos_id
        return cls(
            config,
            params,
            tok,
            token=token,
            kl_coef=kl_coef,
            ref_constant=ref_constant,
            batch_size=batch_size,
        )

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """[B] self-rewards β·(log π(t*) − c) (≈ the verifier reward once trained)."""
        arrays = self._chunks.encode_texts(prompts, completions)
        keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
        logprob = self._chunks.run(self._fn, self.params, arrays, keys).astype(np.float64)
        return (self.kl_coef * (logprob - self.ref_constant)).astype(np.float32)
