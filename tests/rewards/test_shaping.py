"""rewardjax.rewards.shaping: combination and shaping transforms, and the config pipeline."""

import numpy as np
import pytest

from rewardjax.registry import SHAPING
from rewardjax.rewards import (
    apply_shaping,
    logsigmoid_transform,
    par_bounded_centered,
    per_source_normalization,
    reward_clip,
    reward_ensemble_agg,
    reward_noise_flip,
    success_gate,
    weighted_sum,
)

NAN = np.nan


def test_weighted_sum_skips_unscored_components():
    comps = {"acc": np.array([1.0, 0.0, NAN, NAN]), "fmt": np.array([1.0, 1.0, 0.5, NAN])}
    # Row 0: 1 + 0.1·1; row 1: 0.1; row 2: only fmt → 0.05; row 3: nothing → NaN.
    got = weighted_sum(comps, {"acc": 1.0, "fmt": 0.1})
    np.testing.assert_allclose(got, [1.1, 0.1, 0.05, NAN], rtol=1e-6)
    with pytest.raises(KeyError, match="no component"):
        weighted_sum(comps, {"missing": 1.0})


def test_success_gate():
    outcome = np.array([1.0, 0.0, NAN, 1.0])
    process = np.array([0.7, 0.9, 0.5, NAN])
    np.testing.assert_allclose(success_gate(outcome, process), [0.7, 0.0, 0.0, NAN])
    comps = {"acc": outcome, "prm": np.array([0.7, 0.9, 0.5, 0.2])}
    got = weighted_sum(comps, {"acc": 1.0, "prm": 0.5}, gates={"prm": ("acc", 1.0)})
    np.testing.assert_allclose(got, [1.35, 0.0, 0.0, 1.1], rtol=1e-6)


def test_per_source_normalization():
    r = np.array([0.0, 1.0, 10.0, 30.0, NAN])
    src = ["a", "a", "b", "b", "b"]
    # a: mean 0.5, std 0.5 → −1, 1; b: mean 20, std 10 → −1, 1; NaN stays NaN.
    np.testing.assert_allclose(per_source_normalization(r, src, eps=0.0), [-1, 1, -1, 1, NAN])


def test_par_bounded_centered():
    r = np.array([0.0, 2.0, -2.0, 100.0])
    ref = np.array([[0.0], [0.0], [0.0], [0.0]])
    got = par_bounded_centered(r, ref)
    # r = r_ref → 0.5; σ(2) = 0.880797; σ(−2) = 0.119203; bounded by 1.
    np.testing.assert_allclose(got, [0.5, 0.880797, 0.119203, 1.0], rtol=1e-5)
    assert np.all(np.diff(par_bounded_centered(np.linspace(-5, 5, 11), np.zeros(11))) > 0)
    # M = 2 references: mean of σ(1 − 0), σ(1 − 2) = (0.731059 + 0.268941)/2 = 0.5.
    np.testing.assert_allclose(
        par_bounded_centered(np.array([1.0]), np.array([[0.0, 2.0]])), [0.5], rtol=1e-6
    )


def test_logsigmoid_transform_is_an_and():
    r = np.array([[3.0, 3.0], [3.0, -10.0]])  # [K=2 properties, B=2]
    total, u = logsigmoid_transform(r, np.zeros_like(r))
    assert np.all(u <= 0)
    # log σ(3) = −0.048587; log σ(−10) = −10.0000454.
    np.testing.assert_allclose(total, [2 * -0.0485874, -0.0485874 - 10.0000454], rtol=1e-5)
    # One very bad property dominates although the plain sum is equal.
    assert total[1] < total[0] - 9
    with pytest.raises(ValueError):
        logsigmoid_transform(r, np.zeros((3, 2)))


def test_reward_clip():
    np.testing.assert_allclose(
        reward_clip(np.array([-5.0, 0.5, 5.0, NAN]), low=-1, high=1), [-1, 0.5, 1, NAN]
    )
    with pytest.raises(ValueError):
        reward_clip(np.zeros(2), low=1, high=0)


def test_reward_noise_flip():
    r = np.array([0.0, 1.0] * 5000)
    same, flips = reward_noise_flip(r, p=0.0, seed=0)
    np.testing.assert_array_equal(same, r)
    assert not flips.any()
    flipped, mask = reward_noise_flip(r, p=0.3, seed=1, step=7)
    np.testing.assert_array_equal(flipped[mask], 1.0 - r[mask])
    np.testing.assert_array_equal(flipped[~mask], r[~mask])
    assert abs(mask.mean() - 0.3) < 0.02  # 10,000 draws: std of the rate ≈ 0.0046
    again, _ = reward_noise_flip(r, p=0.3, seed=1, step=7)
    np.testing.assert_array_equal(again, flipped)
    other, _ = reward_noise_flip(r, p=0.3, seed=1, step=8)
    assert not np.array_equal(other, flipped)
    # r_max + r_min − r on a {−1, +1} scale.
    out, mask = reward_noise_flip(np.array([-1.0, 1.0]), p=1.0, seed=0, low=-1.0, high=1.0)
    np.testing.assert_array_equal(out, [1.0, -1.0])
    assert mask.all()


def test_reward_ensemble_agg():
    x = np.array([[1.0, 0.0], [3.0, NAN], [2.0, 4.0]])  # [M=3, B=2]
    np.testing.assert_allclose(reward_ensemble_agg(x, mode="mean"), [2.0, 2.0])
    np.testing.assert_allclose(reward_ensemble_agg(x, mode="min"), [1.0, 0.0])
    np.testing.assert_allclose(reward_ensemble_agg(x, mode="median"), [2.0, 2.0])
    # std of (1, 3, 2) = sqrt(2/3) = 0.816497; of (0, 4) = 2.
    np.testing.assert_allclose(
        reward_ensemble_agg(x, mode="mean_minus_std"), [2 - 0.816497, 0.0], rtol=1e-5
    )
    np.testing.assert_allclose(
        reward_ensemble_agg(x, mode="mean_minus_var", lam=0.5), [2 - 1 / 3, 0.0], rtol=1e-5
    )
    with pytest.raises(ValueError):
        reward_ensemble_agg(x, mode="vote")


def test_pipeline_runs_every_registered_transform():
    comps = {"acc": np.array([1.0, 0.0, 1.0, 0.0]), "prm": np.array([0.5, 0.5, 0.2, 0.4])}
    fields = [{"source": "a", "ref_rewards": [0.0]}] * 2 + [
        {"source": "b", "ref_rewards": [1.0]}
    ] * 2
    steps = {
        "weighted_sum": {"weights": {"acc": 1.0, "prm": 1.0}, "gates": {"prm": ["acc", 1.0]}},
        "success_gate": {"outcome": "acc", "gated": ["prm"]},
        "per_source_normalization": {"source_key": "source"},
        "par_bounded_centered": {"ref_key": "ref_rewards"},
        "logsigmoid_transform": {"keys": ["acc", "prm"]},
        "reward_clip": {"low": 0.0, "high": 1.0},
        "reward_noise_flip": {"p": 0.5, "seed": 3},
        "reward_ensemble_agg": {"keys": ["acc", "prm"], "mode": "min"},
    }
    assert sorted(steps) == SHAPING.names()  # a new transform must be added here
    scores = np.array([1.5, 0.5, 1.2, 0.4], np.float32)
    for name, kw in steps.items():
        out, _ = apply_shaping(
            scores,
            [{"name": name, **kw}],
            components=comps,
            weights={"acc": 1.0, "prm": 1.0},
            group_ids=np.array([0, 0, 1, 1]),
            fields=fields,
            step=1,
        )
        assert out.shape == (4,) and out.dtype == np.float32, name


def test_pipeline_hand_computed_chain():
    comps = {"acc": np.array([1.0, 0.0]), "prm": np.array([0.5, 0.5])}
    # total = acc + 0.5·prm = [1.25, 0.25]; the gate drops 0.5·prm where acc < 1 → [1.25, 0];
    # clip to [0, 1] → [1, 0].
    out, metrics = apply_shaping(
        np.array([1.25, 0.25], np.float32),
        [
            {"name": "success_gate", "outcome": "acc", "gated": ["prm"]},
            {"name": "reward_clip", "low": 0, "high": 1},
        ],
        components=comps,
        weights={"acc": 1.0, "prm": 0.5},
    )
    np.testing.assert_allclose(out, [1.0, 0.0])
    assert metrics["0_success_gate/gate_closed_frac"] == 0.5


def test_pipeline_logsigmoid_group_quantile_reference():
    comps = {"a": np.array([1.0, 3.0, 0.0, 0.0])}
    # Group medians: 2 and 0 → u = log σ(−1), log σ(1), log σ(0), log σ(0).
    out, _ = apply_shaping(
        np.zeros(4, np.float32),
        [{"name": "logsigmoid_transform", "keys": ["a"]}],
        components=comps,
        group_ids=np.array([0, 0, 1, 1]),
    )
    np.testing.assert_allclose(out, [-1.3132617, -0.3132617, -0.6931472, -0.6931472], rtol=1e-6)


def test_pipeline_par_with_the_group_as_references():
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    # Group 0: rewards 1, 0, 2 → each against the other two; group 1: 5 and an unscorable row.
    scores = np.array([1.0, 0.0, 2.0, 5.0, np.nan], np.float32)
    out, _ = apply_shaping(
        scores,
        [{"name": "par_bounded_centered", "reference": "group"}],
        components={"a": scores},
        group_ids=np.array([0, 0, 0, 1, 1]),
    )
    want = [
        (sig(1.0) + sig(-1.0)) / 2,
        (sig(-1.0) + sig(-2.0)) / 2,
        (sig(1.0) + sig(2.0)) / 2,
        0.5,  # no scorable reference: the centre
    ]
    np.testing.assert_allclose(out[:4], want, rtol=1e-6)
    assert np.isnan(out[4])
    with pytest.raises(ValueError, match="reference must be field or group"):
        apply_shaping(
            scores, [{"name": "par_bounded_centered", "reference": "sft"}], components={"a": scores}
        )


def test_pipeline_errors_name_the_culprit():
    comps = {"a": np.zeros(2)}
    with pytest.raises(KeyError, match="unknown"):
        apply_shaping(np.zeros(2), [{"name": "nope"}], components=comps)
    with pytest.raises(TypeError, match="reward_clip"):
        apply_shaping(np.zeros(2), [{"name": "reward_clip", "lo": 0}], components=comps)
    with pytest.raises(KeyError, match="source"):
        apply_shaping(np.zeros(2), [{"name": "per_source_normalization"}], components=comps)
