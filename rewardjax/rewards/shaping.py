"""Reward shaping and combination: pure array transforms, and a config pipeline over them.

Every transform is a pure numpy function of [B] (or [K, B]) rewards,
registered in SHAPING. NaN marks an unscorable row and stays NaN.
`apply_shaping` runs a list of config steps on the combined reward of
`RewardFunctionPool`:

    shaping=[{"name": "success_gate", "outcome": "accuracy", "gated": ["prm"]},
             {"name": "per_source_normalization", "source_key": "source"},
             {"name": "reward_clip", "low": -3.0, "high": 3.0},
             {"name": "reward_noise_flip", "p": 0.1, "seed": 0}]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rewardjax.registry import SHAPING

Components = Mapping[str, np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    # log σ(x) = −softplus(−x), stable for large |x|.
    return -np.logaddexp(0.0, -x)


@SHAPING.register("weighted_sum")
def weighted_sum(
    components: Components,  # {key: [B]} NaN = unscorable
    weights: Mapping[str, float],
    *,
    gates: Mapping[str, tuple[str, float]] | None = None,
) -> np.ndarray:
    """r = Σ_k w_k·r_k over the components that scored the row (nansum); NaN if none did.

    Args:
      components: {key: [B]} component rewards.
      weights: {key: w_k}; components without a weight are left out.
      gates: {key: (outcome_key, threshold)}: r_k counts only where
        r_outcome ≥ threshold (see `success_gate`).

    Returns:
      [B] float32.

    Source: TRL `reward_weights`; tunix (nansum).
    """
    keys = [k for k in weights if k in components]
    missing = [k for k in weights if k not in components]
    if missing:
        raise KeyError(f"weighted_sum: no component {missing}; have {sorted(components)}")
    b = len(next(iter(components.values()))) if components else 0
    total = np.zeros(b, np.float64)
    scored = np.zeros(b, bool)
    for k in keys:
        r = np.asarray(components[k], np.float64)
        if gates and k in gates:
            outcome, threshold = gates[k]
            r = success_gate(components[outcome], r, threshold=threshold)
        ok = ~np.isnan(r)
        total[ok] += weights[k] * r[ok]
        scored |= ok
    total[~scored] = np.nan
    return total.astype(np.float32)


@SHAPING.register("success_gate")
def success_gate(
    outcome: np.ndarray,  # [B] outcome reward
    process: np.ndarray,  # [B] reward that counts only on success
    *,
    threshold: float = 1.0,
) -> np.ndarray:
    """process·1[outcome ≥ threshold]: a process reward only counts when the outcome succeeded.

    An unscorable (NaN) outcome closes the gate; a NaN process reward stays NaN
    where the gate is open.
    """
    outcome = np.asarray(outcome, np.float64)
    process = np.asarray(process, np.float64)
    open_ = np.nan_to_num(outcome, nan=-np.inf) >= threshold
    return np.where(open_, process, 0.0).astype(np.float32)


@SHAPING.register("per_source_normalization")
def per_source_normalization(
    rewards: np.ndarray,  # [B]
    sources: Sequence[Any],  # [B] source (dataset, task) of each row
    *,
    eps: float = 1e-6,
    ddof: int = 0,
) -> np.ndarray:
    """(r − mean_s) / (std_s + ε) within each source s, over its scored rows.

    Puts rewards of differently scaled sources (a 0/1 verifier, a reward
    model's logits) on one scale before they share an advantage.
    """
    r = np.asarray(rewards, np.float64)
    out = np.full_like(r, np.nan)
    keys = np.asarray([str(s) for s in sources])
    for s in np.unique(keys):
        rows = (keys == s) & ~np.isnan(r)
        if not rows.any():
            continue
        x = r[rows]
        sd = x.std(ddof=ddof) if len(x) > ddof else 0.0
        out[rows] = (x - x.mean()) / (sd + eps)
    return out.astype(np.float32)


@SHAPING.register("par_bounded_centered")
def par_bounded_centered(
    rewards: np.ndarray,  # [B] r(x, y)
    ref_rewards: np.ndarray,  # [B, M] r(x, y_ref,m) of M reference responses to the same prompt
) -> np.ndarray:
    """Preference As Reward: r̃ = (1/M)·Σ_m σ(r(x, y) − r(x, y_ref,m)).

    Bounded in (0, 1), centred at 0.5 when r equals the reference rewards,
    steep near them and flat far away, which limits reward hacking.

    Source: "Reward Shaping to Mitigate Reward Hacking in RLHF".
    """
    r = np.asarray(rewards, np.float64)
    ref = np.asarray(ref_rewards, np.float64)
    if ref.ndim == 1:
        ref = ref[:, None]
    if ref.shape[0] != r.shape[0]:
        raise ValueError(f"par_bounded_centered: rewards [{r.shape[0]}] vs ref_rewards {ref.shape}")
    return _sigmoid(r[:, None] - ref).mean(axis=1).astype(np.float32)


@SHAPING.register("logsigmoid_transform")
def logsigmoid_transform(
    rewards: np.ndarray,  # [K, B] one row per property
    ref_rewards: np.ndarray,  # [K, B] per-prompt reference reward of each property
) -> tuple[np.ndarray, np.ndarray]:
    """u_k = log σ(r_k − r_ref,k);  U = Σ_k u_k = log Π_k σ(r_k − r_ref,k).

    Each u_k ≤ 0 and concave; U is high only when every property beats its
    reference (a logical AND): one very bad property dominates the sum.

    Returns:
      U [B] and u [K, B], float32.

    Source: "Transforming and Combining Rewards for Aligning Large Language Models".
    """
    r = np.atleast_2d(np.asarray(rewards, np.float64))
    ref = np.atleast_2d(np.asarray(ref_rewards, np.float64))
    if r.shape != ref.shape:
        raise ValueError(f"logsigmoid_transform: rewards {r.shape} vs ref_rewards {ref.shape}")
    u = _log_sigmoid(r - ref)
    return u.sum(axis=0).astype(np.float32), u.astype(np.float32)


@SHAPING.register("reward_clip")
def reward_clip(rewards: np.ndarray, *, low: float = -np.inf, high: float = np.inf) -> np.ndarray:
    """clip(r, low, high)."""
    if low > high:
        raise ValueError(f"reward_clip: low {low} > high {high}")
    return np.clip(np.asarray(rewards, np.float64), low, high).astype(np.float32)


@SHAPING.register("reward_noise_flip")
def reward_noise_flip(
    rewards: np.ndarray,  # [B]
    *,
    p: float,
    seed: int,
    step: int = 0,
    low: float = 0.0,
    high: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """With probability p, r ← r_max + r_min − r (1 − r for 0/1 rewards); seeded by (seed, step).

    For robustness studies of training under noisy verifiers (the paper flips
    up to 40% of rewards). p = 0 is the identity.

    Returns:
      flipped rewards [B] float32 and the flip mask [B] bool.

    Source: "The Climb Carves Wisdom Deeper Than the Summit: On the Noisy
    Rewards in Learning to Reason".
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"reward_noise_flip: p must be in [0, 1], got {p}")
    r = np.asarray(rewards, np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(step)]))
    flip = (rng.random(r.shape) < p) & ~np.isnan(r)
    return np.where(flip, high + low - r, r).astype(np.float32), flip


ENSEMBLE_MODES = ("mean", "median", "min", "max", "mean_minus_std", "mean_minus_var")


@SHAPING.register("reward_ensemble_agg")
def reward_ensemble_agg(
    rewards: np.ndarray,  # [M, B] one row per ensemble member
    *,
    mode: str = "mean",
    lam: float = 1.0,
) -> np.ndarray:
    """Aggregates an ensemble of rewards, [M, B] → [B].

    mean; median; min (worst case); max; mean − λ·std and mean − λ·var
    (uncertainty-penalised). Members that could not score a row are ignored.

    Source: "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking".
    """
    x = np.asarray(rewards, np.float64)
    if x.ndim != 2:
        raise ValueError(f"reward_ensemble_agg: need [M, B] rewards, got shape {x.shape}")
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns → NaN
            if mode == "mean":
                out = np.nanmean(x, 0)
            elif mode == "median":
                out = np.nanmedian(x, 0)
            elif mode == "min":
                out = np.nanmin(x, 0)
            elif mode == "max":
                out = np.nanmax(x, 0)
            elif mode == "mean_minus_std":
                out = np.nanmean(x, 0) - lam * np.nanstd(x, 0)
            elif mode == "mean_minus_var":
                out = np.nanmean(x, 0) - lam * np.nanvar(x, 0)
            else:
                raise ValueError(f"reward_ensemble_agg: mode must be one of {ENSEMBLE_MODES}")
    return out.astype(np.float32)


# Config pipeline -----------------------------------------------------------


class ShapingContext:
    """What pipeline steps may read besides the combined reward."""

    def __init__(self, components, weights, group_ids, fields, step):
        self.components: Components = components
        self.weights: Mapping[str, float] = weights
        self.group_ids: np.ndarray = np.asarray(group_ids)
        self.fields: Sequence[Mapping[str, Any]] = fields
        self.step: int = step or 0

    def component(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self.components[key], np.float64)
        except KeyError:
            raise KeyError(
                f"shaping: no reward component {key!r}; have {sorted(self.components)}"
            ) from None

    def field(self, key: str) -> list[Any]:
        try:
            return [f[key] for f in self.fields]
        except KeyError:
            raise KeyError(f"shaping: every sample needs the field {key!r}") from None

    def group_quantile(self, r: np.ndarray, q: float) -> np.ndarray:
        out = np.full_like(r, np.nan)
        for g in np.unique(self.group_ids):
            rows = self.group_ids == g
            vals = r[rows][~np.isnan(r[rows])]
            if len(vals):
                out[rows] = np.quantile(vals, q)
        return out


Step = Callable[..., tuple[np.ndarray, dict[str, Any]]]
_STEPS: dict[str, Step] = {}


def _step(name: str):
    def decorator(fn: Step) -> Step:
        SHAPING.get(name)  # a pipeline step always wraps a registered transform
        _STEPS[name] = fn
        return fn

    return decorator


@_step("weighted_sum")
def _weighted_sum_step(scores, ctx, *, weights, gates=None):
    gates = {k: (v[0], float(v[1])) for k, v in (gates or {}).items()}
    return weighted_sum(ctx.components, weights, gates=gates), {}


@_step("success_gate")
def _success_gate_step(scores, ctx, *, outcome, gated, threshold=1.0):
    # Remove each gated component's weighted contribution where the outcome failed.
    out = np.asarray(scores, np.float64).copy()
    fail = ~(np.nan_to_num(ctx.component(outcome), nan=-np.inf) >= threshold)
    for key in gated:
        r = np.nan_to_num(ctx.component(key), nan=0.0)
        out[fail] -= ctx.weights.get(key, 1.0) * r[fail]
    return out.astype(np.float32), {"gate_closed_frac": float(fail.mean()) if len(fail) else 0.0}


@_step("per_source_normalization")
def _per_source_step(scores, ctx, *, source_key="source", eps=1e-6, ddof=0):
    return per_source_normalization(scores, ctx.field(source_key), eps=eps, ddof=ddof), {}


@_step("par_bounded_centered")
def _par_step(scores, ctx, *, reference="field", ref_key="ref_rewards"):
    """reference="field": each row's M reference rewards from the field `ref_key`;
    "group": the rewards of the other samples of its group (leave-one-out, finite ones)."""
    if reference == "group":
        r = np.asarray(scores, np.float64)
        out = np.full(r.shape, np.nan)
        for g in np.unique(ctx.group_ids):
            rows = np.flatnonzero(ctx.group_ids == g)
            for i in rows:
                refs = r[[j for j in rows if j != i and np.isfinite(r[j])]]
                if np.isfinite(r[i]):
                    # No other scorable sample: the reward sits at the centre.
                    out[i] = par_bounded_centered(r[i : i + 1], refs[None])[0] if refs.size else 0.5
        return out, {}
    if reference != "field":
        raise ValueError(
            f"par_bounded_centered: reference must be field or group, got {reference!r}"
        )
    refs = [np.atleast_1d(np.asarray(v, np.float64)) for v in ctx.field(ref_key)]
    m = {len(v) for v in refs}
    if len(m) != 1:
        raise ValueError(f"par_bounded_centered: field {ref_key!r} needs the same M in every row")
    return par_bounded_centered(scores, np.stack(refs)), {}


@_step("logsigmoid_transform")
def _logsigmoid_step(
    scores, ctx, *, keys, reference="group_quantile", quantile=0.5, ref_prefix="ref_"
):
    r = np.stack([ctx.component(k) for k in keys])
    if reference == "group_quantile":
        ref = np.stack([ctx.group_quantile(x, quantile) for x in r])
    elif reference == "field":
        ref = np.stack([np.asarray(ctx.field(ref_prefix + k), np.float64) for k in keys])
    else:
        raise ValueError(
            f"logsigmoid_transform: reference must be group_quantile or field, got {reference!r}"
        )
    total, u = logsigmoid_transform(r, ref)
    return total, {f"u_{k}_mean": float(np.nanmean(u[i])) for i, k in enumerate(keys)}


@_step("reward_clip")
def _clip_step(scores, ctx, *, low=-np.inf, high=np.inf):
    return reward_clip(scores, low=low, high=high), {}


@_step("reward_noise_flip")
def _flip_step(scores, ctx, *, p, seed=0, low=0.0, high=1.0):
    out, flip = reward_noise_flip(scores, p=p, seed=seed, step=ctx.step, low=low, high=high)
    return out, {"flip_frac": float(flip.mean()) if len(flip) else 0.0}


@_step("reward_ensemble_agg")
def _ensemble_step(scores, ctx, *, keys, mode="mean", lam=1.0):
    return reward_ensemble_agg(np.stack([ctx.component(k) for k in keys]), mode=mode, lam=lam), {}


def apply_shaping(
    scores: np.ndarray,  # [B] combined reward
    steps: Sequence[Mapping[str, Any]],
    *,
    components: Components,
    weights: Mapping[str, float] | None = None,
    group_ids: Sequence[int] | np.ndarray | None = None,
    fields: Sequence[Mapping[str, Any]] | None = None,
    step: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Applies config steps {"name": SHAPING key, **kwargs} in order.

    Steps: weighted_sum(weights, gates) recombines the components;
    success_gate(outcome, gated, threshold) drops the gated components'
    weighted share where the outcome failed; per_source_normalization(source_key);
    par_bounded_centered(ref_key: field of M reference rewards);
    logsigmoid_transform(keys, reference="group_quantile"|"field", quantile,
    ref_prefix) replaces the reward by U; reward_clip(low, high);
    reward_noise_flip(p, seed, low, high), seeded per training step;
    reward_ensemble_agg(keys, mode, lam) replaces the reward by the aggregate.

    Returns:
      shaped [B] float32 rewards and {"<i>_<name>/<metric>": value}.
    """
    b = len(scores)
    ctx = ShapingContext(
        components,
        dict(weights or {}),
        np.zeros(b, np.int32) if group_ids is None else group_ids,
        fields if fields is not None else [{} for _ in range(b)],
        step,
    )
    metrics: dict[str, Any] = {}
    out = np.asarray(scores, np.float32)
    for i, cfg in enumerate(steps):
        cfg = dict(cfg)
        name = cfg.pop("name", None)
        if name not in _STEPS:
            raise KeyError(f"shaping step {name!r} unknown; known: {sorted(_STEPS)}")
        try:
            out, m = _STEPS[name](out, ctx, **cfg)
        except TypeError as e:
            raise TypeError(f"shaping step {i} ({name!r}): {e}") from None
        out = np.asarray(out, np.float32)
        if out.shape != (b,):
            raise ValueError(f"shaping step {name!r} returned shape {out.shape}, need ({b},)")
        metrics.update({f"{i}_{name}/{k}": v for k, v in m.items()})
    return out, metrics
