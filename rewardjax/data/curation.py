"""Host-side curation of RL groups: pass-rate filtering and dynamic sampling.

Rollouts come in P groups of G completions of one prompt. These rules look
at each group's rewards and say which groups to keep; `fill_groups` runs the
sample → filter loop until a batch of P valid groups is complete, and
`PromptStats` remembers each prompt's pass rate across steps.

  keep = CURATION.get("dynamic_sampling")(rewards)            # [P] bool
  batch, info = fill_groups(sample_round, num_groups=P, group_size=G,
                            keep_fn=functools.partial(pass_rate_filter, lo=0.2, hi=0.8))

All functions are pure numpy on the host; NaN marks an unscorable reward
(mechanisms.md §0), which is left out of every group statistic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.registry import CURATION

__all__ = [
    "PromptStats",
    "dynamic_sampling",
    "fill_groups",
    "pass_rate_filter",
    "select_groups",
]


def _groups(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be [P, G] (prompts × group), got shape {x.shape}")
    return x


@CURATION.register("pass_rate_filter")
def pass_rate_filter(
    correct: np.ndarray,  # [P, G] 1.0 correct, 0.0 wrong, NaN unscorable
    *,
    lo: float = 0.2,
    hi: float = 0.8,
    truncated: np.ndarray | None = None,  # [P, G] bool, completion hit the length cap
    filter_truncate: bool = True,
) -> np.ndarray:  # [P] bool
    """Keeps prompts whose pass rate is moderate: lo ≤ mean_g c_{p,g} ≤ hi (inclusive).

      keep_p = [lo ≤ mean_g c_{p,g} ≤ hi] ∧ [no completion of p truncated] (filter_truncate)

    Groups with a truncated completion are dropped when `filter_truncate`; a
    group with no scorable completion is dropped. With oversampling (sample
    f·P prompts, then `select_groups(keep, P)`) this is PRIME's online filter.

    Args:
      correct: [P, G] correctness of each completion.
      lo, hi: inclusive bounds on the pass rate.
      truncated: [P, G] whether each completion was cut at the length limit.
      filter_truncate: drop groups that contain a truncated completion.

    Returns:
      keep: [P] bool.

    Source: "Process Reinforcement through Implicit Rewards" (PRIME): lo 0.2,
    hi 0.8, G = 4, oversampling ×4.
    """
    c = _groups(correct, "correct")
    scored = ~np.isnan(c)
    n = scored.sum(axis=1)
    rate = np.where(n > 0, np.nansum(c, axis=1) / np.maximum(n, 1), np.nan)
    keep = (n > 0) & (rate >= lo) & (rate <= hi)
    if filter_truncate and truncated is not None:
        t = np.asarray(truncated, dtype=bool)
        if t.shape != c.shape:
            raise ValueError(f"truncated has shape {t.shape} but correct has {c.shape}")
        keep &= ~t.any(axis=1)
    return keep


@CURATION.register("dynamic_sampling")
def dynamic_sampling(
    rewards: np.ndarray,  # [P, G] rewards, NaN unscorable
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> np.ndarray:  # [P] bool
    """Drops groups whose rewards cannot produce an advantage.

      keep_p = [r_{p,g} not all equal];  with bounds: lo < mean_g r_{p,g} < hi

    Default: keep a group iff its scorable rewards are not all equal (non-zero
    variance; all-correct and all-wrong groups give zero group-relative
    advantage). With `lo`/`hi`: keep iff lo < mean_g r_{p,g} < hi (open
    interval, OpenRLHF's (0, 1) for binary rewards).

    Args:
      rewards: [P, G] per-completion rewards.
      lo, hi: optional open bounds on the group mean (both or neither).

    Returns:
      keep: [P] bool.

    Source: DAPO (dynamic sampling), as in verl-recipe and OpenRLHF.
    """
    r = _groups(rewards, "rewards")
    scored = ~np.isnan(r)
    n = scored.sum(axis=1)
    if (lo is None) != (hi is None):
        raise ValueError("dynamic_sampling takes both lo and hi, or neither")
    if lo is None:
        big = np.where(scored, r, -np.inf).max(axis=1)
        small = np.where(scored, r, np.inf).min(axis=1)
        return (n >= 2) & (big > small)
    mean = np.where(n > 0, np.nansum(r, axis=1) / np.maximum(n, 1), np.nan)
    return (n > 0) & (mean > lo) & (mean < hi)


def select_groups(keep: np.ndarray, num: int) -> np.ndarray:  # [P] bool -> [num] int
    """Indices of `num` groups: kept groups first (in order), then others to fill.

    The batch keeps a fixed size (one compiled shape) while preferring the
    groups that passed the filter; with oversampling most batches need no fill.
    """
    keep = np.asarray(keep, dtype=bool)
    if num > keep.size:
        raise ValueError(f"asked for {num} groups out of {keep.size}")
    order = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])
    return order[:num]


def _take_rows(tree: Any, rows: np.ndarray) -> Any:
    def take(x):
        xp = jnp if isinstance(x, jax.Array) else np
        return xp.take(x, xp.asarray(rows), axis=0)

    return jax.tree.map(take, tree)


def _concat_rows(trees: Sequence[Any]) -> Any:
    def concat(*xs):
        xp = jnp if isinstance(xs[0], jax.Array) else np
        return xp.concatenate(xs, axis=0)

    return jax.tree.map(concat, *trees)


def fill_groups(
    sample_round: Callable[[int], tuple[Any, np.ndarray]],
    *,
    num_groups: int,
    group_size: int,
    keep_fn: Callable[[np.ndarray], np.ndarray] = dynamic_sampling,
    max_rounds: int = 0,
    take_rows: Callable[[Any, np.ndarray], Any] = _take_rows,
    concat_rows: Callable[[Sequence[Any]], Any] = _concat_rows,
) -> tuple[Any, dict[str, int]]:
    """Samples rounds of groups until `num_groups` pass `keep_fn`; DAPO's refill loop.

    Args:
      sample_round: `round -> (batch, rewards)`: `batch` a pytree whose leaves
        have a leading axis of P·G rows, group-contiguous (row = p·G + g), and
        `rewards` [P, G]. Called with round = 0, 1, ...
      num_groups: groups in the returned batch.
      group_size: G.
      keep_fn: `rewards [P, G] -> keep [P]`, e.g. `dynamic_sampling` or a
        `functools.partial(pass_rate_filter, ...)` (truncation needs a closure).
      max_rounds: error after this many rounds without a full batch; 0 means
        no limit (verl's `max_num_gen_batches`).
      take_rows, concat_rows: row selection and concatenation for `batch`;
        the defaults handle pytrees of numpy / jax arrays.

    Returns:
      batch: the kept groups of the first rounds, exactly num_groups·G rows,
        in sampling order.
      info: `rounds`, `groups_sampled`, `groups_kept` (before trimming).
    """
    pieces, kept, sampled, rounds = [], 0, 0, 0
    while kept < num_groups:
        if max_rounds and rounds >= max_rounds:
            raise RuntimeError(
                f"curation kept {kept} of the {num_groups} groups needed after {rounds} "
                f"rounds ({sampled} groups sampled); raise max_rounds or relax the filter"
            )
        batch, rewards = sample_round(rounds)
        rewards = _groups(rewards, "rewards")
        if rewards.shape[1] != group_size:
            raise ValueError(f"rewards has group size {rewards.shape[1]}, expected {group_size}")
        keep = np.asarray(keep_fn(rewards), dtype=bool)
        groups = np.flatnonzero(keep)[: num_groups - kept]
        rows = (groups[:, None] * group_size + np.arange(group_size)).reshape(-1)
        if groups.size:
            pieces.append(take_rows(batch, rows))
        kept += groups.size
        sampled += rewards.shape[0]
        rounds += 1
    out = pieces[0] if len(pieces) == 1 else concat_rows(pieces)
    return out, {"rounds": rounds, "groups_sampled": sampled, "groups_kept": kept}


@dataclasses.dataclass
class _Entry:
    samples: int = 0
    correct: float = 0.0
    last_pass_rate: float = float("nan")
    last_step: int = -1


class PromptStats:
    """Per-prompt statistics across training: samples, pass rate, last step seen.

    Keyed by problem uid. `state_dict()` is JSON-serialisable, so the store is
    saved with the checkpoint and a resumed run filters exactly as before.
    """

    def __init__(self):
        self._entries: dict[str, _Entry] = {}

    def update(
        self,
        uids: Sequence[str],  # [P]
        correct: np.ndarray,  # [P, G]; NaN unscorable
        *,
        step: int,
    ) -> None:
        """Adds one group of results per uid, seen at training `step`."""
        c = _groups(correct, "correct")
        if len(uids) != c.shape[0]:
            raise ValueError(f"{len(uids)} uids but correct has {c.shape[0]} groups")
        for uid, row in zip(uids, c):
            scored = row[~np.isnan(row)]
            e = self._entries.setdefault(uid, _Entry())
            e.samples += int(scored.size)
            e.correct += float(scored.sum())
            e.last_pass_rate = float(scored.mean()) if scored.size else float("nan")
            e.last_step = int(step)

    def pass_rate(self, uid: str) -> float | None:
        """Pass rate over every scored sample so far, or None for an unseen prompt."""
        e = self._entries.get(uid)
        if e is None or e.samples == 0:
            return None
        return e.correct / e.samples

    def get(self, uid: str) -> dict[str, float] | None:
        """`samples`, `pass_rate`, `last_pass_rate`, `last_step` of a prompt, or None."""
        e = self._entries.get(uid)
        if e is None:
            return None
        return {
            "samples": e.samples,
            "pass_rate": self.pass_rate(uid),
            "last_pass_rate": e.last_pass_rate,
            "last_step": e.last_step,
        }

    def summary(self) -> dict[str, float]:
        """Counts for logging: prompts seen, and those always / never solved."""
        rates = [e.correct / e.samples for e in self._entries.values() if e.samples]
        return {
            "prompts_seen": float(len(self._entries)),
            "prompts_always_solved": float(sum(r == 1.0 for r in rates)),
            "prompts_never_solved": float(sum(r == 0.0 for r in rates)),
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    def state_dict(self) -> dict[str, list]:
        return {
            uid: [
                e.samples,
                e.correct,
                None if np.isnan(e.last_pass_rate) else e.last_pass_rate,
                e.last_step,
            ]
            for uid, e in self._entries.items()
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Sequence]) -> PromptStats:
        stats = cls()
        for uid, (samples, correct, last_rate, last_step) in state.items():
            last = float("nan") if last_rate is None else float(last_rate)
            stats._entries[uid] = _Entry(int(samples), float(correct), last, int(last_step))
        return stats
