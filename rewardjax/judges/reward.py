"""A frozen generative judge as a reward source of the RL loop (`MODEL_REWARDS`).

  c.rewards.sources = {
      "generative_judge_reward": dict(weight=1.0, kwargs=dict(path="/tmp/judge/hf")),
  }

Each rollout (prompt x, completion y) becomes the pointwise judge prompt of
`rewardjax.judges.formats`; the reward is P("Yes") read from one forward pass
of the judge (mode "p_yes", RewardDance), or the vote of K sampled verdicts
(mode "vote", DeepSeek-GRM: majority or mean, a reply that does not parse
scored by `on_failure`). The judge's cost is logged with its scores: seconds
and judge prompt tokens per call, and the parse-failure share of the votes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import numpy as np

from rewardjax.judges import formats, scoring
from rewardjax.registry import MODEL_REWARDS
from rewardjax.scoring.models import load_scorer_params, load_scorer_tokenizer
from rewardjax.scoring.sources import ModelRewardSource
from rewardjax.tokenizers import Tokenizer

MODES = ("p_yes", "vote")


class GenerativeJudgeSource(ModelRewardSource):
    """Pointwise verdicts of a frozen judge on the rollouts (see the module docstring)."""

    def __init__(
        self,
        config,
        params,
        tokenizer: Tokenizer,
        *,
        mode: str,
        rationale: bool,
        num_samples: int,
        max_new_tokens: int,
        temperature: float,
        aggregation: str,
        on_failure: str | float,
        batch_size: int,
        seed: int,
    ):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; known: {', '.join(MODES)}")
        if mode == "p_yes" and rationale:
            raise ValueError(
                "mode='p_yes' reads the verdict right after the prompt; a judge that writes a "
                "rationale first needs mode='vote'"
            )
        if batch_size < 1 or num_samples < 1:
            raise ValueError(f"batch_size={batch_size} and num_samples={num_samples} must be >= 1")
        self.config, self.params, self.tokenizer = config, params, tokenizer
        self.mode, self.rationale = mode, rationale
        self.num_samples, self.max_new_tokens = num_samples, max_new_tokens
        self.temperature, self.aggregation, self.on_failure = temperature, aggregation, on_failure
        self.batch_size = batch_size
        self._key = jax.random.key(seed)

    def _chunks(self, prompts: Sequence[str]):
        """Fixed-size chunks (the last one padded with copies): one compile per length bucket."""
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            yield chunk + [chunk[-1]] * (self.batch_size - len(chunk)), len(chunk)

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """[B] judge scores in [0, 1] (the scorer interface of test-time selection)."""
        return self(prompts, completions)[0]

    def __call__(self, prompts, completions, *, tokens=None, lengths=None, problems=None):
        start = time.perf_counter()
        judge_prompts = [
            formats.pointwise_prompt(p, c, rationale=self.rationale)
            for p, c in zip(prompts, completions)
        ]
        stats: dict[str, float] = {}
        scores = []
        failures, votes = 0, 0
        for chunk, n in self._chunks(judge_prompts):
            if self.mode == "p_yes":
                scores.append(scoring.p_yes(self.config, self.params, self.tokenizer, chunk)[:n])
                continue
            self._key, key = jax.random.split(self._key)
            verdicts = scoring.sample_verdicts(
                self.config,
                self.params,
                self.tokenizer,
                chunk,
                parse=lambda t: formats.parse_pointwise(t, rationale=self.rationale),
                rng=key,
                num_samples=self.num_samples,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
            )[:n]
            v, valid = scoring.votes_array(
                verdicts, positive=formats.POINTWISE_WORDS[0], on_failure=self.on_failure
            )
            chunk_scores, _ = scoring.aggregate_votes(v, valid, method=self.aggregation)
            # A row whose every vote was excluded has no verdict: reward 0.
            scores.append(np.nan_to_num(chunk_scores, nan=0.0))
            failures += sum(formats.failure_count(row) for row in verdicts)
            votes += n * self.num_samples
        out = np.concatenate(scores).astype(np.float64)
        stats["mean"] = float(out.mean())
        stats["seconds"] = time.perf_counter() - start
        stats["judge_prompt_tokens"] = float(
            sum(len(self.tokenizer.encode_prompt(p)) for p in judge_prompts)
        )
        if self.mode == "vote":
            stats["parse_failure_frac"] = failures / max(votes, 1)
        return out, None, stats


@MODEL_REWARDS.register("generative_judge_reward")
def generative_judge_reward(
    *,
    path: str,
    tokenizer: str = "",
    mode: str = "p_yes",
    rationale: bool = False,
    num_samples: int = 4,
    max_new_tokens: int = 8,
    temperature: float = 1.0,
    aggregation: str = "mean",
    on_failure: str | float = "zero",
    batch_size: int = 64,
    seed: int = 0,
    policy_tokenizer: Tokenizer | None = None,
) -> ModelRewardSource:
    """A frozen generative judge's verdict on each rollout: P("Yes") in one pass, or K votes.

    Args:
      path: the judge's exported HF directory (an LM head).
      tokenizer: its tokenizer spec; empty: the policy's (as the ORM sources).
      mode: "p_yes" (one forward pass) or "vote" (num_samples sampled replies).
      rationale: the judge writes a rationale before `Verdict:` (mode "vote" only).
      num_samples, max_new_tokens, temperature: the sampled replies of mode "vote".
      aggregation: "mean" or "majority" over the votes.
      on_failure: a reply that does not parse: "zero", "exclude" or a number.
      batch_size: judge prompts per compiled call.
      seed: the vote sampler's PRNG seed.
      policy_tokenizer: supplied by the reward computer.
    """
    return load_judge(
        path,
        tokenizer=tokenizer or policy_tokenizer,
        mode=mode,
        rationale=rationale,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        aggregation=aggregation,
        on_failure=on_failure,
        batch_size=batch_size,
        seed=seed,
    )


def load_judge(
    path: str,
    *,
    tokenizer: str | Tokenizer | None = None,
    mode: str = "p_yes",
    rationale: bool = False,
    num_samples: int = 4,
    max_new_tokens: int = 8,
    temperature: float = 1.0,
    aggregation: str = "mean",
    on_failure: str | float = "zero",
    batch_size: int = 64,
    seed: int = 0,
) -> GenerativeJudgeSource:
    """A judge from its exported directory (`tokenizer`: a spec or object; None: its own)."""
    config, params = load_scorer_params(path, head="lm")
    return GenerativeJudgeSource(
        config,
        params,
        load_scorer_tokenizer(tokenizer, path),
        mode=mode,
        rationale=rationale,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        aggregation=aggregation,
        on_failure=on_failure,
        batch_size=batch_size,
        seed=seed,
    )
