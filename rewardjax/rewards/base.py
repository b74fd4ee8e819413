"""The reward-function interface and the pool that runs reward functions.

A reward function scores a batch of completions on the host:

    fn(prompts, completions, fields, **kwargs) -> RewardOutput | Sequence[float | None]

with `prompts` and `completions` lists of B strings and `fields` a list of B
dicts (the dataset's per-sample fields: gold answer, tests, lengths, ...).
A score of None means "unscorable" (e.g. the gold answer does not parse): it
stays NaN in the combined reward, which the trainer gives advantage 0 and
leaves out of group statistics (mechanisms.md §0).

`compute_rewards` runs several named reward functions with weights on a
worker pool (slow graders overlap), enforces per-sample timeouts, and turns
exceptions, timeouts and non-finite scores into a configured fallback score
with a counted reason, so a bad sample never crashes a run.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import importlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from rewardjax.registry import REWARDS, SHAPING
from rewardjax.rewards import shaping

log = logging.getLogger(__name__)

Fields = Sequence[Mapping[str, Any]]


class RewardOutput(NamedTuple):
    """What a reward function returns for a batch of B samples.

    Attributes:
      scores: [B] float or None (unscorable).
      step_scores: optional [B] list of per-step score lists (ragged, [S_b]).
      diagnostics: optional {name: [B] values} (extracted answers, pass counts).
    """

    scores: Sequence[float | None]
    step_scores: Sequence[Sequence[float]] | None = None
    diagnostics: Mapping[str, Sequence[Any]] | None = None


@dataclasses.dataclass(frozen=True)
class RewardInfo:
    """How `compute_rewards` runs a registered reward function.

    Attributes:
      per_sample: the function scores samples independently, so the batch can
        be split into one task per sample (parallelism, per-sample timeout,
        per-sample fallback). Group rewards (majority vote, group length
        gating) set False and run on the whole batch in one task.
      executor: default pool: "inline" (caller thread: cheap functions),
        "thread" (I/O-bound: the code sandbox waits on subprocesses) or
        "process" (CPU-bound or signal-based timeouts: math-verify).
      device: a pure JAX function of log-probs that the trainer calls on device
        (`rewardjax.rewards.likelihood`), not a text reward.
      timeout_s: default per-task limit; above the function's own budget
        (e.g. the code reward's 300 s per sample) so that it can finish.
    """

    per_sample: bool = True
    executor: str = "inline"
    device: bool = False
    timeout_s: float = 30.0


_INFO: dict[str, RewardInfo] = {}


def register_reward(
    name: str,
    *,
    per_sample: bool = True,
    executor: str = "inline",
    device: bool = False,
    timeout_s: float = 30.0,
):
    """Registers `fn` in REWARDS under `name` with how it should be run (see `RewardInfo`)."""
    if executor not in _EXECUTORS:
        raise ValueError(f"executor must be one of {_EXECUTORS}, got {executor!r}")

    def decorator(fn):
        REWARDS.register(name)(fn)
        _INFO[name] = RewardInfo(
            per_sample=per_sample, executor=executor, device=device, timeout_s=timeout_s
        )
        return fn

    return decorator


def reward_info(name: str) -> RewardInfo:
    return _INFO.get(name, RewardInfo())


_EXECUTORS = ("inline", "thread", "process")
_REASONS = ("exception", "timeout", "nonfinite")


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """One weighted reward component, built from a config dict.

    Attributes:
      name: REWARDS key.
      weight: w_k in r = Σ_k w_k·r_k.
      kwargs: keyword hyperparameters passed to the function.
      key: name of the component in stats (default: `name`); lets one function
        appear twice with different kwargs.
      timeout_s: per-task wall-clock limit (a task is one sample, or the batch
        for group rewards); past it the sample gets `fallback`. None: the
        function's default (`RewardInfo.timeout_s`). Inline tasks cannot be
        interrupted: their limit is not enforced.
      fallback: score for a sample whose scoring raised, timed out or was
        non-finite (the reason is counted).
      executor: "inline", "thread" or "process"; None = the function's default.
      gate: key of an outcome component: this component counts only on rows
        where that outcome is ≥ `gate_threshold` (a process reward that only
        counts when the answer is right).
      gate_threshold: see `gate`.
    """

    name: str
    weight: float = 1.0
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    key: str | None = None
    timeout_s: float | None = None
    fallback: float = 0.0
    executor: str | None = None
    gate: str | None = None
    gate_threshold: float = 1.0

    @classmethod
    def from_config(cls, c: Mapping[str, Any] | RewardSpec) -> RewardSpec:
        if isinstance(c, RewardSpec):
            c = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
        c = dict(c)
        unknown = set(c) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"reward spec {c.get('name')!r}: unknown keys {sorted(unknown)}; "
                f"known: {[f.name for f in dataclasses.fields(cls)]}"
            )
        if "name" not in c:
            raise ValueError(f"reward spec {c}: missing 'name'")
        REWARDS.get(c["name"])  # fails early with the list of known rewards
        if reward_info(c["name"]).device:
            raise ValueError(
                f"reward {c['name']!r} is computed on device from the policy's log-probs; "
                f"call rewardjax.rewards.{c['name']} in the RL loop instead of listing it "
                "among host rewards"
            )
        c = {k: plain_config(v) for k, v in c.items()}
        spec = cls(**c)
        if spec.timeout_s is None:
            spec = dataclasses.replace(spec, timeout_s=reward_info(spec.name).timeout_s)
        if spec.executor is not None and spec.executor not in _EXECUTORS:
            raise ValueError(
                f"reward spec {spec.name!r}: executor must be one of {_EXECUTORS}, "
                f"got {spec.executor!r}"
            )
        return spec

    @property
    def component(self) -> str:
        return self.key or self.name


def plain_config(x: Any) -> Any:
    """Config containers (ml_collections ConfigDict, tuples) to plain dicts and lists."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {k: plain_config(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain_config(v) for v in x]
    return x


class _Task(NamedTuple):
    spec_index: int
    rows: tuple[int, ...]  # batch rows this task scores


class _TaskResult(NamedTuple):
    scores: list[float | None]
    step_scores: list[list[float]] | None
    diagnostics: dict[str, list[Any]] | None


class _SampleTimeout(Exception):
    pass


def _normalize_output(out: Any, n: int, name: str) -> _TaskResult:
    if isinstance(out, RewardOutput):
        scores, steps, diags = out.scores, out.step_scores, out.diagnostics
    else:
        scores, steps, diags = out, None, None
    if isinstance(scores, np.ndarray):
        scores = scores.tolist()
    scores = list(scores)
    if len(scores) != n:
        raise ValueError(f"reward {name!r} returned {len(scores)} scores for {n} samples")
    scores = [None if s is None else float(s) for s in scores]
    if steps is not None:
        steps = [list(map(float, s)) for s in steps]
        if len(steps) != n:
            raise ValueError(f"reward {name!r} returned {len(steps)} step lists for {n} samples")
    if diags is not None:
        diags = {k: list(v) for k, v in diags.items()}
    return _TaskResult(scores, steps, diags)


def _call(name, module, kwargs, prompts, completions, fields, timeout_s) -> _TaskResult:
    """Runs one task; in a worker process's main thread an alarm bounds it.

    `module` is imported first when `name` is not registered yet: a worker
    process knows the rewards of `rewardjax.rewards` only.
    """
    if name not in REWARDS:
        importlib.import_module(module)
    fn = REWARDS.get(name)
    # Graders that set their own SIGALRM (math-verify) replace this alarm while
    # they run; their own timeouts then apply, and the pool's watchdog remains.
    use_alarm = (
        timeout_s is not None
        and threading.current_thread() is threading.main_thread()
        and multiprocessing.parent_process() is not None
    )
    if use_alarm:

        def on_alarm(signum, frame):
            raise _SampleTimeout

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        out = fn(list(prompts), list(completions), list(fields), **kwargs)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return _normalize_output(out, len(completions), name)


def _timed_call(args: tuple, started: list[float]) -> _TaskResult:
    started.append(time.monotonic())  # the deadline runs from here, not from submission
    return _call(*args)


def _process_worker_init() -> None:
    import rewardjax.rewards  # noqa: F401  (fills the registries in the worker)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business


class RewardFunctionPool:
    """Runs weighted reward functions on worker pools; callable.

        computer = RewardFunctionPool([{"name": "math_verify_equiv", "weight": 1.0},
                                   {"name": "format_think", "weight": 0.1}])
        scores, stats = computer(prompts, completions, fields)

    Args:
      specs: reward components, config dicts or `RewardSpec`s.
      shaping: optional list of {"name": SHAPING key, **kwargs} applied in
        order to the combined [B] scores (see `shaping.py`), e.g.
        [{"name": "reward_clip", "low": -1, "high": 1}].
      max_workers: threads of the thread pool (default: 2×CPUs, at least 4).
      max_processes: processes of the process pool (default: CPUs).

    The process pool starts on first use with the "spawn" method (safe next
    to JAX's threads): a script that uses it needs the usual
    `if __name__ == "__main__":` guard, and its reward functions must be
    importable by module name. Keep one computer for a whole run and `close()`
    it (or use it as a context manager).
    """

    def __init__(
        self,
        specs: Sequence[Mapping[str, Any] | RewardSpec],
        *,
        shaping: Sequence[Mapping[str, Any]] | None = None,
        max_workers: int | None = None,
        max_processes: int | None = None,
    ):
        self.specs = [RewardSpec.from_config(s) for s in specs]
        if not self.specs:
            raise ValueError("RewardFunctionPool: no reward specs given")
        keys = [s.component for s in self.specs]
        dupes = [k for k, n in collections.Counter(keys).items() if n > 1]
        if dupes:
            raise ValueError(f"RewardFunctionPool: duplicate component keys {dupes}; set 'key'")
        for s in self.specs:
            if s.gate is not None and s.gate not in keys:
                raise ValueError(f"reward spec {s.component!r}: gate {s.gate!r} is not a component")
        self.shaping = [dict(s) for s in (shaping or [])]
        for s in self.shaping:
            SHAPING.get(s.get("name", "<missing name>"))  # fails early with the known names
        ncpu = os.cpu_count() or 1
        self.max_workers = max_workers or max(4, 2 * ncpu)
        self.max_processes = max_processes or ncpu
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._processes: multiprocessing.pool.Pool | None = None
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    # Pools -----------------------------------------------------------------

    def _thread_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                self.max_workers, thread_name_prefix="reward"
            )
        return self._threads

    def _process_pool(self):
        if self._processes is None:
            # spawn, not fork: the caller may hold JAX runtime threads.
            ctx = multiprocessing.get_context("spawn")
            self._processes = ctx.Pool(self.max_processes, initializer=_process_worker_init)
        return self._processes

    def _discard_thread_pool(self) -> None:
        # A thread stuck in a grader cannot be killed; let it finish on its own
        # and give later tasks fresh threads.
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    def _discard_process_pool(self) -> None:
        if self._processes is not None:
            self._processes.terminate()
            self._processes = None

    def close(self) -> None:
        """Shuts the pools down (a process pool is also terminated at interpreter exit)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._processes is not None:
            self._processes.terminate()
            self._processes.join()
            self._processes = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Scoring ---------------------------------------------------------------

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        fields: Fields | None = None,
        *,
        group_ids: Sequence[int] | np.ndarray | None = None,
        step: int | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Scores a batch.

        Args:
          prompts: [B] prompt strings.
          completions: [B] completion strings.
          fields: [B] dicts of dataset fields (default: empty dicts).
          group_ids: [B] int group of each row (completions of one prompt),
            passed to group rewards as the "group_id" field; default: rows with
            identical prompt text form a group.
          step: training step, passed to shaping transforms that use it (the
            seed of `reward_noise_flip`).

        Returns:
          scores: [B] float32 combined reward, Σ_k w_k·r_k over the components
            that scored the row, then the shaping transforms; NaN where no
            component could score the row.
          stats: {
            "components": {key: [B] float32 raw scores, NaN = unscorable},
            "valid": [B] bool, False where `scores` is NaN,
            "fallbacks": {key: {"exception": n, "timeout": n, "nonfinite": n}},
            "errors": {key: first error message}, only for components with one,
            "step_scores": {key: [B] lists}, only for components that give them,
            "diagnostics": {key: {name: [B] values}},
            "shaping": {name: metrics} from the shaping transforms,
            "metrics": flat {name: float} for logging: per component mean over
              scored rows, fallback rate, unscorable rate, and seconds,
          }
        """
        b = len(completions)
        if len(prompts) != b:
            raise ValueError(f"compute_rewards: {len(prompts)} prompts but {b} completions")
        if fields is None:
            fields = [{} for _ in range(b)]
        if len(fields) != b:
            raise ValueError(f"compute_rewards: {len(fields)} field dicts but {b} completions")
        if group_ids is None:
            first: dict[str, int] = {}
            group_ids = [first.setdefault(p, len(first)) for p in prompts]
        group_ids = np.asarray(group_ids, np.int32)
        if group_ids.shape != (b,):
            raise ValueError(f"compute_rewards: group_ids has shape {group_ids.shape}, need ({b},)")
        fields = [dict(f, group_id=int(g)) for f, g in zip(fields, group_ids)]
        with self._lock:
            components, fallbacks, errors, steps, diags, seconds = self._score_all(
                list(prompts), list(completions), fields
            )
        weights = {s.component: s.weight for s in self.specs}
        gates = {s.component: (s.gate, s.gate_threshold) for s in self.specs if s.gate}
        scores = shaping.weighted_sum(components, weights, gates=gates)
        shaping_metrics: dict[str, Any] = {}
        if self.shaping:
            scores, shaping_metrics = shaping.apply_shaping(
                scores,
                self.shaping,
                components=components,
                weights=weights,
                group_ids=group_ids,
                fields=fields,
                step=step,
            )
        metrics: dict[str, float] = {}
        for spec in self.specs:
            key = spec.component
            r = components[key]
            ok = ~np.isnan(r)
            metrics[f"rewards/{key}/mean"] = float(r[ok].mean()) if ok.any() else float("nan")
            metrics[f"rewards/{key}/unscorable_frac"] = float(1.0 - ok.mean()) if b else 0.0
            metrics[f"rewards/{key}/fallback_frac"] = sum(fallbacks[key].values()) / max(b, 1)
            metrics[f"rewards/{key}/seconds"] = seconds[key]
        valid = ~np.isnan(scores)
        metrics["rewards/total/mean"] = float(scores[valid].mean()) if valid.any() else float("nan")
        stats = {
            "components": {k: v.astype(np.float32) for k, v in components.items()},
            "valid": valid,
            "fallbacks": fallbacks,
            "errors": errors,
            "step_scores": steps,
            "diagnostics": diags,
            "shaping": shaping_metrics,
            "metrics": metrics,
        }
        return scores, stats

    def _score_all(self, prompts, completions, fields):
        b = len(completions)
        components = {s.component: np.full(b, np.nan, np.float64) for s in self.specs}
        fallbacks = {s.component: dict.fromkeys(_REASONS, 0) for s in self.specs}
        errors: dict[str, str] = {}
        steps: dict[str, list] = {}
        diags: dict[str, dict[str, list]] = {}
        seconds = dict.fromkeys(components, 0.0)

        tasks: list[_Task] = []
        for i, spec in enumerate(self.specs):
            if reward_info(spec.name).per_sample:
                tasks += [_Task(i, (r,)) for r in range(b)]
            elif b:
                tasks.append(_Task(i, tuple(range(b))))

        def args(task: _Task):
            spec = self.specs[task.spec_index]
            rows = task.rows
            return (
                spec.name,
                REWARDS.get(spec.name).__module__,
                dict(spec.kwargs),
                [prompts[r] for r in rows],
                [completions[r] for r in rows],
                [fields[r] for r in rows],
                spec.timeout_s,
            )

        def record(task: _Task, result: _TaskResult | None, reason: str | None, err: str = ""):
            spec = self.specs[task.spec_index]
            key = spec.component
            if result is None:
                for r in task.rows:
                    components[key][r] = spec.fallback
                fallbacks[key][reason] += len(task.rows)
                errors.setdefault(key, err)
                if (key, reason) not in self._warned:
                    self._warned.add((key, reason))
                    log.warning(
                        "reward %r: %s on a sample, scored %s (%s)", key, reason, spec.fallback, err
                    )
                return
            for j, r in enumerate(task.rows):
                s = result.scores[j]
                if s is not None and not math.isfinite(s):
                    components[key][r] = spec.fallback
                    fallbacks[key]["nonfinite"] += 1
                    errors.setdefault(key, f"non-finite score {s}")
                else:
                    components[key][r] = np.nan if s is None else s
            if result.step_scores is not None:
                dst = steps.setdefault(key, [None] * b)
                for j, r in enumerate(task.rows):
                    dst[r] = result.step_scores[j]
            if result.diagnostics:
                d = diags.setdefault(key, {})
                for name, values in result.diagnostics.items():
                    dst = d.setdefault(name, [None] * b)
                    for j, r in enumerate(task.rows):
                        dst[r] = values[j]

        by_executor: dict[str, list[_Task]] = collections.defaultdict(list)
        for t in tasks:
            spec = self.specs[t.spec_index]
            by_executor[spec.executor or reward_info(spec.name).executor].append(t)

        start = time.monotonic()
        # Pools first so that their tasks overlap with the inline ones.
        thread_futures = self._submit_threads(by_executor["thread"], args)
        process_results = self._submit_processes(by_executor["process"], args)
        for t in by_executor["inline"]:
            t0 = time.monotonic()
            try:
                record(t, _call(*args(t)[:6], None), None)
            except Exception as e:
                record(t, None, "exception", f"{type(e).__name__}: {e}")
            seconds[self.specs[t.spec_index].component] += time.monotonic() - t0
        self._collect_threads(thread_futures, record)
        self._collect_processes(process_results, record)
        elapsed = time.monotonic() - start
        for t in by_executor["thread"] + by_executor["process"]:
            key = self.specs[t.spec_index].component
            seconds[key] = max(seconds[key], elapsed)
        return components, fallbacks, errors, steps, diags, seconds

    # Thread pool: per-task deadline measured from the moment the task starts.

    def _submit_threads(self, tasks, args):
        if not tasks:
            return []
        pool = self._thread_pool()
        out = []
        for t in tasks:
            started: list[float] = []
            out.append((t, pool.submit(_timed_call, args(t), started), started))
        return out

    def _collect_threads(self, futures, record):
        pending = list(futures)
        abandoned = False
        while pending:
            still = []
            now = time.monotonic()
            for t, fut, started in pending:
                spec = self.specs[t.spec_index]
                if fut.done():
                    try:
                        record(t, fut.result(), None)
                    except concurrent.futures.CancelledError:
                        record(t, None, "timeout", "cancelled after a stuck task")
                    except Exception as e:
                        record(t, None, "exception", f"{type(e).__name__}: {e}")
                elif started and now - started[0] > spec.timeout_s:
                    record(t, None, "timeout", f"no result after {spec.timeout_s} s")
                    abandoned = True
                else:
                    still.append((t, fut, started))
            pending = still
            if pending:
                concurrent.futures.wait(
                    [f for _, f, _ in pending],
                    timeout=0.05,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
        if abandoned:
            self._discard_thread_pool()

    # Process pool: workers bound each task with an alarm; a watchdog kills
    # the pool if a task is stuck in C code where the alarm cannot reach it.

    def _submit_processes(self, tasks, args):
        if not tasks:
            return []
        pool = self._process_pool()
        return [(t, pool.apply_async(_call, args(t))) for t in tasks]

    def _collect_processes(self, results, record):
        if not results:
            return
        longest = max(self.specs[t.spec_index].timeout_s for t, _ in results)
        waves = math.ceil(len(results) / self.max_processes)
        deadline = time.monotonic() + waves * (longest + 1.0) + 5.0
        stuck = False
        for t, res in results:
            try:
                res.wait(max(deadline - time.monotonic(), 0.0))
                if not res.ready():
                    stuck = True
                    record(t, None, "timeout", "process pool watchdog")
                    continue
                record(t, res.get(), None)
            except _SampleTimeout:
                spec = self.specs[t.spec_index]
                record(t, None, "timeout", f"no result after {spec.timeout_s} s")
            except Exception as e:
                record(t, None, "exception", f"{type(e).__name__}: {e}")
        if stuck:
            self._discard_process_pool()


def compute_rewards(
    specs: Sequence[Mapping[str, Any] | RewardSpec],
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Fields | None = None,
    *,
    group_ids: Sequence[int] | np.ndarray | None = None,
    shaping: Sequence[Mapping[str, Any]] | None = None,
    step: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One-shot `RewardFunctionPool(specs, shaping=shaping)(prompts, completions, fields)`.

    Keep a `RewardFunctionPool` across steps instead when a component uses the
    process pool (its workers start once).
    """
    with RewardFunctionPool(specs, shaping=shaping) as computer:
        return computer(prompts, completions, fields, group_ids=group_ids, step=step)
