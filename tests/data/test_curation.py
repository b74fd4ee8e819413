"""Curation: pass-rate filter, dynamic sampling, the refill loop, per-prompt statistics."""

import functools
import json

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.data.curation import (
    PromptStats,
    dynamic_sampling,
    fill_groups,
    pass_rate_filter,
    select_groups,
)
from rewardjax.registry import CURATION

NAN = float("nan")


def test_registered():
    assert CURATION.get("pass_rate_filter") is pass_rate_filter
    assert CURATION.get("dynamic_sampling") is dynamic_sampling


def test_pass_rate_filter_g4_keeps_quarter_half_three_quarters():
    # G = 4 pass rates 0, .25, .5, .75, 1 with lo .2, hi .8 -> keep the middle three.
    correct = np.array(
        [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], np.float32
    )
    np.testing.assert_array_equal(pass_rate_filter(correct), [0, 1, 1, 1, 0])
    # Inclusive bounds: lo = .25 still keeps pass rate .25.
    np.testing.assert_array_equal(pass_rate_filter(correct, lo=0.25, hi=0.75), [0, 1, 1, 1, 0])


def test_pass_rate_filter_truncation_and_unscorable():
    correct = np.array([[1, 0, 0, 0], [1, 0, NAN, NAN], [NAN] * 4])
    truncated = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
    # Row 0 has a truncated completion; row 1's pass rate is 1/2 over two scored
    # samples; row 2 has nothing scorable.
    np.testing.assert_array_equal(pass_rate_filter(correct, truncated=truncated), [0, 1, 0])
    np.testing.assert_array_equal(
        pass_rate_filter(correct, truncated=truncated, filter_truncate=False), [1, 1, 0]
    )
    with pytest.raises(ValueError, match=r"\[P, G\]"):
        pass_rate_filter(np.zeros(4))


def test_dynamic_sampling_drops_zero_variance_groups():
    rewards = np.array(
        [
            [1, 1, 1, 1],
            [0, 0, 0, 0],
            [1, 0, 1, 1],
            [0.5, 0.5, 0.2, 0.5],
            [1, NAN, NAN, NAN],
            [1, NAN, 0, NAN],
        ]
    )
    np.testing.assert_array_equal(dynamic_sampling(rewards), [0, 0, 1, 1, 0, 1])
    # Open interval on the mean: (0, 1) is OpenRLHF's rule for binary rewards.
    np.testing.assert_array_equal(dynamic_sampling(rewards, lo=0.0, hi=1.0), [0, 0, 1, 1, 0, 1])
    # Means .75 and .425 -> only .425 lies in (0.3, 0.6).
    np.testing.assert_array_equal(dynamic_sampling(rewards[2:4], lo=0.3, hi=0.6), [0, 1])
    with pytest.raises(ValueError, match="both lo and hi"):
        dynamic_sampling(rewards, lo=0.0)


def test_select_groups_prefers_kept_and_fills():
    keep = np.array([0, 1, 0, 1, 1], bool)
    np.testing.assert_array_equal(select_groups(keep, 2), [1, 3])
    np.testing.assert_array_equal(select_groups(keep, 4), [1, 3, 4, 0])
    with pytest.raises(ValueError, match="6 groups out of 5"):
        select_groups(keep, 6)


def _rounds(rewards_per_round, group_size):
    """sample_round returning rows tagged (round, row) and the given rewards."""

    def sample_round(r):
        rewards = np.asarray(rewards_per_round[r], np.float32)
        p = rewards.shape[0]
        tags = np.stack([np.full(p * group_size, r), np.arange(p * group_size)], axis=1)
        return {"tag": tags, "tokens": jnp.arange(p * group_size)[:, None] + 100 * r}, rewards

    return sample_round


def test_fill_groups_refills_until_the_batch_is_full():
    g = 2
    rounds = [
        [[1, 1], [0, 1], [0, 0]],  # keeps group 1
        [[1, 1], [1, 1], [1, 1]],  # keeps nothing
        [[1, 0], [0, 1], [1, 0]],  # keeps all three; only two are needed
    ]
    batch, info = fill_groups(_rounds(rounds, g), num_groups=3, group_size=g)
    assert info == {"rounds": 3, "groups_sampled": 9, "groups_kept": 3}
    # Round 0 group 1 (rows 2, 3), then round 2 groups 0, 1 (rows 0..3).
    np.testing.assert_array_equal(batch["tag"], [[0, 2], [0, 3], [2, 0], [2, 1], [2, 2], [2, 3]])
    np.testing.assert_array_equal(batch["tokens"][:, 0], [2, 3, 200, 201, 202, 203])
    assert isinstance(batch["tokens"], type(jnp.zeros(1)))


def test_fill_groups_round_cap_and_custom_filter():
    g = 4
    dead = [[[1, 1, 1, 1]]] * 3
    with pytest.raises(RuntimeError, match="kept 0 of the 1 groups needed after 3 rounds"):
        fill_groups(_rounds(dead, g), num_groups=1, group_size=g, max_rounds=3)
    rounds = [[[1, 0, 0, 0], [1, 1, 1, 0]]]
    keep_fn = functools.partial(pass_rate_filter, lo=0.5, hi=0.8)
    batch, info = fill_groups(_rounds(rounds, g), num_groups=1, group_size=g, keep_fn=keep_fn)
    assert info["rounds"] == 1
    np.testing.assert_array_equal(batch["tag"][:, 1], [4, 5, 6, 7])  # pass rate .75 group


def test_prompt_stats_update_and_state_round_trip():
    stats = PromptStats()
    stats.update(["a", "b"], np.array([[1, 0, 0, 0], [1, 1, 1, 1]]), step=3)
    stats.update(["a"], np.array([[1, 1, NAN, NAN]]), step=5)
    # a: 1 + 2 correct over 4 + 2 scored samples = 0.5; last group 2/2 = 1.
    assert stats.pass_rate("a") == pytest.approx(0.5)
    assert stats.get("a") == {"samples": 6, "pass_rate": 0.5, "last_pass_rate": 1.0, "last_step": 5}
    assert stats.pass_rate("b") == 1.0 and stats.pass_rate("c") is None
    assert stats.summary() == {
        "prompts_seen": 2.0,
        "prompts_always_solved": 1.0,
        "prompts_never_solved": 0.0,
    }
    stats.update(["c"], np.array([[NAN, NAN]]), step=6)
    state = json.loads(json.dumps(stats.state_dict()))
    restored = PromptStats.from_state_dict(state)
    assert restored.get("a") == stats.get("a") and len(restored) == 3
    assert restored.pass_rate("c") is None and "c" in restored
    with pytest.raises(ValueError, match="2 uids but correct has 1 groups"):
        stats.update(["a", "b"], np.zeros((1, 4)), step=7)
