"""The shared update step: gradient accumulation, non-finite guard, compile count."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewardjax.objectives.aggregation import aggregate
from rewardjax.training.step import TrainState, make_update_step, split_microbatches


def _loss(aggregation):
    def loss_fn(params, mb, rng, totals):
        del rng
        pred = mb["x"] @ params["w"]  # [B, T]
        per_token = (pred - mb["y"]) ** 2
        loss = aggregate(
            per_token,
            mb["mask"],
            aggregation=aggregation,
            num_tokens=totals["num_tokens"],
            num_seqs=totals["num_seqs"],
            loss_scale_factor=4.0,
        )
        return loss, {"pred_mean": jnp.mean(pred)}

    return loss_fn


def _batch(rng):
    k1, k2 = jax.random.split(rng)
    x = jax.random.normal(k1, (8, 4, 3))  # [B, T, D]
    y = jax.random.normal(k2, (8, 4))
    # Ragged rows, one of them empty: normalisers must be batch-wide.
    lengths = jnp.array([4, 1, 3, 0, 2, 4, 1, 2])
    mask = (jnp.arange(4)[None, :] < lengths[:, None]).astype(jnp.float32)
    return {"x": x, "y": y, "mask": mask}


@pytest.mark.parametrize(
    "aggregation",
    ["token_mean", "seq_mean_token_sum", "seq_mean_token_mean", "seq_mean_token_sum_norm"],
)
def test_microbatches_match_full_batch(aggregation):
    opt = optax.sgd(0.1)
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    batch = _batch(jax.random.key(0))
    results = []
    for m in (1, 2, 4):
        step = jax.jit(make_update_step(_loss(aggregation), opt, microbatches=m))
        state, metrics = step(TrainState.create(params, opt), batch, jax.random.key(1))
        results.append((state.params["w"], metrics["loss"]))
    # The reference: one gradient of the whole-batch loss under hand-counted
    # normalisers (17 tokens; 7 non-empty rows, the empty one counts nowhere).
    totals = {"num_tokens": jnp.float32(17), "num_seqs": jnp.float32(7)}
    assert float(jnp.sum(batch["mask"])) == 17
    loss, grad = jax.value_and_grad(lambda w: _loss(aggregation)({"w": w}, batch, None, totals)[0])(
        params["w"]
    )
    for w, step_loss in results:
        np.testing.assert_allclose(step_loss, loss, rtol=1e-6)
        np.testing.assert_allclose(w, params["w"] - 0.1 * grad, rtol=1e-6, atol=1e-7)


def test_nonfinite_loss_skips_update_and_counts():
    opt = optax.adam(0.1)
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    batch = _batch(jax.random.key(0))
    step = jax.jit(make_update_step(_loss("token_mean"), opt))
    state = TrainState.create(params, opt)
    state, m = step(state, batch, jax.random.key(0))
    assert float(m["skipped"]) == 0.0
    good_params, good_opt = state.params, state.opt_state
    bad = dict(batch, y=batch["y"].at[0, 0].set(jnp.nan))
    for i in range(3):
        state, m = step(state, bad, jax.random.key(i))
        assert float(m["skipped"]) == 1.0
        assert int(state.consecutive_skips) == i + 1
        np.testing.assert_array_equal(state.params["w"], good_params["w"])
        for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(good_opt)):
            np.testing.assert_array_equal(a, b)
    assert int(state.skipped) == 3
    state, m = step(state, batch, jax.random.key(9))
    assert int(state.consecutive_skips) == 0 and int(state.skipped) == 3
    assert not np.array_equal(state.params["w"], good_params["w"])


def test_nan_gradient_with_finite_loss_is_skipped():
    opt = optax.sgd(0.1)

    def loss_fn(params, mb, rng, totals):
        # sqrt'(0) = inf: a finite loss whose gradient is not.
        return jnp.sum(jnp.sqrt(params["w"] * mb["x"][:, 0])), {}

    step = jax.jit(make_update_step(loss_fn, opt))
    state = TrainState.create({"w": jnp.array([0.0, 1.0])}, opt)
    state, m = step(state, {"x": jnp.ones((2, 1))}, jax.random.key(0))
    # loss = √(0·1) + √(1·1) = 1.
    assert float(m["loss"]) == 1.0 and float(m["skipped"]) == 1.0
    np.testing.assert_array_equal(state.params["w"], [0.0, 1.0])


def test_split_microbatches_error_names_sizes():
    with pytest.raises(ValueError, match="6 rows does not split into 4"):
        split_microbatches({"x": jnp.zeros((6, 2))}, 4)


def test_update_compiles_once_for_repeated_shapes():
    opt = optax.adam(1e-2)
    step = jax.jit(make_update_step(_loss("token_mean"), opt, microbatches=2), donate_argnums=0)
    state = TrainState.create({"w": jnp.ones(3)}, opt)
    for i in range(5):
        state, _ = step(state, _batch(jax.random.key(i)), jax.random.key(i))
    assert step._cache_size() == 1
