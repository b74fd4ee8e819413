"""Loss aggregation modes: hand-computed values and micro-batch invariance."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import registry
from rewardjax.objectives import aggregation as agg_lib
from rewardjax.testing import Jitted as _Jitted
from rewardjax.testing import fast_jit as _jit

agg = _Jitted(agg_lib)


# Two rows of lengths 1 and 3 (T = 4), per-token loss ℓ ≡ 1.
MASK_1_3 = jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
ONES = jnp.ones((2, 4))


@pytest.mark.parametrize(
    ("name", "expected", "kwargs"),
    [
        ("token_mean", 1.0, {}),  # (1 + 3) tokens of loss 1 / 4 tokens = 1
        ("seq_mean_token_sum", 2.0, {}),  # (1 + 3) / 2 rows = 2
        ("seq_mean_token_mean", 1.0, {}),  # (1/1 + 3/3) / 2 = 1
        ("seq_mean_token_sum_norm", 0.5, {"loss_scale_factor": 4.0}),  # (1 + 3)/4/2 = 0.5
        ("seq_mean_token_sum_norm", 0.5, {}),  # default C = T = 4: same
    ],
)
def test_catalogue_fixtures(name, expected, kwargs):
    fn = _jit(registry.LOSS_AGGREGATIONS.get(name))
    assert float(fn(ONES, MASK_1_3, **kwargs)) == pytest.approx(expected)


def test_modes_weigh_tokens_differently():
    # ℓ = 1 on row 0 (length 1), ℓ = 0 on row 1 (length 3).
    values = jnp.array([[1.0, 9.0, 9.0, 9.0], [0.0, 0.0, 0.0, 9.0]])
    # token_mean: 1/4; seq_mean_token_mean: (1 + 0)/2; seq_mean_token_sum: 1/2;
    # seq_mean_token_sum_norm with C = 2: 1/2/2.
    assert float(agg.token_mean(values, MASK_1_3)) == pytest.approx(0.25)
    assert float(agg.seq_mean_token_mean(values, MASK_1_3)) == pytest.approx(0.5)
    assert float(agg.seq_mean_token_sum(values, MASK_1_3)) == pytest.approx(0.5)
    assert float(agg.seq_mean_token_sum_norm(values, MASK_1_3, loss_scale_factor=2.0)) == (
        pytest.approx(0.25)
    )


def test_empty_rows_count_nowhere_and_empty_batch_is_zero():
    mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])
    values = jnp.array([[2.0, 4.0], [100.0, 100.0]])
    # Row 1 is empty: B′ = 1, so seq means are over row 0 only.
    assert float(agg.seq_mean_token_mean(values, mask)) == pytest.approx(3.0)
    assert float(agg.seq_mean_token_sum(values, mask)) == pytest.approx(6.0)
    for name in registry.LOSS_AGGREGATIONS.names():
        out = _jit(registry.LOSS_AGGREGATIONS.get(name))(values, jnp.zeros((2, 2)))
        assert float(out) == 0.0, name


@pytest.mark.parametrize("name", registry.LOSS_AGGREGATIONS.names())
def test_micro_batches_with_global_counts_sum_to_full_batch(name):
    rng = np.random.default_rng(0)
    values = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    lengths = [5, 1, 0, 3, 2, 4]
    mask = jnp.asarray([[1.0] * n + [0.0] * (5 - n) for n in lengths])
    fn = _jit(registry.LOSS_AGGREGATIONS.get(name))
    full = fn(values, mask, loss_scale_factor=5.0)
    counts = agg.global_counts(mask)
    # 7 + 7 + 9 tokens in splits [0:2], [2:4], [4:6]; the split losses are summed.
    parts = [
        fn(values[i : i + 2], mask[i : i + 2], loss_scale_factor=5.0, **counts._asdict())
        for i in (0, 2, 4)
    ]
    np.testing.assert_allclose(float(sum(parts)), float(full), rtol=1e-5, atol=1e-7)
    # Without the global counts the local averages do not add up to the full loss.
    local = [fn(values[i : i + 2], mask[i : i + 2], loss_scale_factor=5.0) for i in (0, 2, 4)]
    assert abs(float(sum(local)) - float(full)) > 1e-3


def test_global_counts():
    counts = agg.global_counts(MASK_1_3)
    assert float(counts.num_tokens) == 4.0
    assert float(counts.num_seqs) == 2.0


def test_masked_whiten_has_zero_mean_unit_std_and_zero_padding():
    x = jnp.array([[1.0, 2.0, 50.0], [3.0, 4.0, -50.0]])
    mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    w = agg.masked_whiten(x, mask)
    # Valid entries 1, 2, 3, 4: mean 2.5, unbiased var 5/3.
    expected = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.sqrt(5.0 / 3.0 + 1e-8)
    np.testing.assert_allclose(np.asarray(w)[:, :2].ravel(), expected, rtol=1e-6)
    assert np.all(np.asarray(w)[:, 2] == 0.0)


def test_aggregate_dispatches_and_rejects_unknown_mode():
    assert float(agg.aggregate(ONES, MASK_1_3, aggregation="seq_mean_token_sum")) == 2.0
    with pytest.raises(KeyError, match="token_mean"):
        agg.aggregate(ONES, MASK_1_3, aggregation="tokenmean")
