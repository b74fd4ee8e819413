"""Rollouts on the host side: encode prompts, sample, decode, and evaluate a policy.

These pieces are shared by the RL loop, the quickstart and `rewardjax.evaluation.checkpoints`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from rewardjax import parallel, sampling
from rewardjax.data.tasks.base import Problem
from rewardjax.models.config import ModelConfig
from rewardjax.tokenizers import Tokenizer
from rewardjax.types import SampleOutput


def encode_prompts(
    tokenizer: Tokenizer,
    prompts: Sequence,
    *,
    buckets=sampling.DEFAULT_BUCKETS,
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (tokens [P, L], mask [P, L]) of policy prompts, L rounded up to a bucket.

    Each prompt is a string or a record with `prompt` and `fields` (a Problem,
    a Demonstration, a preference pair), whose `fields["prompt_messages"]` a
    chat template renders; the tokenizer's `prompt_format` writes them
    (`Tokenizer.encode_prompt`: chat template, system prompt, suffix, and the
    checkpoint's own BOS convention).
    """
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        raise ValueError(f"prompt {empty[0]} encodes to no tokens: {prompts[empty[0]]!r}")
    length = sampling.bucket(max(len(x) for x in ids), buckets)
    return sampling.pad_prompts(ids, pad_id=tokenizer.pad_id, length=length)


def encode_prompt(tokenizer: Tokenizer, prompt) -> list[int]:
    """Ids of one policy prompt: a string, or a record with `prompt` (and `fields`)."""
    if isinstance(prompt, str):
        return tokenizer.encode_prompt(prompt)
    return tokenizer.encode_prompt(prompt.prompt, prompt_messages(prompt))


def prompt_messages(record) -> list | None:
    """The conversation a record's prompt was flattened from (`fields["prompt_messages"]`)."""
    return (getattr(record, "fields", None) or {}).get("prompt_messages")


def decode_completions(tokenizer: Tokenizer, tokens, lengths) -> list[str]:
    """Completion texts of tokens [B, T], cut at lengths [B], special tokens removed."""
    tokens = np.asarray(tokens)
    lengths = np.asarray(lengths)
    return [tokenizer.decode(tokens[i, : lengths[i]].tolist()) for i in range(tokens.shape[0])]


def truncated_rows(out: SampleOutput, stop_ids: Sequence[int]) -> np.ndarray:
    """[B] bool: the row used its whole budget without emitting a stop token."""
    tokens = np.asarray(out.tokens)
    lengths = np.asarray(out.lengths)
    last = tokens[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
    return (lengths == tokens.shape[1]) & ~np.isin(last, np.asarray(list(stop_ids)))


@dataclasses.dataclass
class EvalResult:
    """Per-problem outcomes of sampling n completions for each of P problems."""

    correct: np.ndarray  # [P, n] 0/1
    answers: list[list[str | None]]  # [P][n]
    lengths: np.ndarray  # [P, n] completion tokens
    truncated: np.ndarray  # [P, n]
    texts: list[list[str]]  # [P][n]

    def summary(self, ks: Sequence[int] | None = None) -> dict[str, float]:
        """pass@k (unbiased), maj@k, avg@n and length statistics over all samples."""
        from rewardjax.evaluation import lengths, passk

        n = self.correct.shape[1]
        num_correct = self.correct.sum(axis=1)
        ks = ks or [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n]
        out = {f"pass@{k}": passk.pass_at_k(n, num_correct, k=k) for k in ks}
        for k in ks:
            if k > 1:
                out[f"maj@{k}"] = passk.maj_at_k(self.answers, self.correct, k=k, num_subsets=20)
        out["avg@n"] = float(self.correct.mean())
        out["mean_length"] = float(self.lengths.mean())
        out["truncation_rate"] = float(self.truncated.mean())
        stats = lengths.length_stats(
            self.lengths.reshape(-1), self.correct.reshape(-1), truncated=self.truncated.reshape(-1)
        )
        # A group with no response (no correct sample, say) has no length: left out, not nan.
        out.update({k: v for k, v in stats.items() if k not in out and np.isfinite(v)})
        return out


def sample_and_grade(
    config: ModelConfig,
    params,
    tokenizer: Tokenizer,
    task,
    problems: Sequence[Problem],
    *,
    rng: jax.Array,
    n: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    batch_prompts: int = 64,
    progress: bool = False,
) -> EvalResult:
    """Samples n completions per problem in fixed-size chunks and grades them."""
    problems = list(problems)
    p_total = len(problems)
    correct = np.zeros((p_total, n), np.float32)
    lengths = np.zeros((p_total, n), np.int32)
    truncated = np.zeros((p_total, n), bool)
    answers: list[list[str | None]] = [[None] * n for _ in range(p_total)]
    texts: list[list[str]] = [[""] * n for _ in range(p_total)]
    chunks = range(0, p_total, batch_prompts)
    if progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"eval n={n}", leave=False)
    for start in chunks:
        chunk = problems[start : start + batch_prompts]
        # Pad the last chunk with copies so every call has the same shape (one compile).
        padded = chunk + [chunk[-1]] * (batch_prompts - len(chunk))
        tokens, mask = encode_prompts(tokenizer, padded)
        rng, key = jax.random.split(rng)
        out = sampling.generate(
            config,
            params,
            (tokens, mask),
            rng=key,
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            eos_ids=tokenizer.stop_ids,
            pad_id=tokenizer.pad_id,
        )
        # Every process reads the whole output (a collective on a multi-host mesh).
        out = parallel.gather_to_host(out)
        decoded = decode_completions(tokenizer, out.tokens, out.lengths)
        trunc = truncated_rows(out, tokenizer.stop_ids)
        out_lengths = np.asarray(out.lengths)
        for i, problem in enumerate(chunk):
            for g in range(n):
                row = i * n + g
                grade = task.grade(problem, decoded[row])
                correct[start + i, g] = float(grade.correct)
                answers[start + i][g] = grade.answer
                texts[start + i][g] = decoded[row]
                lengths[start + i, g] = out_lengths[row]
                truncated[start + i, g] = trunc[row]
    return EvalResult(correct, answers, lengths, truncated, texts)


def evaluate_policy(
    eval_cfg,
    model_config: ModelConfig,
    params,
    tokenizer: Tokenizer,
    task,
    problems: Sequence[Problem],
    *,
    rng: jax.Array,
    n: int | None = None,
) -> dict[str, float]:
    """Held-out pass@k etc. (`EvalResult.summary`) under a config's `eval` block.

    Reads eval.{num_samples, max_new_tokens, temperature, batch_prompts}, the
    keys every trainer shares; `n` overrides num_samples.
    """
    result = sample_and_grade(
        model_config,
        params,
        tokenizer,
        task,
        problems,
        rng=rng,
        n=n or eval_cfg.num_samples,
        max_new_tokens=eval_cfg.max_new_tokens,
        temperature=eval_cfg.temperature,
        batch_prompts=eval_cfg.batch_prompts,
    )
    return result.summary()
