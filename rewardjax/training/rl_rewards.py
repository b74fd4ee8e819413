"""The RL loop's reward step: the task's own checker, registered reward functions and reward models.

Config (`config.rewards`); every key is checked when the trainer starts, and
a key not listed here is an error that names it:
  sources: {key: {weight, kwargs[, name, gate]}}. The key "task_correct" is
    the task's step-level checker (1.0 for a correct final answer); a key (or
    `name`) of `MODEL_REWARDS` is a trained reward model
    (`rewardjax.scoring.sources`: orm_reward, orm_ensemble_reward,
    prm_reward, implicit_prm_reward; kwargs give its directory and how its
    scores become rewards); any other key names a `rewardjax.rewards`
    function, run by `rewardjax.rewards.RewardFunctionPool` (or set `name` to
    use one function twice under different keys); a likelihood reward
    (ref_answer_logprob, rlpr_prob_reward) is computed by the RL trainer with
    the policy, teacher-forcing the reference answer after the sampled
    reasoning (kwargs.answer_prefix, default "A: ", marks where the answer
    starts), and handed in as `device_scores`.
    Weights mix the sources, e.g. the verifiable outcome with a PRM:
      {"task_correct": {weight: 1.0}, "prm_reward": {weight: 0.5, kwargs: {path: ..., aggregation: "min"}}}
    gate (success_gated_process): the source counts only on rows where another
    source's raw score is ≥ a threshold, `gate: "task_correct"` or
    `gate: {source: "task_correct", threshold: 1.0}` (threshold 1.0 by
    default); its token rewards are zeroed on the other rows too.
  fallback: score for samples whose reward function raised, timed out or
    returned a non-finite value (each counted by reason); default 0.0.
  unscorable: "fallback" (default) scores such samples with `fallback`;
    "exclude" marks their rows invalid instead (info["valid"] False, score 0,
    stats["unscorable_frac"]), a row being unscorable where a scalar source
    raised, timed out, returned None or a non-finite value (a gated source
    whose gate is closed does not count there).
  verifier_scale: "01" (default) rewards the task checker's outcome with
    {0, 1}, "pm1" with {−1, +1}.
  shaping: ordered `rewardjax.rewards.shaping.apply_shaping` steps
    [{"name": <step>, **kwargs}] applied to the combined reward, e.g.
    [{"name": "reward_clip", "low": -1.0, "high": 1.0}]; their components are
    the sources' raw scores by config key. Default [] (no shaping).
  timeout_s: per-sample limit for registered reward functions; default None
    (each function's registered limit).
  num_workers: threads and processes of the reward-function pools; default 0
    (the pools' defaults: 2×CPUs threads, at least 4, and CPUs processes).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from rewardjax import scoring  # noqa: F401  (registers MODEL_REWARDS)
from rewardjax.data.tasks.base import Problem
from rewardjax.judges import reward as _judge_reward  # noqa: F401  (generative_judge_reward)
from rewardjax.registry import MODEL_REWARDS, REWARDS, bind, hyperparameters
from rewardjax.rewards import shaping
from rewardjax.rewards.base import plain_config, reward_info

# Keys of `config.rewards` with their defaults; "sources" has none.
BLOCK_DEFAULTS: dict[str, Any] = dict(
    fallback=0.0,
    num_workers=0,
    shaping=[],
    timeout_s=None,
    unscorable="fallback",
    verifier_scale="01",
)
SOURCE_KEYS = ("gate", "kwargs", "name", "weight")
# Where the procedural tasks' answer line starts: a likelihood reward puts the
# reference answer after it (`rewards.sources.<key>.kwargs.answer_prefix`).
DEFAULT_ANSWER_PREFIX = "A: "
GATE_KEYS = ("source", "threshold")
UNSCORABLE_MODES = ("fallback", "exclude")
VERIFIER_SCALES = ("01", "pm1")

# Keyword arguments of shaping steps that name reward components, checked
# against the source keys at start.
_COMPONENT_ARGS = {
    "success_gate": ("outcome", "gated"),
    "logsigmoid_transform": ("keys",),
    "reward_ensemble_agg": ("keys",),
    "weighted_sum": ("weights", "gates"),
}


class Gate(NamedTuple):
    """A source counts only where `source`'s raw score is ≥ `threshold`."""

    source: str
    threshold: float


class RewardComputer:
    """Scores completions: r = Σ_k w_k·g_k·r_k over the configured sources, then shaping.

    g_k = 1[r_gate(k) ≥ threshold] for a gated source, else 1. Without shaping
    and with unscorable="fallback" this is the plain weighted sum.

    Args:
      rewards_cfg: `config.rewards` (see the module docstring).
      task: the task whose checker the "task_correct" source calls, or None.
      tokenizer: the policy's tokenizer (model sources read its tokens).
      max_new_tokens: the completion budget, given to reward functions as the
        "max_length" field.
      group_size: completions per prompt; rows are group-contiguous, so row i
        is in group i // group_size (group rewards and group shaping steps read
        it). None: rows with identical prompts form a group. A call may pass
        its own `group_ids` [B] instead (rows that are not groups).

    Attributes:
      token_level_sources: keys of the sources that give token-level rewards.

    Returns (from `__call__`, which takes the training `step` for step-seeded
    shaping) `(scores [B] float32, info)` with info["correct"]
    [B] (the task's outcome, or the first source's score > 0.5 without a task
    checker), info["valid"] [B] bool (False only on unscorable rows under
    unscorable="exclude") and info["stats"] (per-source means, fallback
    counts, "shaping/..." step metrics). Process-reward sources with a credit
    rule add info["token_rewards"] [B, T] float32: Σ_k w_k·(step rewards
    placed at the step-end tokens of the policy's own completion tokens), to
    be added to the outcome placed at the last token.
    """

    def __init__(
        self,
        rewards_cfg,
        *,
        task,
        tokenizer,
        max_new_tokens: int | None = None,
        group_size: int | None = None,
    ):
        cfg = plain_config(rewards_cfg)
        if not isinstance(cfg, Mapping):
            raise ValueError(f"config rewards must be a dict, got {rewards_cfg!r}")
        known = sorted(["sources", *BLOCK_DEFAULTS])
        _check_keys(cfg, known, "rewards")
        cfg = {**BLOCK_DEFAULTS, **cfg}
        self.task = task
        self.max_new_tokens = max_new_tokens
        if group_size is not None and (
            not isinstance(group_size, int | np.integer) or group_size < 1
        ):
            raise ValueError(f"RewardComputer: group_size must be an integer ≥ 1, got {group_size}")
        self.group_size = group_size
        self.fallback = float(cfg["fallback"])
        self.unscorable = cfg["unscorable"]
        if self.unscorable not in UNSCORABLE_MODES:
            raise ValueError(
                f"config rewards.unscorable must be one of {', '.join(UNSCORABLE_MODES)}, "
                f"got {self.unscorable!r}"
            )
        self.verifier_scale = cfg["verifier_scale"]
        if self.verifier_scale not in VERIFIER_SCALES:
            raise ValueError(
                f"config rewards.verifier_scale must be one of {', '.join(VERIFIER_SCALES)}, "
                f"got {self.verifier_scale!r}"
            )
        num_workers = cfg["num_workers"]
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                f"config rewards.num_workers must be an integer ≥ 0, got {num_workers}"
            )
        timeout_s = cfg["timeout_s"]

        sources = cfg.get("sources") or {}
        if not isinstance(sources, Mapping) or not sources:
            raise ValueError("config rewards.sources is empty: nothing to reward")
        if self.verifier_scale != "01" and "task_correct" not in sources:
            raise ValueError(
                f"config rewards.verifier_scale={self.verifier_scale!r} scales the task checker's "
                "outcome, but rewards.sources has no task_correct"
            )
        # Before any reward model loads: a mistyped step fails at once.
        self.shaping = _shaping_steps(cfg["shaping"], list(sources))
        self.weights: dict[str, float] = {}
        self.gates: dict[str, Gate] = {}
        self._has_task_source = False
        self._function_keys: list[str] = []
        self._models: list[tuple[str, Any]] = []
        # Likelihood rewards the trainer computes with the policy (`DeviceSource`).
        self.device_sources: list[DeviceSource] = []
        specs = []
        for key, spec in sources.items():
            where = f"rewards.sources.{key}"
            if not isinstance(spec, Mapping):
                raise ValueError(
                    f"config {where}: a source is a dict with keys {', '.join(SOURCE_KEYS)}, "
                    f"got {spec!r}"
                )
            _check_keys(spec, SOURCE_KEYS, where)
            self.weights[key] = float(spec.get("weight", 1.0))
            gate = _gate(key, spec.get("gate"), sources)
            if gate is not None:
                self.gates[key] = gate
            kwargs = dict(spec.get("kwargs") or {})
            if key == "task_correct":
                if task is None:
                    raise ValueError("rewards.sources.task_correct needs a task with a checker")
                if kwargs or "name" in spec:
                    raise ValueError(
                        f"config {where}: the task checker takes no name or kwargs, only "
                        "weight and gate"
                    )
                self._has_task_source = True
                continue
            if spec.get("name", key) in MODEL_REWARDS:
                self._models.append((key, _model_source(key, spec, tokenizer, task)))
                continue
            name = spec.get("name", key)
            if name in REWARDS and reward_info(name).device:
                self.device_sources.append(_device_source(key, name, kwargs))
                continue
            self._function_keys.append(key)
            specs.append(
                dict(
                    name=spec.get("name", key),
                    key=key,
                    weight=self.weights[key],
                    kwargs=kwargs,
                    timeout_s=None if timeout_s is None else float(timeout_s),
                    # Under "exclude" an unscorable sample stays NaN, to be found per row.
                    fallback=self.fallback if self.unscorable == "fallback" else float("nan"),
                )
            )
        # Sources that give token-level (process) rewards, in config order.
        self.token_level_sources = [
            key for key, source in self._models if getattr(source, "token_level", False)
        ]
        for key, gate in self.gates.items():
            if gate.source in self.token_level_sources:
                raise ValueError(
                    f"config rewards.sources.{key}.gate: source {gate.source!r} gives token "
                    "rewards only, no per-row score to gate on"
                )
        self._external = None
        if specs:
            from rewardjax.rewards.base import RewardFunctionPool

            self._external = RewardFunctionPool(
                specs, max_workers=num_workers or None, max_processes=num_workers or None
            )

    def __call__(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        lengths: np.ndarray,  # [B] completion tokens
        truncated: np.ndarray,  # [B] bool, hit the token budget
        tokens: np.ndarray | None = None,  # [B, T] the policy's completion tokens
        step: int | None = None,  # training step: seeds step-dependent shaping
        group_ids: np.ndarray | None = None,  # [B] int; default row // group_size
        device_scores: Mapping[str, np.ndarray] | None = None,  # key → [B] (device_sources)
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = len(completions)
        prompts = [p.prompt for p in problems]
        if group_ids is None:
            group_ids = self._group_ids(prompts)
        group_ids = np.asarray(group_ids, np.int32)
        if group_ids.shape != (n,):
            raise ValueError(f"RewardComputer: group_ids has shape {group_ids.shape}, need ({n},)")
        fields = self._fields(problems, lengths, truncated)
        stats: dict[str, float] = {}
        # Raw per-row score of each scalar source, by config key.
        components: dict[str, np.ndarray] = {}
        correct = np.zeros(n, bool)
        if self.task is not None:
            grades = [self.task.grade(p, c) for p, c in zip(problems, completions)]
            correct = np.array([g.correct for g in grades], bool).reshape(n)
            stats["task_correct"] = float(correct.mean())
            stats["well_formed"] = float(np.mean([g.well_formed for g in grades]))
            if self._has_task_source:
                low = 0.0 if self.verifier_scale == "01" else -1.0
                components["task_correct"] = np.where(correct, 1.0, low)
            # The task's verdict, for reward functions that read it (rlcr_brier's correct_key).
            for f, ok in zip(fields, correct):
                f.setdefault("correct", float(ok))
        if self._external is not None:
            _, ext_stats = self._external(
                prompts, list(completions), fields, group_ids=group_ids, step=step
            )
            for key in self._function_keys:
                components[key] = np.asarray(ext_stats["components"][key], np.float64)
            stats.update(_flatten(ext_stats))
        for source in self.device_sources:
            if device_scores is None or source.key not in device_scores:
                raise ValueError(
                    f"rewards.sources.{source.key} ({source.name}) is computed on device by the "
                    "trainer: pass its [B] scores as device_scores"
                )
            components[source.key] = np.asarray(device_scores[source.key], np.float64).reshape(n)
            stats[f"{source.key}/mean"] = float(np.mean(components[source.key]))
        token_parts: dict[str, np.ndarray] = {}
        for key, source in self._models:
            model_scores, model_tokens, model_stats = source(
                prompts,
                list(completions),
                tokens=tokens,
                lengths=np.asarray(lengths),
                problems=list(problems),
            )
            if model_scores is not None:
                components[key] = np.asarray(model_scores, np.float64).reshape(n)
            if model_tokens is not None:
                token_parts[key] = np.asarray(model_tokens, np.float64)
                if self.task is not None:
                    # Reward hacking shows as process reward that stops tracking correctness.
                    totals = token_parts[key].sum(axis=1)
                    for name, rows in (("correct", correct), ("incorrect", ~correct)):
                        if rows.any():
                            model_stats[f"total_{name}_mean"] = float(totals[rows].mean())
            stats.update({f"{key}/{k}": v for k, v in model_stats.items()})

        gate_open: dict[str, np.ndarray] = {}
        for key, gate in self.gates.items():
            if gate.source not in components:
                raise ValueError(
                    f"config rewards.sources.{key}.gate: source {gate.source!r} gave no "
                    "per-row score to gate on"
                )
            # An unscorable gate score closes the gate.
            gate_open[key] = np.nan_to_num(components[gate.source], nan=-np.inf) >= gate.threshold
            stats[f"{key}/gate_open_frac"] = float(gate_open[key].mean()) if n else 0.0
        contributions = {
            key: np.where(gate_open[key], self.weights[key] * r, 0.0)
            if key in gate_open
            else self.weights[key] * r
            for key, r in components.items()
        }

        ext = None
        if self._function_keys:
            # Σ_k over the functions that scored the row; NaN where none did.
            parts = np.stack([contributions[k] for k in self._function_keys])
            ext = np.where(np.isnan(parts).all(0), np.nan, np.nansum(parts, 0))
        if self.unscorable == "exclude":
            valid = np.ones(n, bool)
            for r in contributions.values():
                valid &= np.isfinite(r)
            scores = np.zeros(n, np.float64)
            for r in contributions.values():
                scores += r
            scores = np.where(valid, scores, np.nan)  # shaping leaves NaN rows out
            stats["unscorable_frac"] = float(1.0 - valid.mean()) if n else 0.0
        else:
            valid = np.ones(n, bool)
            scores = np.zeros(n, np.float64)
            for key, r in contributions.items():
                if key not in self._function_keys:
                    scores += r
            if ext is not None:
                ext = np.where(np.isfinite(ext), ext, self.fallback)
                scores += ext
        if self.task is None:
            if ext is not None:
                correct = ext > 0.5
            else:
                for key, _ in self._models:
                    if key in components and not correct.any():
                        correct = components[key] > 0.5

        if self.shaping:
            scores, shaping_metrics = shaping.apply_shaping(
                scores,
                self.shaping,
                components=components,
                weights=self.weights,
                group_ids=group_ids,
                fields=fields,
                step=step,
            )
            stats.update(_flatten(shaping_metrics, "shaping/"))
        if self.unscorable == "exclude":
            scores = np.where(valid, scores, 0.0)

        info: dict[str, Any] = {"correct": correct, "valid": valid, "stats": stats}
        token_rewards = None
        for key, t in token_parts.items():
            t = self.weights[key] * t
            if key in gate_open:
                t = np.where(gate_open[key][:, None], t, 0.0)
            token_rewards = t if token_rewards is None else token_rewards + t
        if token_rewards is not None:
            token_rewards = np.where(valid[:, None], token_rewards, 0.0)
            info["token_rewards"] = token_rewards.astype(np.float32)
        return np.asarray(scores, np.float32), info

    def _group_ids(self, prompts: Sequence[str]) -> np.ndarray:
        n = len(prompts)
        if self.group_size is None:
            first: dict[str, int] = {}
            return np.asarray([first.setdefault(p, len(first)) for p in prompts], np.int32)
        if n % self.group_size:
            raise ValueError(
                f"RewardComputer: {n} rows are not whole groups of group_size={self.group_size}; "
                "pass group_ids for rows that are not groups (e.g. one greedy row per prompt)"
            )
        return (np.arange(n) // self.group_size).astype(np.int32)

    def _fields(self, problems, lengths, truncated) -> list[dict[str, Any]]:
        """Per-row problem fields, as reward functions and shaping steps read them."""
        fields = []
        for p, length, trunc in zip(problems, lengths, truncated):
            f = dict(p.fields)
            f.setdefault("answer", p.answer)
            f["completion_length"] = int(length)
            f["truncated"] = bool(trunc)
            if self.max_new_tokens is not None:
                f["max_length"] = self.max_new_tokens
            fields.append(f)
        return fields


def _check_keys(block: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(block) - set(known))
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise ValueError(
            f"config {where}: unknown key{s} {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def _gate(key: str, gate: Any, sources: Mapping[str, Any]) -> Gate | None:
    """Reads a source's `gate`: a source key, or {source, threshold}."""
    where = f"rewards.sources.{key}.gate"
    if gate is None:
        return None
    if isinstance(gate, str):
        gate = {"source": gate}
    if not isinstance(gate, Mapping) or "source" not in gate:
        raise ValueError(
            f"config {where}: a source key or a dict {{source, threshold}}, got {gate!r}"
        )
    _check_keys(gate, GATE_KEYS, where)
    source = gate["source"]
    if source == key:
        raise ValueError(f"config {where}: a source cannot gate itself")
    if source not in sources:
        raise ValueError(
            f"config {where}: {source!r} is not a reward source; sources: {', '.join(sources)}"
        )
    return Gate(source, float(gate.get("threshold", 1.0)))


def _shaping_steps(steps: Any, source_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Checks `rewards.shaping` at start: step names, their kwargs and the components they name."""
    if not isinstance(steps, list | tuple):
        raise ValueError(f"config rewards.shaping must be a list of steps, got {steps!r}")
    # The table `apply_shaping` dispatches on (steps wrap the SHAPING transforms).
    known_steps = shaping._STEPS
    out = []
    for i, step in enumerate(steps):
        where = f"rewards.shaping[{i}]"
        if not isinstance(step, Mapping) or "name" not in step:
            raise ValueError(
                f"config {where}: a shaping step is a dict {{'name': <step>, **kwargs}}, "
                f"got {step!r}"
            )
        kwargs = dict(step)
        name = kwargs.pop("name")
        if name not in known_steps:
            raise ValueError(
                f"config {where}: unknown shaping step {name!r}; "
                f"known: {', '.join(sorted(known_steps))}"
            )
        where = f"{where} ({name})"
        params = hyperparameters(known_steps[name])
        _check_keys(kwargs, ["name", *params], where)
        missing = [
            k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs
        ]
        if missing:
            raise ValueError(f"config {where}: needs {', '.join(missing)}")
        for arg in _COMPONENT_ARGS.get(name, ()):
            for ref in _component_refs(kwargs.get(arg)):
                if ref not in source_keys:
                    raise ValueError(
                        f"config {where}.{arg}: {ref!r} is not a reward source; "
                        f"sources: {', '.join(source_keys)}"
                    )
        out.append({"name": name, **kwargs})
    return out


def _component_refs(value: Any) -> list[str]:
    """Component keys named by a shaping kwarg: a key, a list of keys, or a dict over keys."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):  # weights {key: w} or gates {key: (outcome, threshold)}
        refs = list(value)
        for v in value.values():
            if isinstance(v, list | tuple) and v and isinstance(v[0], str):
                refs.append(v[0])
        return refs
    return [v for v in value if isinstance(v, str)]


def _flatten(stats: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar stats, nested names joined by "/"; arrays and strings are left out."""
    out: dict[str, float] = {}
    for k, v in stats.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, name + "/"))
        elif np.ndim(v) == 0:
            try:
                out[name] = float(v)
            except (TypeError, ValueError):
                continue
    return out


class DeviceSource(NamedTuple):
    """A likelihood reward (`rewardjax.rewards.likelihood`) the RL trainer computes on device.

    fn(logprobs [B, T], answer_mask [B, T][, baseline_logprobs, baseline_mask]) -> [B],
    its kwargs bound; answer_prefix marks where a completion's answer starts
    (the reference answer replaces what follows it); baseline: the function
    also reads a no-reasoning pass (RLPR's debiasing).
    """

    key: str
    name: str
    fn: Any
    answer_prefix: str
    baseline: bool


def _device_source(key: str, name: str, kwargs: Mapping[str, Any]) -> DeviceSource:
    """Binds a device reward's kwargs (checked, naming the key); `answer_prefix` is the trainer's."""
    kwargs = dict(kwargs)
    answer_prefix = kwargs.pop("answer_prefix", DEFAULT_ANSWER_PREFIX)
    if not isinstance(answer_prefix, str):
        raise ValueError(f"config rewards.sources.{key}.kwargs.answer_prefix must be a string")
    fn = REWARDS.get(name)
    bound = bind(fn, kwargs, what=f"rewards.sources.{key}.kwargs")
    params = inspect.signature(fn).parameters
    debias = hyperparameters(bound).get("debias")
    baseline = "baseline_logprobs" in params and debias is not None and bool(debias.default)
    return DeviceSource(key, name, bound, answer_prefix, baseline)


def _model_source(key: str, spec: Mapping[str, Any], tokenizer, task):
    """Builds a `MODEL_REWARDS` source; errors name the config key.

    Every factory gets the policy tokenizer; one that grades (takes `task`) gets the task.
    """
    name = spec.get("name", key)
    kwargs = dict(spec.get("kwargs") or {})
    factory = MODEL_REWARDS.get(name)
    if "task" in hyperparameters(factory):
        kwargs["task"] = task
    try:
        return factory(**kwargs, policy_tokenizer=tokenizer)
    except TypeError as e:
        raise TypeError(f"config rewards.sources.{key} ({name}): {e}") from None
    except ValueError as e:
        raise type(e)(f"config rewards.sources.{key} ({name}): {e}") from None
