"""Curricula in the RL loop: which prompts a step spends rollouts on, and how.

The RL trainer owns one `Curriculum`, built from the config's `curriculum`
block and checkpointed with the run. It reads the per-prompt statistics the
trainer keeps (`rewardjax.data.curation.PromptStats`: samples, pass rate,
last step seen) and decides:

- **schedule** — the task's difficulty over training: `levels` of task
  kwargs (merged over `task.kwargs`), advanced at step `boundaries` ("steps")
  or when the training accuracy of the last `window` steps reaches
  `advance_at` ("pass_rate"; SimpleRL-Zoo's difficulty-controlled data).
- **drive** — DRIVE's two stages ("DRIVE: Data Curation Best Practices for
  RLVR"): stage 1 samples the prompt pool uniformly with the rollout block's
  group G₁; from `switch_step` (or once `switch_coverage` of the pool has
  been seen) stage 2 spends the same rows per step on the hard set — pool
  prompts whose stage-1 pass rate lies in [band_lo, band_hi], hardest first —
  with a large group G₂ (P₂ = P₁·G₁ / G₂ prompts). A prompt leaves the hard
  set once a group of it passes above `retain_max_pass` (1.0: kept throughout).
- **priority** — oversampling with priority: f·P candidates are drawn and the
  P with the most expected learning signal p(1 − p) are kept, ranked by their
  recorded pass rate ("stats": no extra rollouts; unseen prompts score
  `unseen_score`) or by the pass rate of their own rollouts ("rollouts": f×
  the sampling cost).
- **hints** — Guide ("Adaptive Guidance Accelerates RL of Reasoning Models")
  with SEELE-style adaptive length: a group whose every sample failed is
  sampled again with a hint, the first k lines of the reference solution; k
  starts at `init_steps` and moves one line per hinted group towards the
  `target` success rate. `placement="prefix"`: the hint opens the completion
  and is trained as part of it; `placement="context"`: the hint is added to
  the prompt and the completion is trained for the prompt without it. Either
  way the update's ratio is π_θ(y_t | x, y_<t) / π_behaviour(y_t | ·), whose
  denominator is the hinted sampling distribution (1 on forced hint tokens).
- **replay** — a buffer of the newest correct rollout of each prompt
  (bounded); a group that fails entirely gets that rollout in its last row,
  its advantage scaled by `weight` and its ratio taken against the log-probs
  it was sampled with.

Held-out evaluation always uses the configured task, whatever the schedule's
level.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.data.curation import PromptStats
from rewardjax.data.tasks.base import Problem

SCHEDULES = ("none", "steps", "pass_rate")
PRIORITY_BY = ("stats", "rollouts")
HINT_PLACEMENTS = ("prefix", "context")


@dataclasses.dataclass(frozen=True)
class Stage:
    """What one RL step samples: P prompts × G completions (P·G rows, fixed per run)."""

    name: str  # "uniform" or "drive_hard"
    prompts: int
    group: int


def group_signal(correct: np.ndarray) -> np.ndarray:  # [P, G] -> [P]
    """Expected learning signal of each group: p(1 − p) of its scored samples (0 when none)."""
    c = np.asarray(correct, np.float64)
    scored = ~np.isnan(c)
    n = scored.sum(axis=1)
    p = np.where(n > 0, np.nansum(c, axis=1) / np.maximum(n, 1), 0.0)
    return p * (1.0 - p)


def top_groups(signal: np.ndarray, k: int) -> np.ndarray:  # [P] -> [P] bool
    """The k groups of highest signal (ties: earlier first)."""
    order = np.argsort(-np.asarray(signal), kind="stable")
    keep = np.zeros(len(signal), bool)
    keep[order[:k]] = True
    return keep


def hint_text(problem: Problem, lines: int) -> str:
    """The first `lines` reference lines, each ending in a newline."""
    return "".join(f"{s}\n" for s in problem.steps[:lines])


def max_hint_lines(problem: Problem) -> int:
    """Lines a hint may give: every reference line but the answer line (0: no reference)."""
    return max(len(problem.steps) - 1, 0)


class ReplayBuffer:
    """The newest correct rollout of each prompt, at most `capacity` prompts (oldest leave first).

    An entry holds what the batch needs to replay the row: completion token
    ids, the log-probs it was sampled with, its reward.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"curriculum.replay.capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: collections.OrderedDict[str, dict] = collections.OrderedDict()

    def add(self, uid: str, tokens: Sequence[int], logprobs: Sequence[float], reward: float):
        self._items.pop(uid, None)
        self._items[uid] = dict(
            tokens=[int(t) for t in tokens],
            logprobs=[float(x) for x in logprobs],
            reward=float(reward),
        )
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, uid: str) -> dict | None:
        return self._items.get(uid)

    def __len__(self) -> int:
        return len(self._items)

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "items": [[k, v] for k, v in self._items.items()]}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ReplayBuffer:
        buffer = cls(int(state["capacity"]))
        for uid, item in state["items"]:
            buffer._items[uid] = dict(item)
        return buffer


def check_curriculum_config(cfg, *, rows: int, group_size: int, prompt_group: int) -> None:
    """Errors, before anything compiles, for curriculum settings that cannot run."""
    sched = cfg.schedule
    if sched.by not in SCHEDULES:
        raise ValueError(f"curriculum.schedule.by={sched.by!r}; known: {', '.join(SCHEDULES)}")
    if sched.by != "none":
        if not sched.levels:
            raise ValueError(f"curriculum.schedule.by={sched.by!r} needs levels (task kwargs)")
        if sched.by == "steps" and len(sched.boundaries) != len(sched.levels) - 1:
            raise ValueError(
                f"curriculum.schedule has {len(sched.levels)} levels, so it needs "
                f"{len(sched.levels) - 1} step boundaries, got {list(sched.boundaries)}"
            )
        if sched.by == "steps" and list(sched.boundaries) != sorted(sched.boundaries):
            raise ValueError(f"curriculum.schedule.boundaries must rise: {list(sched.boundaries)}")
        if sched.by == "pass_rate" and not (0.0 < sched.advance_at <= 1.0 and sched.window >= 1):
            raise ValueError(
                "curriculum.schedule.by='pass_rate' needs 0 < advance_at <= 1 and window >= 1, "
                f"got {sched.advance_at}, {sched.window}"
            )
    drive = cfg.drive
    if drive.enabled:
        g2 = drive.group_size
        if g2 < 2 or rows % g2:
            raise ValueError(
                f"curriculum.drive.group_size={g2} must be >= 2 and divide the step's "
                f"{rows} rows (prompts_per_step × group_size), so stage 2 samples as many rows"
            )
        if g2 % prompt_group:
            raise ValueError(
                f"curriculum.drive.group_size={g2} must be a multiple of the shared-prompt group "
                f"{prompt_group} (rollout.group_size with updates.shared_prompt)"
            )
        if not 0.0 <= drive.band_lo <= drive.band_hi <= 1.0:
            raise ValueError(
                f"curriculum.drive needs 0 <= band_lo <= band_hi <= 1, got "
                f"{drive.band_lo}, {drive.band_hi}"
            )
        if drive.switch_step <= 0 and not 0.0 < drive.switch_coverage <= 1.0:
            raise ValueError(
                "curriculum.drive needs switch_step > 0 or 0 < switch_coverage <= 1 (when stage "
                "2 starts)"
            )
        if sched.by != "none":
            raise ValueError("curriculum.drive and curriculum.schedule both choose the prompts")
    prio = cfg.priority
    if prio.enabled:
        if prio.by not in PRIORITY_BY:
            raise ValueError(f"curriculum.priority.by={prio.by!r}; known: {', '.join(PRIORITY_BY)}")
        if prio.oversample < 2:
            raise ValueError(
                f"curriculum.priority.oversample={prio.oversample} must be >= 2 (candidates "
                "per kept prompt)"
            )
    hints = cfg.hints
    if hints.enabled:
        if hints.placement not in HINT_PLACEMENTS:
            raise ValueError(
                f"curriculum.hints.placement={hints.placement!r}; known: "
                f"{', '.join(HINT_PLACEMENTS)}"
            )
        if not 0.0 < hints.target < 1.0 or hints.init_steps < 1:
            raise ValueError(
                "curriculum.hints needs 0 < target < 1 and init_steps >= 1, got "
                f"{hints.target}, {hints.init_steps}"
            )
        if group_size < 2:
            raise ValueError("curriculum.hints re-samples all-fail groups: needs group_size >= 2")
    if cfg.replay.enabled:
        if not 0.0 < cfg.replay.weight <= 1.0:
            raise ValueError(f"curriculum.replay.weight={cfg.replay.weight} must be in (0, 1]")
        if group_size < 2:
            raise ValueError("curriculum.replay puts a row into a failed group: group_size >= 2")


class Curriculum:
    """Prompt choice, stages, hints and replay for one RL run (see the module docstring).

    Args:
      cfg: the config's `curriculum` block.
      task_cfg: the config's `task` block (the schedule's levels merge over its kwargs).
      source: the run's `PromptSource` (its pool, and the prompts when no level is active).
      prompts_per_step, group_size: stage 1's P and G (the rollout block's).
      prompt_group: rows per shared prompt in the update's forward passes.
      seed: the run's seed.
      make_source: task_cfg, batch_size -> a PromptSource (for the schedule's levels
        and for oversampled candidates).
    """

    def __init__(
        self,
        cfg,
        *,
        task_cfg,
        source,
        prompts_per_step: int,
        group_size: int,
        prompt_group: int,
        seed: int,
        make_source,
    ):
        self.cfg = cfg
        self.seed = seed
        rows = prompts_per_step * group_size
        check_curriculum_config(cfg, rows=rows, group_size=group_size, prompt_group=prompt_group)
        self.uniform = Stage("uniform", prompts_per_step, group_size)
        self.hard = (
            Stage("drive_hard", rows // cfg.drive.group_size, cfg.drive.group_size)
            if cfg.drive.enabled
            else None
        )
        self.stage = self.uniform
        self.hard_set: list[str] = []
        self.pool = source.pool()
        if (cfg.drive.enabled or (cfg.priority.enabled and cfg.priority.by == "stats")) and (
            self.pool is None
        ):
            raise ValueError(
                "curriculum.drive and curriculum.priority.by='stats' revisit prompts by their "
                "statistics: they need a finite prompt pool (task.pool_size > 0 for a "
                "procedural task, or task.data_path)"
            )
        self._by_uid = {p.uid: p for p in self.pool} if self.pool is not None else {}
        # Prompt sources: one per schedule level, else the run's own.
        self.level = 0
        self._accuracy: collections.deque[float] = collections.deque(
            maxlen=max(int(cfg.schedule.window), 1)
        )
        if cfg.schedule.by != "none":
            self.sources = []
            for level in cfg.schedule.levels:
                level_cfg = copy.deepcopy(task_cfg)
                level_cfg.kwargs = dict(task_cfg.kwargs, **dict(level))
                self.sources.append(make_source(level_cfg, prompts_per_step))
        else:
            self.sources = [source]
        self.hint_lines: dict[str, int] = {}
        self.replay = ReplayBuffer(cfg.replay.capacity) if cfg.replay.enabled else None

    # ------------------------------------------------------------ prompts

    def begin_step(self, step: int, stats: PromptStats) -> Stage:
        """The stage and level of this step (switches happen here, between steps)."""
        drive = self.cfg.drive
        if self.hard is not None and self.stage is self.uniform:
            seen = sum(uid in stats for uid in self._by_uid) / max(len(self._by_uid), 1)
            if (drive.switch_step > 0 and step >= drive.switch_step) or (
                drive.switch_coverage > 0 and seen >= drive.switch_coverage
            ):
                self.hard_set = self._hard_set(stats)
                self.stage = self.hard
        sched = self.cfg.schedule
        if sched.by == "steps":
            self.level = int(np.searchsorted(np.asarray(sched.boundaries), step, side="right"))
        return self.stage

    def _hard_set(self, stats: PromptStats) -> list[str]:
        """Pool prompts whose pass rate lies in the hard band, hardest first."""
        drive = self.cfg.drive
        rated = []
        for uid in self._by_uid:
            entry = stats.get(uid)
            if entry is None or entry["samples"] < drive.min_samples:
                continue
            rate = entry["pass_rate"]
            if rate is not None and drive.band_lo <= rate <= drive.band_hi:
                rated.append((rate, uid))
        rated.sort()
        uids = [uid for _, uid in rated]
        if drive.hard_set_size:
            uids = uids[: drive.hard_set_size]
        if not uids:
            raise RuntimeError(
                f"curriculum.drive: no pool prompt has a stage-1 pass rate in "
                f"[{drive.band_lo}, {drive.band_hi}] over >= {drive.min_samples} samples; "
                "widen the band, lower min_samples, or switch later"
            )
        return uids

    def next_problems(self, step: int, round_: int, stats: PromptStats) -> list[Problem]:
        """This round's prompts: stage 2's hard set, or the active level's next candidates."""
        if self.stage is self.hard:
            # A pure function of (seed, step, round, hard set): resumes exactly.
            rng = np.random.default_rng([self.seed, step, round_, 7])
            n = self.hard.prompts
            replace = len(self.hard_set) < n
            picks = rng.choice(len(self.hard_set), size=n, replace=replace)
            return [self._by_uid[self.hard_set[i]] for i in picks]
        problems = self.sources[self.level].next()
        prio = self.cfg.priority
        if prio.enabled and prio.by == "stats":
            signal = []
            for p in problems:
                rate = stats.pass_rate(p.uid)
                signal.append(prio.unseen_score if rate is None else rate * (1.0 - rate))
            keep = top_groups(np.asarray(signal), len(problems) // prio.oversample)
            problems = [p for p, k in zip(problems, keep) if k]
        return problems

    def end_step(self, uids: Sequence[str], correct: np.ndarray, accuracy: float) -> None:
        """Retention of the hard set and the pass-rate schedule, after a step's groups."""
        if self.stage is self.hard and self.cfg.drive.retain_max_pass < 1.0:
            rates = np.nanmean(np.asarray(correct, np.float64), axis=1)
            solved = {u for u, r in zip(uids, rates) if r > self.cfg.drive.retain_max_pass}
            kept = [u for u in self.hard_set if u not in solved]
            if kept:  # never empty: the last prompts stay
                self.hard_set = kept
        sched = self.cfg.schedule
        if sched.by == "pass_rate" and self.level < len(self.sources) - 1:
            self._accuracy.append(float(accuracy))
            full = len(self._accuracy) == self._accuracy.maxlen
            if full and np.mean(self._accuracy) >= sched.advance_at:
                self.level += 1
                self._accuracy.clear()

    # ------------------------------------------------------------ hints

    def hint(self, problem: Problem, *, lines: int | None = None) -> tuple[str, int] | None:
        """(hint text, lines) for a prompt whose group failed, or None (no reference lines).

        `lines`: this many (a shorter hint than the prompt's own level), at least 1.
        """
        most = max_hint_lines(problem)
        if lines is None:
            lines = self.hint_lines.get(problem.uid, self.cfg.hints.init_steps)
        lines = min(lines, most)
        if lines < 1:
            return None
        return hint_text(problem, lines), lines

    def record_hint(self, problem: Problem, lines: int, pass_rate: float) -> None:
        """One line more after a hinted group below the target rate, one fewer above it."""
        target = self.cfg.hints.target
        if pass_rate < target:
            lines += 1
        elif pass_rate > target:
            lines -= 1
        self.hint_lines[problem.uid] = int(np.clip(lines, 1, max_hint_lines(problem)))

    def context_prompt(self, problem: Problem, hint: str) -> Problem:
        """The problem with a context hint added to its prompt text."""
        text = self.cfg.hints.template.format(hint=hint.strip().replace("\n", ", "))
        return dataclasses.replace(problem, prompt=problem.prompt + text)

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return dict(
            stage=self.stage.name,
            hard_set=list(self.hard_set),
            level=self.level,
            accuracy=list(self._accuracy),
            level_sources=[s.state() for s in self.sources]
            if self.cfg.schedule.by != "none"
            else [],
            hint_lines=dict(self.hint_lines),
            replay=self.replay.state_dict() if self.replay is not None else None,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["stage"] == "drive_hard" and self.hard is None:
            raise ValueError(
                "the checkpoint is in DRIVE's stage 2 but this config has "
                "curriculum.drive.enabled=False; resume with the config it was saved with"
            )
        self.stage = self.hard if state["stage"] == "drive_hard" else self.uniform
        self.hard_set = list(state["hard_set"])
        self.level = int(state["level"])
        self._accuracy.clear()
        self._accuracy.extend(state["accuracy"])
        for source, s in zip(self.sources, state["level_sources"]):
            source.restore(s)
        self.hint_lines = {k: int(v) for k, v in state["hint_lines"].items()}
        if self.replay is not None and state["replay"] is not None:
            self.replay = ReplayBuffer.from_state_dict(state["replay"])
