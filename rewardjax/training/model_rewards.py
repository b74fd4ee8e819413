"""Trained reward models as scorers, and as reward sources of the RL loop.

Scorers (host-facing, jit inside, fixed-size chunks so a run compiles a few
times only):

  orm = OutcomeRewardModel.load("/runs/rm/hf", tokenizer="char")
  orm.scores(prompts, completions)                 # [B] Bradley-Terry scores r(x, y)
  prm = ProcessRewardModel.load("/runs/prm/hf", tokenizer="char")
  prm.step_scores(prompts, steps)                  # B arrays of p_s = σ(z_s)
  iprm = ImplicitProcessRewardModel.load("/runs/iprm/hf", reference="/runs/sft/hf", beta=0.05)
  iprm.step_scores(prompts, steps)                 # B arrays of σ(Q_s), Q_s = Σ_{t ≤ end_s} β·q_t
  ens = RewardModelEnsemble([orm_a, orm_b, orm_c], mode="mean_minus_std", std_coef=1.0)

A solution's steps are its text split at `separator` ("\\n" by default); a step
must not contain the separator. The ORM reads its scalar head at the last
real token (the EOS); the PRM reads its per-token head at each step's last
token (the separator, the EOS for the last step).

RL reward sources (`MODEL_REWARDS`, chosen in `config.rewards.sources` by key
or `name`, see `rewardjax.training.rewarding`):

  orm_reward            r(x, y) of one ORM (raw score or its sigmoid)
  orm_ensemble_reward   K ORMs aggregated by mean / median / min / mean − λ·std
  prm_reward            PRM step scores aggregated by min / last / prod / mean into
                        one score, or turned into step rewards by a credit rule
                        (sum_form, min_form, clip, delta) placed at step-end tokens
  implicit_prm_reward   the same for an implicit PRM's σ(Q_s) (aggregation) or its
                        step rewards β·Σ_{t ∈ s} q_t (credit)
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
from rewardjax.data.tokenize import encode_completions, encode_steps
from rewardjax.inference.selection import PRM_AGGREGATIONS, prm_aggregate
from rewardjax.models.transformer import Decoder, ScalarHead
from rewardjax.objectives.credit import (
    clip_delta_bounded,
    min_form_returns,
    returns_to_step_rewards,
    step_to_token,
)
from rewardjax.objectives.reward_modeling import (
    gather_at_steps,
    implicit_process_rewards,
    rm_ensemble,
)
from rewardjax.registry import MODEL_REWARDS
from rewardjax.sampling import DEFAULT_BUCKETS, bucket
from rewardjax.tokenizers import Tokenizer, check_vocab, load_tokenizer
from rewardjax.training import forward

Array = jax.Array

__all__ = [
    "CREDIT_MODES",
    "ENSEMBLE_MODES",
    "ImplicitProcessRewardModel",
    "OutcomeRewardModel",
    "ProcessRewardModel",
    "RewardModelEnsemble",
    "check_reference_vocab",
    "check_steps",
    "load_scorer_params",
    "policy_step_ends",
    "prm_step_logits",
    "reward_scores",
    "split_steps",
]

CREDIT_MODES = ("none", "sum_form", "min_form", "clip", "delta")
ENSEMBLE_MODES = ("mean", "median", "min", "mean_minus_std")


# --------------------------------------------------------------------------- steps


def split_steps(text: str, separator: str = "\n") -> list[str]:
    """A completion's steps: its text split at `separator` (surrounding blank text removed)."""
    return text.strip().split(separator)


def check_steps(steps: Sequence[Sequence[str]], separator: str, *, where: str = "row") -> None:
    """Raises a one-line error for a step list a PRM cannot read.

    A step that contains the separator means the solution was not split at its
    separators (the PRM would see more step ends than there are labels).
    """
    if not separator:
        raise ValueError("the step separator is empty: a PRM reads its score at separator tokens")
    for i, row in enumerate(steps):
        if isinstance(row, str) or not row:
            raise ValueError(f"{where} {i}: steps must be a non-empty list of strings")
        for k, step in enumerate(row):
            if separator in step:
                raise ValueError(
                    f"{where} {i}: step {k} contains the step separator {separator!r} "
                    f"(missing split: one label per separated step), text {step[:40]!r}"
                )


def _check_separator_token(tokenizer: Tokenizer, separator: str) -> None:
    """The separator must end a token when appended to a step (encode_steps relies on it)."""
    ids = tokenizer.encode("1" + separator)
    if not ids or separator not in tokenizer.decode(ids[-1:], skip_special=False):
        raise ValueError(
            f"tokenizer {tokenizer.source}: the step separator {separator!r} does not end in "
            "its own token, so step ends cannot be located"
        )


def policy_step_ends(
    tokenizer: Tokenizer,
    tokens: np.ndarray,  # [B, T] completion tokens of the policy
    lengths: np.ndarray,  # [B] completion lengths (EOS included)
    num_steps: Sequence[int],  # [B] steps scored for each completion
    separator: str,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Token index of each step's last token in the policy's own tokens.

    The steps are those of `split_steps(decoded text)`. Step k ends at the
    token holding the k-th separator of the stripped text; the last step of
    the text ends at the last completion token (the EOS when present).

    Returns:
      step_end: [B, max_steps] int32; step_mask: [B, max_steps] float32.
    """
    tokens = np.asarray(tokens)
    b = tokens.shape[0]
    step_end = np.zeros((b, max_steps), np.int32)
    step_mask = np.zeros((b, max_steps), np.float32)
    pieces: dict[int, str] = {}
    for i in range(b):
        length = int(lengths[i])
        s = min(int(num_steps[i]), max_steps)
        if length == 0 or s == 0:
            continue
        row = [int(t) for t in tokens[i, :length]]
        for tok in row:
            if tok not in pieces:
                pieces[tok] = tokenizer.decode([tok])
        text = "".join(pieces[tok] for tok in row)
        token_end = np.cumsum([len(pieces[tok]) for tok in row])  # exclusive char end per token
        lead = len(text) - len(text.lstrip())
        stripped = text.strip()
        seps, at = [], stripped.find(separator)
        while at >= 0 and len(seps) < s:
            seps.append(lead + at)
            at = stripped.find(separator, at + len(separator))
        ends = [int(np.searchsorted(token_end, c, side="right")) for c in seps]
        ends = [min(e, length - 1) for e in ends]
        # The last scored step ends at its separator when later steps were cut off.
        ends = ends[:s] if len(ends) >= s else [*ends, length - 1]
        step_end[i, : len(ends)] = ends
        step_mask[i, : len(ends)] = 1.0
    return step_end, step_mask


# --------------------------------------------------------------------------- forward


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


# --------------------------------------------------------------------------- loading


def _tokenizer(spec: str | Tokenizer | None, path: str) -> Tokenizer:
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
        return cls(config, params, _tokenizer(tokenizer, path), batch_size=batch_size)

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
        _check_separator_token(tokenizer, separator)
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
            config, params, _tokenizer(tokenizer, path), batch_size=batch_size, separator=separator
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
        _check_separator_token(tokenizer, separator)
        ref_config = ref_config or config
        check_reference_vocab(config, ref_config, what="implicit PRM reference")
        self.config, self.params, self.ref_params = config, params, ref_params
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
            _tokenizer(tokenizer, path),
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


# --------------------------------------------------------------------------- RL reward sources


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


class ModelRewardSource:
    """One model-based reward source of the RL loop.

    `__call__(prompts, completions, *, tokens, lengths)` returns
    (scores [B] or None, token_rewards [B, T] or None, stats).
    """

    token_level = False

    def __call__(self, prompts, completions, *, tokens=None, lengths=None):
        raise NotImplementedError


class _OutcomeSource(ModelRewardSource):
    def __init__(self, scorer, *, transform: str):
        if transform not in ("raw", "sigmoid"):
            raise ValueError(f"transform={transform!r}; known: raw, sigmoid")
        self.scorer, self.transform = scorer, transform

    def __call__(self, prompts, completions, *, tokens=None, lengths=None):
        scores = np.asarray(self.scorer.scores(prompts, completions), np.float64)
        if self.transform == "sigmoid":
            scores = _sigmoid(scores)
        return scores, None, {"mean": float(scores.mean())}


@MODEL_REWARDS.register("orm_reward")
def orm_reward(
    *,
    path: str,
    tokenizer: str = "",
    transform: str = "raw",
    batch_size: int = 64,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """Outcome reward r(x, y) of a trained Bradley-Terry ORM.

    Args:
      path: exported ORM directory (head "reward"; another head is an error).
      tokenizer: its tokenizer spec; empty: the policy's.
      transform: "raw" (the BT logit) or "sigmoid" (in (0, 1)).
      batch_size: rows per forward.
      policy_tokenizer: supplied by the reward computer.
    """
    tok = _tokenizer(tokenizer or policy_tokenizer, path)
    return _OutcomeSource(
        OutcomeRewardModel.load(path, tokenizer=tok, batch_size=batch_size), transform=transform
    )


@MODEL_REWARDS.register("orm_ensemble_reward")
def orm_ensemble_reward(
    *,
    paths: Sequence[str],
    mode: str = "mean",
    std_coef: float = 1.0,
    tokenizer: str = "",
    transform: str = "raw",
    batch_size: int = 64,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """An ensemble of K ORMs: mean / median / min / mean − λ·std of their scores.

    Source: "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking".

    Args:
      paths: K exported ORM directories.
      mode: aggregation (`rm_ensemble`); std_coef: λ.
      tokenizer, transform, batch_size, policy_tokenizer: as `orm_reward`
        (the transform applies after aggregation).
    """
    if isinstance(paths, str) or not paths:
        raise ValueError(f"orm_ensemble_reward: paths must be a non-empty list, got {paths!r}")
    members = [
        OutcomeRewardModel.load(
            p, tokenizer=_tokenizer(tokenizer or policy_tokenizer, p), batch_size=batch_size
        )
        for p in paths
    ]
    return _OutcomeSource(
        RewardModelEnsemble(members, mode=mode, std_coef=std_coef), transform=transform
    )


class _ProcessSource(ModelRewardSource):
    def __init__(
        self,
        scorer,
        *,
        aggregation: str,
        credit: str,
        threshold: float | None,
        separator: str,
        max_steps: int,
        policy_tokenizer: Tokenizer | None,
    ):
        if credit not in CREDIT_MODES:
            raise ValueError(f"credit={credit!r}; known: {', '.join(CREDIT_MODES)}")
        if credit == "none" and aggregation not in PRM_AGGREGATIONS:
            raise ValueError(f"aggregation={aggregation!r}; known: {', '.join(PRM_AGGREGATIONS)}")
        if credit != "none" and policy_tokenizer is None:
            raise ValueError(
                f"credit={credit!r} places step rewards on policy tokens: needs the policy tokenizer"
            )
        self.scorer, self.aggregation, self.credit = scorer, aggregation, credit
        self.threshold, self.separator, self.max_steps = threshold, separator, max_steps
        self.policy_tokenizer = policy_tokenizer
        self.token_level = credit != "none"

    def __call__(self, prompts, completions, *, tokens=None, lengths=None):
        steps = [split_steps(c, self.separator)[: self.max_steps] for c in completions]
        if self.credit == "none":
            scores = prm_aggregate(self.scorer.step_scores(prompts, steps), method=self.aggregation)
            return np.asarray(scores, np.float64), None, {"mean": float(np.mean(scores))}
        if tokens is None or lengths is None:
            raise ValueError(f"credit={self.credit!r} needs the completion tokens and lengths")
        rows = self.scorer.step_rewards(prompts, steps)
        s = max(len(r) for r in rows)
        p = np.zeros((len(rows), s), np.float32)
        for i, r in enumerate(rows):
            p[i, : len(r)] = r
        step_end, step_mask = policy_step_ends(
            self.policy_tokenizer, tokens, lengths, [len(r) for r in rows], self.separator, s
        )
        p, sm = jnp.asarray(p), jnp.asarray(step_mask)
        if self.credit == "sum_form":
            step_rewards = p * sm
        elif self.credit == "min_form":
            step_rewards = returns_to_step_rewards(min_form_returns(p, sm), sm)
        else:
            step_rewards = clip_delta_bounded(p, sm, mode=self.credit, threshold=self.threshold)
        t = np.asarray(tokens).shape[1]
        mask = (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
        token_rewards = step_to_token(step_rewards, jnp.asarray(step_end), sm, jnp.asarray(mask))
        token_rewards = np.asarray(token_rewards, np.float32)
        stats = {
            "step_reward_mean": float(
                np.sum(np.asarray(step_rewards)) / max(float(step_mask.sum()), 1.0)
            ),
            "total_mean": float(token_rewards.sum(axis=1).mean()),
        }
        return None, token_rewards, stats


@MODEL_REWARDS.register("prm_reward")
def prm_reward(
    *,
    path: str,
    aggregation: str = "min",
    credit: str = "none",
    threshold: float | None = None,
    tokenizer: str = "",
    separator: str = "\n",
    max_steps: int = 64,
    batch_size: int = 64,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """Process rewards from a trained PRM: one aggregated score, or step rewards on tokens.

      credit = "none":     r = agg_s p_s,  agg ∈ {min, last, prod, mean}
      credit = "sum_form": step reward p_s at each step end (reward-to-go: Σ_{k≥s} p_k)
      credit = "min_form": step rewards whose reward-to-go is min_{k≥s} p_k (PURE)
      credit = "clip":     min(p_s − η, 0);   credit = "delta": p_s − p_{s+1}, p_S

    Token-level credit needs an advantage estimator that reads token rewards
    (e.g. `reinforce_pp`, `gae`, `token_reward_returns`).

    Sources: "Stop Summation: Min-Form Credit Assignment Is All Process Reward
    Model Needs for Reasoning"; "On Designing Effective RL Reward at Training
    Time for LLM Reasoning" (Clip, Delta); "The Lessons of Developing Process
    Reward Models in Mathematical Reasoning" (aggregation).

    Args:
      path: exported PRM directory (head "prm").
      aggregation: response score for credit = "none".
      credit: "none", "sum_form", "min_form", "clip" or "delta".
      threshold: η of clip (None: the batch mean step score).
      tokenizer: the PRM's tokenizer spec; empty: the policy's.
      separator: step separator; max_steps: steps scored per completion.
      batch_size: rows per forward; policy_tokenizer: supplied by the reward computer.
    """
    tok = _tokenizer(tokenizer or policy_tokenizer, path)
    scorer = ProcessRewardModel.load(
        path, tokenizer=tok, batch_size=batch_size, separator=separator
    )
    return _ProcessSource(
        scorer,
        aggregation=aggregation,
        credit=credit,
        threshold=threshold,
        separator=separator,
        max_steps=max_steps,
        policy_tokenizer=policy_tokenizer,
    )


@MODEL_REWARDS.register("implicit_prm_reward")
def implicit_prm_reward(
    *,
    path: str,
    reference: str,
    beta: float = 0.05,
    aggregation: str = "last",
    credit: str = "none",
    threshold: float | None = None,
    tokenizer: str = "",
    separator: str = "\n",
    max_steps: int = 64,
    batch_size: int = 64,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """Process rewards from an implicit PRM (β·log π_ψ/π_ref), as `prm_reward`.

    With credit = "none" the step scores σ(Q_s) are aggregated ("last" is
    σ(Q) of the whole response); otherwise the step rewards β·Σ_{t ∈ s} q_t go
    through the credit rule and onto the step-end tokens.

    Source: "Free Process Rewards without Process Labels"; "Process
    Reinforcement through Implicit Rewards" (PRIME).

    Args:
      path: exported implicit PRM (a causal LM); reference: π_ref directory.
      beta: β it was trained with.
      aggregation, credit, threshold, tokenizer, separator, max_steps,
      batch_size, policy_tokenizer: as `prm_reward`.
    """
    tok = _tokenizer(tokenizer or policy_tokenizer, path)
    scorer = ImplicitProcessRewardModel.load(
        path,
        reference=reference,
        tokenizer=tok,
        beta=beta,
        batch_size=batch_size,
        separator=separator,
    )
    return _ProcessSource(
        scorer,
        aggregation=aggregation,
        credit=credit,
        threshold=threshold,
        separator=separator,
        max_steps=max_steps,
        policy_tokenizer=policy_tokenizer,
    )
