"""Family tests: every registered objective, looped over the registries.

For each registered name a case builds small inputs whose padding (masked
tokens, masked steps, zero-weight pairs, invalid rows) holds garbage values. One
jitted function computes the outputs and the gradients of a scalar summary,
and is run on: the padded float32 inputs, the same inputs with the padding
sliced away, and bfloat16 inputs. Checks: scalar losses, finite values and
gradients (a fully masked row is always present), padded == sliced, float32
outputs whatever the input dtype, and bf16 results equal to float32 results on
the same (bf16-rounded) values.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewardjax.objectives as obj
from rewardjax import registry

B, T, T_KEEP = 4, 5, 3
ROW_LENGTHS = (3, 2, 1, 0)  # row 3 is fully masked


@dataclasses.dataclass
class Case:
    call: Callable  # call(**arrays) -> output
    arrays: dict[str, np.ndarray]
    diff: tuple[str, ...] = ()  # arrays to differentiate
    slice_axes: dict[str, int] = dataclasses.field(default_factory=dict)
    index: np.ndarray | None = None  # entries kept along slice_axes
    out_axes: tuple[int | None, ...] | None = None  # slice axis of each array output
    scalar_loss: bool = True  # output is (scalar loss, metrics)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _token_mask() -> np.ndarray:
    m = np.zeros((B, T), np.float32)
    for b, n in enumerate(ROW_LENGTHS):
        m[b, :n] = 1.0
    return m


def _garbage(x: np.ndarray, mask: np.ndarray, value: float) -> np.ndarray:
    """Fills padded positions with a large, wrong value (padding must not leak)."""
    return np.where(mask > 0, x, value).astype(np.float32)


def _token_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    r = _rng(seed)
    mask = _token_mask()
    logp = -r.uniform(0.1, 2.0, (B, T))
    old = logp + r.normal(0, 0.3, (B, T))
    return {
        "mask": mask,
        "logprobs": _garbage(logp, mask, -25.0),
        "old_logprobs": _garbage(old, mask, 3.0),
        "advantages": _garbage(r.normal(0, 1, (B, T)), mask, 40.0),
        "ref_logprobs": _garbage(logp + r.normal(0, 0.3, (B, T)), mask, -30.0),
        "rollout_logprobs": _garbage(old + r.normal(0, 0.1, (B, T)), mask, 9.0),
    }


_T_SLICE = dict(index=np.arange(T_KEEP))


def _t_axes(*names: str) -> dict[str, int]:
    return {n: 1 for n in names}


# ---------------------------------------------------------------- policy losses


def _pg_case(name: str) -> Case:
    fn = registry.POLICY_LOSSES.get(name)
    a = _token_arrays()
    names = ("logprobs", "old_logprobs", "advantages", "mask", "ref_logprobs", "rollout_logprobs")
    return Case(
        call=lambda **k: fn(
            k["logprobs"],
            k["old_logprobs"],
            k["advantages"],
            k["mask"],
            ref_logprobs=k["ref_logprobs"],
            rollout_logprobs=k["rollout_logprobs"],
            tis_mode="token",
            kl_coef=0.1,
        ),
        arrays={n: a[n] for n in names},
        diff=("logprobs",),
        slice_axes=_t_axes(*names),
        **_T_SLICE,
    )


def _entropy_case() -> Case:
    mask = _token_mask()
    ent = _garbage(_rng(1).uniform(0.0, 3.0, (B, T)), mask, 77.0)
    return Case(
        call=lambda **k: obj.entropy_bonus(k["entropy"], k["mask"], coef=0.01),
        arrays={"entropy": ent, "mask": mask},
        diff=("entropy",),
        slice_axes=_t_axes("entropy", "mask"),
        **_T_SLICE,
    )


def _value_case() -> Case:
    r = _rng(2)
    mask = _token_mask()
    arrays = {
        "values": _garbage(r.normal(0, 1, (B, T)), mask, 50.0),
        "old_values": _garbage(r.normal(0, 1, (B, T)), mask, -50.0),
        "returns": _garbage(r.normal(0, 1, (B, T)), mask, 20.0),
        "mask": mask,
    }
    return Case(
        call=lambda **k: obj.value_loss_clipped(
            k["values"], k["old_values"], k["returns"], k["mask"]
        ),
        arrays=arrays,
        diff=("values",),
        slice_axes=_t_axes(*arrays),
        **_T_SLICE,
    )


def _tis_case() -> Case:
    a = _token_arrays(3)
    arrays = {n: a[n] for n in ("old_logprobs", "rollout_logprobs", "mask")}
    return Case(
        call=lambda **k: obj.tis_rollout_correction(
            k["old_logprobs"], k["rollout_logprobs"], k["mask"], mode="sequence"
        ),
        arrays=arrays,
        slice_axes=_t_axes(*arrays),
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


POLICY_SPECIAL = {
    "entropy_bonus": _entropy_case,
    "value_loss_clipped": _value_case,
    "tis_rollout_correction": _tis_case,
}


def _aggregation_case(name: str) -> Case:
    fn = registry.LOSS_AGGREGATIONS.get(name)
    mask = _token_mask()
    values = _garbage(_rng(4).normal(0, 1, (B, T)), mask, 1e3)
    return Case(
        # C fixed: the default C = T would differ between the padded and sliced inputs.
        call=lambda **k: (fn(k["values"], k["mask"], loss_scale_factor=4.0), {}),
        arrays={"values": values, "mask": mask},
        diff=("values",),
        slice_axes=_t_axes("values", "mask"),
        **_T_SLICE,
    )


# ---------------------------------------------------------------- advantages

# Ragged groups {0,1,2}, {3,4}; row 2 is unscored (valid = 0) and holds a garbage
# reward, so dropping it must not change anything.
_GROUP_ID = np.array([0, 0, 0, 1, 1], np.int32)
_VALID = np.array([1, 1, 0, 1, 1], np.float32)
_REWARDS = np.array([1.0, 0.0, 99.0, 0.5, 0.25], np.float32)
_ROW_KEEP = np.array([0, 1, 3, 4])


def _outcome_case(name: str, **extra) -> Case:
    fn = registry.ADVANTAGES.get(name)
    return Case(
        call=lambda **k: fn(k["rewards"], k["group_id"], valid=k["valid"], **extra),
        arrays={"rewards": _REWARDS, "group_id": _GROUP_ID, "valid": _VALID},
        diff=("rewards",),
        slice_axes={"rewards": 0, "group_id": 0, "valid": 0},
        index=_ROW_KEEP,
        out_axes=(0,),
        scalar_loss=False,
    )


def _opo_case() -> Case:
    mask = np.ones((5, T), np.float32)
    mask[:, 3:] = 0.0
    mask[1, 1:] = 0.0
    return Case(
        call=lambda **k: obj.opo_length_baseline(
            k["rewards"], k["group_id"], mask=k["mask"], valid=k["valid"]
        ),
        arrays={"rewards": _REWARDS, "group_id": _GROUP_ID, "valid": _VALID, "mask": mask},
        diff=("rewards",),
        slice_axes={"mask": 1},
        index=np.arange(T_KEEP),
        out_axes=(None,),
        scalar_loss=False,
    )


def _zero_variance_case() -> Case:
    rewards = np.array([1.0, 1.0, 1.0, 0.0, 1.0], np.float32)
    return Case(
        call=lambda **k: obj.zero_variance_policy(
            k["rewards"], k["group_id"], valid=k["valid"], mode="mask"
        ),
        arrays={"rewards": rewards, "group_id": _GROUP_ID, "valid": _VALID},
        slice_axes={"rewards": 0, "group_id": 0, "valid": 0},
        index=_ROW_KEEP,
        out_axes=(0,),
        scalar_loss=False,
    )


def _token_reward_arrays(seed: int) -> dict[str, np.ndarray]:
    r = _rng(seed)
    mask = _token_mask()
    return {
        "token_rewards": _garbage(r.normal(0, 1, (B, T)), mask, 60.0),
        "values": _garbage(r.normal(0, 1, (B, T)), mask, -60.0),
        "mask": mask,
    }


def _gae_case() -> Case:
    a = _token_reward_arrays(5)
    return Case(
        call=lambda **k: obj.gae(k["token_rewards"], k["values"], k["mask"], lam=0.9, gamma=0.95),
        arrays=a,
        diff=("values",),
        slice_axes=_t_axes(*a),
        out_axes=(1, 1),
        scalar_loss=False,
        **_T_SLICE,
    )


def _token_level_case(fn) -> Case:
    a = _token_reward_arrays(6)
    del a["values"]
    return Case(
        call=lambda **k: fn(k["token_rewards"], k["mask"]),
        arrays=a,
        slice_axes=_t_axes(*a),
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


def _rpp_baseline_case() -> Case:
    a = _token_reward_arrays(7)
    rewards = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    last = np.array([2, 1, 0, 0])
    a["token_rewards"][np.arange(B), last] += rewards * (a["mask"].sum(-1) > 0)
    return Case(
        call=lambda **k: obj.reinforce_pp_baseline(
            k["rewards"], mask=k["mask"], token_rewards=k["token_rewards"], group_size=2
        ),
        arrays={"rewards": rewards, "token_rewards": a["token_rewards"], "mask": a["mask"]},
        slice_axes=_t_axes("token_rewards", "mask"),
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


def _remax_case() -> Case:
    a = _token_reward_arrays(8)
    return Case(
        call=lambda **k: obj.remax(k["token_rewards"], k["baseline"], k["mask"]),
        arrays={
            "token_rewards": a["token_rewards"],
            "baseline": np.array([0.5, 0.5, 1.0, 1.0], np.float32),
            "mask": a["mask"],
        },
        slice_axes=_t_axes("token_rewards", "mask"),
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


ADVANTAGE_CASES = {
    "grpo_group_norm": lambda: _outcome_case("grpo_group_norm"),
    "drgrpo_group_center": lambda: _outcome_case("drgrpo_group_center"),
    "batch_std_norm": lambda: _outcome_case("batch_std_norm"),
    "rloo": lambda: _outcome_case("rloo"),
    "grpo_passk": lambda: _outcome_case("grpo_passk"),
    "opo_length_baseline": _opo_case,
    "zero_variance_policy": _zero_variance_case,
    "prime_combined_rloo": lambda: _prime_case(),
    "gae": _gae_case,
    "reinforce_pp": lambda: _token_level_case(obj.reinforce_pp),
    "token_reward_returns": lambda: _token_level_case(obj.token_reward_returns),
    "reinforce_pp_baseline": _rpp_baseline_case,
    "remax": _remax_case,
}


# ---------------------------------------------------------------- KL


def _estimator_case(fn) -> Case:
    a = _token_arrays(9)
    return Case(
        call=lambda **k: fn(k["logprobs"], k["ref_logprobs"]),
        arrays={"logprobs": a["logprobs"], "ref_logprobs": a["ref_logprobs"]},
        diff=("logprobs",),
        slice_axes=_t_axes("logprobs", "ref_logprobs"),
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


def _kl_in_reward_case() -> Case:
    a = _token_arrays(10)
    tr = _token_reward_arrays(10)["token_rewards"]
    arrays = {
        "token_rewards": tr,
        "old_logprobs": a["old_logprobs"],
        "ref_logprobs": a["ref_logprobs"],
        "mask": a["mask"],
    }
    return Case(
        call=lambda **k: obj.kl_in_reward(
            k["token_rewards"], k["old_logprobs"], k["ref_logprobs"], k["mask"], kl_coef=0.05
        ),
        arrays=arrays,
        slice_axes=_t_axes(*arrays),
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


def _kl_in_loss_case() -> Case:
    a = _token_arrays(11)
    arrays = {n: a[n] for n in ("logprobs", "ref_logprobs", "mask")}
    return Case(
        call=lambda **k: obj.kl_in_loss(
            k["logprobs"],
            k["ref_logprobs"],
            k["mask"],
            kl_coef=0.04,
            aggregation="seq_mean_token_mean",
        ),
        arrays=arrays,
        diff=("logprobs",),
        slice_axes=_t_axes(*arrays),
        **_T_SLICE,
    )


def _adaptive_kl_case() -> Case:
    ctrl = obj.adaptive_kl_controller(init_kl_coef=0.01, target=0.1, horizon=100.0)
    return Case(
        call=lambda **k: ctrl.update(ctrl.init(), k["kl"], k["n_steps"]).kl_coef,
        arrays={"kl": np.array(0.3, np.float32), "n_steps": np.array(8.0, np.float32)},
        out_axes=(None,),
        scalar_loss=False,
    )


KL_CASES = {
    "kl_k1": lambda: _estimator_case(obj.kl_k1),
    "kl_k2": lambda: _estimator_case(obj.kl_k2),
    "kl_k3": lambda: _estimator_case(obj.kl_k3),
    "kl_straight_through": lambda: _estimator_case(obj.kl_straight_through),
    "kl_in_reward": _kl_in_reward_case,
    "kl_in_loss": _kl_in_loss_case,
    "adaptive_kl_controller": _adaptive_kl_case,
}


# ---------------------------------------------------------------- preference

# Four pairs; pair 2 has weight 0 and garbage log-probs, so it must drop out.
_PAIR_KEEP = np.array([0, 1, 3])


def _pair_arrays(seed: int) -> dict[str, np.ndarray]:
    r = _rng(seed)
    a = {
        "pc": -r.uniform(5, 20, 4),
        "pr": -r.uniform(5, 20, 4),
        "rc": -r.uniform(5, 20, 4),
        "rr": -r.uniform(5, 20, 4),
        "weights": np.array([1.0, 0.5, 0.0, 2.0]),
        "lc": np.array([4.0, 7.0, 0.0, 3.0]),
        "lr": np.array([5.0, 2.0, 0.0, 6.0]),
    }
    a["pc"][2], a["pr"][2] = 900.0, -900.0
    return {k: v.astype(np.float32) for k, v in a.items()}


def _pairwise_case(name: str) -> Case:
    fn = registry.PREFERENCE_LOSSES.get(name)
    a = _pair_arrays(12)
    extra = {}
    if name == "ipo_identity":
        extra = lambda k: dict(chosen_lengths=k["lc"], rejected_lengths=k["lr"])  # noqa: E731
    else:
        extra = lambda k: {}  # noqa: E731
    return Case(
        call=lambda **k: fn(k["pc"], k["pr"], k["rc"], k["rr"], weights=k["weights"], **extra(k)),
        arrays=a,
        diff=("pc", "pr"),
        slice_axes={n: 0 for n in a},
        index=_PAIR_KEEP,
    )


def _pair_weights_case() -> Case:
    a = _pair_arrays(13)
    return Case(
        call=lambda **k: (obj.pair_weights(k["pc"], k["weights"]), {}),
        arrays={"pc": a["pc"], "weights": a["weights"]},
        diff=("pc",),
        slice_axes={"pc": 0, "weights": 0},
        index=_PAIR_KEEP,
    )


def _adpo_case() -> Case:
    r = _rng(14)
    k = 3
    cand = np.ones((4, k), np.float32)
    cand[1, 2] = 0.0  # a ragged list
    q = np.array([[1, 0, 0], [0.25, 0.75, 0], [0.2, 0.3, 0.5], [0, 0, 1]], np.float32)
    pol = -r.uniform(5, 20, (4, k)).astype(np.float32)
    pol[2] = 500.0
    pol[1, 2] = -800.0
    return Case(
        call=lambda **a: obj.adpo_anchored_loss(
            a["pol"], a["ref"], a["q"], tau=2.0, candidate_mask=a["cand"], weights=a["w"]
        ),
        arrays={
            "pol": pol,
            "ref": -r.uniform(5, 20, (4, k)).astype(np.float32),
            "q": q,
            "cand": cand,
            "w": np.array([1.0, 1.0, 0.0, 0.5], np.float32),
        },
        diff=("pol",),
        slice_axes={"pol": 0, "ref": 0, "q": 0, "cand": 0, "w": 0},
        index=_PAIR_KEEP,
    )


PREFERENCE_CASES = {
    "dpo_sigmoid": lambda: _pairwise_case("dpo_sigmoid"),
    "dpo_cdpo": lambda: _pairwise_case("dpo_cdpo"),
    "dpo_robust": lambda: _pairwise_case("dpo_robust"),
    "dpo_hinge": lambda: _pairwise_case("dpo_hinge"),
    "ipo_identity": lambda: _pairwise_case("ipo_identity"),
    "pair_weights": _pair_weights_case,
    "adpo_anchored": _adpo_case,
}


# ---------------------------------------------------------------- SFT


def _sft_case(name: str) -> Case:
    fn = registry.SFT_LOSSES.get(name)
    a = _token_arrays(15)
    mask = a["mask"]
    arrays = {"logprobs": a["logprobs"], "mask": mask}
    axes = ["logprobs", "mask"]
    if name == "asft_anchored":
        arrays["token_kl"] = _garbage(_rng(15).uniform(0, 1, (B, T)), mask, 33.0)
        axes.append("token_kl")
        call = lambda **k: fn(k["logprobs"], k["mask"], token_kl=k["token_kl"], kl_coef=0.1)  # noqa: E731
        diff = ("logprobs", "token_kl")
    elif name == "raft_reward_ranked":
        arrays["rewards"] = np.array([0.2, 0.9, 0.5, 0.1], np.float32)
        call = lambda **k: fn(k["logprobs"], k["mask"], k["rewards"], group_size=2, top_k=1)  # noqa: E731
        diff = ("logprobs",)
    else:
        call = lambda **k: fn(k["logprobs"], k["mask"])  # noqa: E731
        diff = ("logprobs",)
    return Case(call=call, arrays=arrays, diff=diff, slice_axes=_t_axes(*axes), **_T_SLICE)


# ---------------------------------------------------------------- reward models


def _rm_pair_case(name: str) -> Case:
    fn = registry.REWARD_MODEL_LOSSES.get(name)
    r = _rng(16)
    rc = r.normal(0, 1, 4).astype(np.float32)
    rr = r.normal(0, 1, 4).astype(np.float32)
    rc[2], rr[2] = -700.0, 700.0
    w = np.array([1.0, 1.0, 0.0, 0.5], np.float32)
    arrays = {"rc": rc, "rr": rr, "w": w}
    if name == "bt_tie_aware":
        arrays["tie"] = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
        call = lambda **k: fn(k["rc"], k["rr"], k["tie"], weights=k["w"])  # noqa: E731
    else:
        arrays["m"] = np.array([0.0, 0.5, 0.0, 1.0], np.float32)
        call = lambda **k: fn(k["rc"], k["rr"], margin=k["m"], center_coef=0.01, weights=k["w"])  # noqa: E731
    return Case(
        call=call,
        arrays=arrays,
        diff=("rc", "rr"),
        slice_axes={n: 0 for n in arrays},
        index=_PAIR_KEEP,
    )


def _regression_case() -> Case:
    r = _rng(17)
    pred = r.normal(0, 1, (4, 3)).astype(np.float32)
    tgt = r.uniform(0, 4, (4, 3)).astype(np.float32)
    present = np.ones((4, 3), np.float32)
    present[0, 1] = 0.0
    present[2] = 0.0
    pred[2], tgt[2] = 300.0, -300.0
    return Case(
        call=lambda **k: obj.regression_rm_loss(
            k["pred"],
            k["tgt"],
            attribute_weights=k["aw"],
            target_mask=k["present"],
            weights=k["w"],
        ),
        arrays={
            "pred": pred,
            "tgt": tgt,
            "present": present,
            "aw": np.array([1.0, 0.5, 2.0], np.float32),
            "w": np.array([1.0, 1.0, 0.0, 1.0], np.float32),
        },
        diff=("pred",),
        slice_axes={"pred": 0, "tgt": 0, "present": 0, "w": 0},
        index=_PAIR_KEEP,
    )


def _bt_regression_case() -> Case:
    r = _rng(18)
    pred = r.normal(0, 1, (5, 2)).astype(np.float32)
    present = np.ones((5, 2), np.float32)
    present[:, 1] = 0.0  # attribute 1 is unrated: slicing it away changes nothing
    pred[:, 1] = 500.0
    return Case(
        call=lambda **k: obj.bt_plus_regression_loss(
            k["rc"], k["rr"], k["pred"], k["tgt"], regression_coef=0.5, target_mask=k["present"]
        ),
        arrays={
            "rc": r.normal(0, 1, 3).astype(np.float32),
            "rr": r.normal(0, 1, 3).astype(np.float32),
            "pred": pred,
            "tgt": r.uniform(0, 4, (5, 2)).astype(np.float32),
            "present": present,
        },
        diff=("rc", "rr", "pred"),
        slice_axes={"pred": 1, "tgt": 1, "present": 1},
        index=np.array([0]),
    )


def _prm_case() -> Case:
    r = _rng(19)
    sm = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    return Case(
        call=lambda **k: obj.prm_step_bce_loss(k["z"], k["y"], k["sm"]),
        arrays={
            "z": _garbage(r.normal(0, 2, (4, 4)), sm, 80.0),
            "y": _garbage(r.uniform(0, 1, (4, 4)), sm, 7.0),
            "sm": sm,
        },
        diff=("z",),
        slice_axes={"z": 1, "y": 1, "sm": 1},
        index=np.arange(3),
    )


def _implicit_prm_case() -> Case:
    a = _token_arrays(20)
    return Case(
        call=lambda **k: obj.implicit_prm_loss(
            k["logprobs"], k["ref_logprobs"], k["mask"], k["labels"], beta=0.05
        ),
        arrays={
            "logprobs": a["logprobs"],
            "ref_logprobs": a["ref_logprobs"],
            "mask": a["mask"],
            "labels": np.array([1.0, 0.0, 1.0, 0.0], np.float32),
        },
        diff=("logprobs",),
        slice_axes=_t_axes("logprobs", "ref_logprobs", "mask"),
        **_T_SLICE,
    )


def _laser_case() -> Case:
    return Case(
        call=lambda **k: obj.laser_last_token_mse_loss(
            k["lp"], k["r"], kl_coef=0.1, ref_constant=-5.0, coef=0.5, valid=k["v"]
        ),
        arrays={
            "lp": np.array([-4.0, -6.0, 300.0, -5.0], np.float32),
            "r": np.array([1.0, 0.0, 1.0, 1.0], np.float32),
            "v": np.array([1.0, 1.0, 0.0, 1.0], np.float32),
        },
        diff=("lp",),
        slice_axes={"lp": 0, "r": 0, "v": 0},
        index=_PAIR_KEEP,
    )


def _ensemble_case() -> Case:
    return Case(
        call=lambda **k: obj.rm_ensemble(k["m"], mode="mean_minus_std", std_coef=0.5),
        arrays={"m": _rng(21).normal(0, 1, (3, 4)).astype(np.float32)},
        diff=("m",),
        slice_axes={"m": 1},
        index=_PAIR_KEEP,
        out_axes=(0,),
        scalar_loss=False,
    )


REWARD_MODEL_CASES = {
    "bt_pairwise": lambda: _rm_pair_case("bt_pairwise"),
    "bt_tie_aware": lambda: _rm_pair_case("bt_tie_aware"),
    "regression_rm": _regression_case,
    "bt_plus_regression": _bt_regression_case,
    "prm_step_bce": _prm_case,
    "implicit_prm": _implicit_prm_case,
    "laser_last_token_mse": _laser_case,
    "rm_ensemble": _ensemble_case,
}


# ---------------------------------------------------------------- credit

_STEP_MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)


def _step_scores(seed: int) -> np.ndarray:
    return _garbage(_rng(seed).uniform(0, 1, (4, 4)), _STEP_MASK, 55.0)


def _step_case(fn, seed: int, **kw) -> Case:
    return Case(
        call=lambda **k: fn(k["p"], k["sm"], **kw),
        arrays={"p": _step_scores(seed), "sm": _STEP_MASK},
        slice_axes={"p": 1, "sm": 1},
        index=np.arange(3),
        out_axes=(1,),
        scalar_loss=False,
    )


def _step_to_token_case() -> Case:
    mask = np.zeros((4, 7), np.float32)
    mask[0, :6], mask[1, :4], mask[2, :2] = 1.0, 1.0, 1.0
    ends = np.array([[1, 3, 5, 6], [0, 3, 6, 6], [1, 6, 6, 6], [6, 6, 6, 6]], np.int32)
    return Case(
        call=lambda **k: obj.step_to_token(k["p"], k["ends"], k["sm"], k["mask"], mode="spread"),
        arrays={"p": _step_scores(22), "ends": ends, "sm": _STEP_MASK, "mask": mask},
        slice_axes={"p": 1, "ends": 1, "sm": 1},
        index=np.arange(3),
        out_axes=(None,),
        scalar_loss=False,
    )


def _pav_case() -> Case:
    return Case(
        call=lambda **k: obj.pav_progress(
            k["v"], k["v0"], k["sm"], coef=0.5, outcome_rewards=k["r"]
        ),
        arrays={
            "v": _step_scores(23),
            "v0": np.array([0.5, 0.2, 0.1, 0.9], np.float32),
            "sm": _STEP_MASK,
            "r": np.array([1.0, 0.0, 1.0, 0.0], np.float32),
        },
        slice_axes={"v": 1, "sm": 1},
        index=np.arange(3),
        out_axes=(1,),
        scalar_loss=False,
    )


def _prime_case() -> Case:
    a = _token_reward_arrays(24)
    return Case(
        call=lambda **k: obj.prime_combined_rloo(k["q"], k["o"], k["mask"], group_size=2),
        arrays={
            "q": a["token_rewards"],
            "o": np.array([1.0, 0.0, 0.0, 1.0], np.float32),
            "mask": a["mask"],
        },
        slice_axes={"q": 1, "mask": 1},
        out_axes=(1,),
        scalar_loss=False,
        **_T_SLICE,
    )


def _gated_case() -> Case:
    return Case(
        call=lambda **k: obj.success_gated_process(k["o"], k["p"], coef=0.3),
        arrays={
            "o": np.array([1.0, 0.0, 1.0, 0.0], np.float32),
            "p": np.array([0.5, 0.9, 0.1, 0.2], np.float32),
        },
        slice_axes={"o": 0, "p": 0},
        index=_PAIR_KEEP,
        out_axes=(0,),
        scalar_loss=False,
    )


CREDIT_CASES = {
    "step_to_token": _step_to_token_case,
    "sum_form_returns": lambda: _step_case(obj.sum_form_returns, 25, gamma=0.9),
    "min_form_returns": lambda: _step_case(obj.min_form_returns, 26),
    "clip_delta_bounded": lambda: _step_case(obj.clip_delta_bounded, 27, mode="delta"),
    "pav_progress": _pav_case,
    "success_gated_process": _gated_case,
}


# ---------------------------------------------------------------- runner


def _case_for(registry_name: str, name: str) -> Case:
    if registry_name == "POLICY_LOSSES":
        return POLICY_SPECIAL.get(name, functools.partial(_pg_case, name))()
    if registry_name == "LOSS_AGGREGATIONS":
        return _aggregation_case(name)
    if registry_name == "SFT_LOSSES":
        return _sft_case(name)
    tables = {
        "ADVANTAGES": ADVANTAGE_CASES,
        "KL_ESTIMATORS": KL_CASES,
        "PREFERENCE_LOSSES": PREFERENCE_CASES,
        "REWARD_MODEL_LOSSES": REWARD_MODEL_CASES,
        "CREDIT_RULES": CREDIT_CASES,
    }
    table = tables[registry_name]
    if name not in table:
        pytest.fail(f"{registry_name} member {name!r} has no family-test case: add one")
    return table[name]()


REGISTRIES = (
    "POLICY_LOSSES",
    "LOSS_AGGREGATIONS",
    "ADVANTAGES",
    "KL_ESTIMATORS",
    "PREFERENCE_LOSSES",
    "SFT_LOSSES",
    "REWARD_MODEL_LOSSES",
    "CREDIT_RULES",
)
ALL_NAMES = [(r, n) for r in REGISTRIES for n in getattr(registry, r).names()]
# A row-weight rule registered with the curation rules, tested with the advantages.
ALL_NAMES.append(("ADVANTAGES", "zero_variance_policy"))


def _flatten(case: Case, out) -> tuple[list[tuple[str, jax.Array, int | None]], jax.Array]:
    """Named outputs with their slice axis, and a scalar summary to differentiate."""
    items = []
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        main, metrics = out
        mains = [main]
    else:
        metrics = {}
        mains = list(out) if isinstance(out, tuple) else [out]
    axes = case.out_axes or (None,) * len(mains)
    for i, (m, ax) in enumerate(zip(mains, axes, strict=True)):
        items.append((f"out{i}", m, ax))
    items += [(f"metric:{k}", v, None) for k, v in sorted(metrics.items())]
    summary = sum(jnp.sum(m) for m in mains)
    return items, summary


# Per-executable XLA options (not global flags): these tiny programs compile ~40% faster
# with the backend optimisations off, and compile time dominates this file.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _runner(case: Case):
    """One jitted (outputs, gradients) function per case, reused for every input variant."""

    def f(diff_arrays, other):
        out = case.call(**diff_arrays, **other)
        return _flatten(case, out)[1], out

    with_grad = jax.jit(jax.value_and_grad(f, has_aux=True))
    forward = jax.jit(lambda d, o: f(d, o)[1])
    compiled = {}

    def run(arrays, grad: bool = True):
        diff = {k: v for k, v in arrays.items() if k in case.diff}
        other = {k: v for k, v in arrays.items() if k not in case.diff}
        signature = (grad, *((k, np.shape(v), str(v.dtype)) for k, v in sorted(arrays.items())))
        if signature not in compiled:
            fn = with_grad if grad else forward
            compiled[signature] = fn.lower(diff, other).compile(_FAST_COMPILE)
        out = compiled[signature](diff, other)
        if not grad:
            return out, None
        (_, out), grads = out
        return out, grads

    return run


def _sliced(case: Case) -> dict[str, np.ndarray]:
    return {
        k: np.take(v, case.index, axis=case.slice_axes[k]) if k in case.slice_axes else v
        for k, v in case.arrays.items()
    }


def _to_bf16(arrays):
    return {
        k: jnp.asarray(v, jnp.bfloat16) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in arrays.items()
    }


@pytest.mark.parametrize(("registry_name", "name"), ALL_NAMES, ids=[n for _, n in ALL_NAMES])
def test_family(registry_name: str, name: str):
    case = _case_for(registry_name, name)
    arrays = {k: np.asarray(v) for k, v in case.arrays.items()}

    run = _runner(case)
    out, grads = run(arrays)
    items, _ = _flatten(case, out)
    if case.scalar_loss:
        assert items[0][1].shape == (), f"{name}: loss is not a scalar"
    for key, value, _ in items:
        assert value.dtype == jnp.float32, f"{name} {key}: dtype {value.dtype}"
        assert np.all(np.isfinite(value)), f"{name} {key} not finite: {value}"
        if key.startswith("metric:"):
            assert value.shape == (), f"{name} {key}: metrics must be scalars"
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), f"{name}: gradient wrt {key} not finite"
    if case.diff and case.scalar_loss:
        assert any(np.any(np.asarray(g) != 0) for g in grads.values()), f"{name}: zero gradient"

    # Padding (masked tokens / steps, zero-weight pairs, invalid rows) is invisible.
    if case.index is not None:
        out_s, grads_s = run(_sliced(case))
        items_s, _ = _flatten(case, out_s)
        for (key, full, axis), (_, part, _) in zip(items, items_s, strict=True):
            full = np.asarray(full)
            full = np.take(full, case.index, axis=axis) if axis is not None else full
            np.testing.assert_allclose(full, part, rtol=2e-5, atol=2e-6, err_msg=f"{name} {key}")
        for key, g in grads.items():
            g = np.asarray(g)
            if key in case.slice_axes:
                g = np.take(g, case.index, axis=case.slice_axes[key])
            np.testing.assert_allclose(
                g, grads_s[key], rtol=2e-5, atol=2e-6, err_msg=f"{name} grad {key}"
            )

    # bf16 in -> float32 out, equal to float32 math on the same rounded values.
    bf16 = _to_bf16(arrays)
    rounded = {
        k: np.asarray(v, np.float32) if v.dtype == jnp.bfloat16 else v for k, v in bf16.items()
    }
    items_b, _ = _flatten(case, run(bf16, grad=False)[0])
    items_r, _ = _flatten(case, run(rounded)[0])
    for (key, vb, _), (_, vr, _) in zip(items_b, items_r, strict=True):
        assert vb.dtype == jnp.float32, f"{name} {key}: bf16 input gave {vb.dtype}"
        np.testing.assert_allclose(vb, vr, rtol=1e-6, atol=1e-6, err_msg=f"{name} bf16 {key}")


def test_every_registry_is_covered():
    # Guards the loop above against a registry silently dropping out.
    assert {r for r, _ in ALL_NAMES} == set(REGISTRIES)
