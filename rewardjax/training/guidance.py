"""Rows sampled elsewhere in an RL batch: Guide hints and the replay of correct rollouts.

The curriculum (`curriculum.py`) decides which groups get a hint and what it
says; these host-side functions write the resulting rows into the round's
batch arrays ([P·G] rows, groups contiguous), in place:

  failed = failed_groups(arrays, group)                      # [P] all-fail groups
  picks, unavailable = pick_hints(curriculum, problems, failed, ...)
  prompts, hint_ids = hint_prompts(curriculum, problems, picks, ...)
  rows = hinted_rows(out, hint_ids, group=G, width=T, ...)   # after sampling `prompts`
  write_groups(arrays, picks, rows, scores, info, group=G)   # after grading `rows`

Every row written here is marked `behaviour`: the update takes its ratio
against the log-probs it was sampled with (0 on forced hint tokens), not
against the current policy's recomputation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rewardjax import sampling
from rewardjax.data.tasks.base import Problem
from rewardjax.tokenizers import Tokenizer
from rewardjax.training.curriculum import Curriculum, ReplayBuffer
from rewardjax.training.rollout import encode_prompt, truncated_rows

ROW_KEYS = ("tokens", "rollout_logprobs", "mask", "lengths", "truncated")


def failed_groups(arrays: dict, group: int) -> np.ndarray:
    """[P] bool: groups with a scored sample and no correct one."""
    correct = arrays["correct"].reshape(-1, group).astype(np.float64)
    if "valid" in arrays:
        correct = np.where(arrays["valid"].reshape(correct.shape), correct, np.nan)
    scored = ~np.isnan(correct)
    return scored.any(axis=1) & (np.nansum(correct, axis=1) == 0)


def remember_correct(
    replay: ReplayBuffer, problems: Sequence[Problem], arrays: dict, group: int
) -> None:
    """Stores each prompt's first correct on-policy row of the round in the replay buffer."""
    for i, problem in enumerate(problems):
        rows = np.arange(i * group, (i + 1) * group)
        good = rows[(arrays["correct"][rows] == 1) & ~arrays["behaviour"][rows]]
        if good.size:
            r, length = good[0], int(arrays["lengths"][good[0]])
            replay.add(
                problem.uid,
                arrays["tokens"][r, :length],
                arrays["rollout_logprobs"][r, :length],
                float(arrays["rewards"][r]),
            )


def put_row(arrays: dict, r: int, item: dict, *, weight: float, pad_id: int) -> None:
    """Writes a stored rollout (`ReplayBuffer` item) over row r of the batch."""
    length = len(item["tokens"])
    for key, value in (("tokens", pad_id), ("mask", 0), ("rollout_logprobs", 0)):
        arrays[key][r] = value
    arrays["tokens"][r, :length] = item["tokens"]
    arrays["mask"][r, :length] = 1
    arrays["rollout_logprobs"][r, :length] = item["logprobs"]
    arrays["rewards"][r] = item["reward"]
    arrays["correct"][r] = 1.0
    arrays["lengths"][r] = length
    arrays["truncated"][r] = False
    arrays["behaviour"][r] = True
    arrays["advantage_weight"][r] = weight
    if "valid" in arrays:
        arrays["valid"][r] = True
    if "token_rewards" in arrays:  # no step rewards for a replayed row
        arrays["token_rewards"][r] = 0.0


def pick_hints(
    curriculum: Curriculum,
    problems: Sequence[Problem],
    failed: np.ndarray,
    *,
    tokenizer: Tokenizer,
    width: int,
    placement: str,
    max_groups: int,
) -> tuple[list[tuple[int, str, int]], int]:
    """([(group, hint text, lines)], groups without a reference to hint).

    A prefix hint is shortened until it leaves the policy room in the
    completion budget of `width` tokens; at most `max_groups` (0: any).
    """
    picks, unavailable = [], 0
    for i in np.flatnonzero(failed):
        hint = curriculum.hint(problems[i])
        # A prompt without reference lines (a prompt file's row) gets no hint: counted.
        unavailable += hint is None
        while hint is not None and placement == "prefix":
            if len(tokenizer.encode(hint[0])) < width:
                break
            hint = curriculum.hint(problems[i], lines=hint[1] - 1)
        if hint is not None:
            picks.append((int(i), *hint))
    if max_groups:
        picks = picks[:max_groups]
    return picks, unavailable


def hint_prompts(
    curriculum: Curriculum,
    problems: Sequence[Problem],
    picks: Sequence[tuple[int, str, int]],
    *,
    tokenizer: Tokenizer,
    placement: str,
) -> tuple[tuple[np.ndarray, np.ndarray], list[list[int]]]:
    """(the sampler's prompts (tokens, mask), each pick's hint ids opening its completion).

    The prompt count is padded to a power of two with copies (a bounded number
    of sampler shapes); a "context" hint is in the prompt and opens nothing.
    """
    chosen = [problems[i] for i, _, _ in picks]
    if placement == "prefix":
        hint_ids = [tokenizer.encode(text) for _, text, _ in picks]
        ids = [encode_prompt(tokenizer, p) + h for p, h in zip(chosen, hint_ids)]
    else:
        hint_ids = [[] for _ in picks]
        ids = [
            encode_prompt(tokenizer, curriculum.context_prompt(p, text))
            for p, (_, text, _) in zip(chosen, picks)
        ]
    ids += [ids[-1]] * ((1 << (len(ids) - 1).bit_length()) - len(ids))
    length = sampling.bucket(max(len(x) for x in ids), sampling.DEFAULT_BUCKETS)
    return sampling.pad_prompts(ids, pad_id=tokenizer.pad_id, length=length), hint_ids


def hinted_rows(
    out, hint_ids: Sequence[Sequence[int]], *, group: int, width: int, tokenizer: Tokenizer
) -> dict[str, np.ndarray]:
    """The hinted groups' rows: hint tokens (behaviour log-prob 0: forced), then the sample.

    `out` is the sampler's output for `hint_prompts` (host arrays); the
    continuation is cut to the completion budget `width` (a cut row counts as
    truncated).
    """
    n = len(hint_ids) * group
    rows = {
        "tokens": np.full((n, width), tokenizer.pad_id, np.int32),
        "rollout_logprobs": np.zeros((n, width), np.float32),
        "mask": np.zeros((n, width), np.float32),
        "lengths": np.zeros(n, np.int32),
        "truncated": np.zeros(n, bool),
    }
    tokens, logprobs = np.asarray(out.tokens), np.asarray(out.logprobs)
    mask, lengths = np.asarray(out.mask), np.asarray(out.lengths)
    cut = truncated_rows(out, tokenizer.stop_ids)
    for j, hint in enumerate(hint_ids):
        h, room = len(hint), width - len(hint)
        for r in range(j * group, (j + 1) * group):
            rows["tokens"][r, :h] = hint
            rows["mask"][r, :h] = 1
            rows["tokens"][r, h:] = tokens[r, :room]
            rows["rollout_logprobs"][r, h:] = logprobs[r, :room]
            rows["mask"][r, h:] = mask[r, :room]
            rows["lengths"][r] = h + min(int(lengths[r]), room)
            rows["truncated"][r] = bool(cut[r]) or int(lengths[r]) > room
    return rows


def write_groups(
    arrays: dict,
    picks: Sequence[tuple[int, str, int]],
    rows: dict[str, np.ndarray],
    scores: np.ndarray,
    info: dict,
    *,
    group: int,
) -> list[float]:
    """Writes the graded hinted rows over their failed groups; returns each group's pass rate."""
    rates = []
    for j, (i, _, _) in enumerate(picks):
        src, dst = slice(j * group, (j + 1) * group), slice(i * group, (i + 1) * group)
        for key in ROW_KEYS:
            arrays[key][dst] = rows[key][src]
        arrays["rewards"][dst] = scores[src]
        arrays["correct"][dst] = info["correct"][src]
        arrays["behaviour"][dst] = True
        if "valid" in arrays:
            arrays["valid"][dst] = np.asarray(info["valid"], bool)[src]
        if "token_rewards" in arrays:
            arrays["token_rewards"][dst] = info["token_rewards"][src]
        rates.append(float(np.mean(info["correct"][src])))
    return rates
