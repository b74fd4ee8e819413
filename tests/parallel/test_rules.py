"""Logical-axis rules, state shardings and sharded jit, on abstract meshes and one device."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AbstractMesh, AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from rewardjax import models, parallel
from rewardjax.training.optim import make_optimizer
from rewardjax.training.step import TrainState

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _steps

CFG = models.preset("tiny")
AXES = models.logical_axes(CFG, ("lm", "reward"))


def abstract_mesh(data, fsdp, tensor):
    return AbstractMesh((data, fsdp, tensor), parallel.MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def by_path(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, P))[0]
    return {jax.tree_util.keystr(p, simple=True, separator="/"): v for p, v in flat}


def test_default_rules_place_every_tiny_parameter():
    specs = by_path(parallel.param_specs(AXES))
    # Hand-written from the table: vocab→tensor, embed→fsdp, heads→tensor,
    # mlp→tensor, kv→fsdp where embed left fsdp free (the biases), layers unsharded.
    assert specs == {
        "embed/embedding": P("tensor", "fsdp"),
        "final_norm/scale": P("fsdp"),
        "layers/attn/k_proj/bias": P(None, "tensor", "fsdp"),
        "layers/attn/k_proj/kernel": P(None, "fsdp", "tensor", None),
        "layers/attn/o_proj/kernel": P(None, "tensor", None, "fsdp"),
        "layers/attn/q_proj/bias": P(None, "tensor", "fsdp"),
        "layers/attn/q_proj/kernel": P(None, "fsdp", "tensor", None),
        "layers/attn/v_proj/bias": P(None, "tensor", "fsdp"),
        "layers/attn/v_proj/kernel": P(None, "fsdp", "tensor", None),
        "layers/input_norm/scale": P(None, "fsdp"),
        "layers/mlp/down_proj/kernel": P(None, "tensor", "fsdp"),
        "layers/mlp/gate_proj/kernel": P(None, "fsdp", "tensor"),
        "layers/mlp/up_proj/kernel": P(None, "fsdp", "tensor"),
        "layers/post_attn_norm/scale": P(None, "fsdp"),
        "reward_head/bias": P(),
        "reward_head/kernel": P("fsdp"),
    }


def test_strict_table_names_the_unmatched_parameter():
    strict = [(n, a) for n, a in parallel.DEFAULT_RULES if n not in ("mlp", parallel.CATCH_ALL)]
    with pytest.raises(ValueError) as err:
        parallel.param_specs(AXES, strict)
    message = str(err.value)
    assert "layers/mlp/down_proj/kernel" in message
    assert "'mlp'" in message
    # With the catch-all back, the MLP width is simply replicated.
    specs = by_path(parallel.param_specs(AXES, [*strict, (parallel.CATCH_ALL, None)]))
    assert specs["layers/mlp/down_proj/kernel"] == P(None, None, "fsdp")


def test_rule_table_errors():
    mesh = abstract_mesh(1, 1, 1)
    with pytest.raises(ValueError, match=r"catch-all.*must be last"):
        parallel.validate_rules([(parallel.CATCH_ALL, None), ("embed", "fsdp")])
    with pytest.raises(ValueError, match=r"mesh axis 'model'.*data, fsdp, tensor"):
        parallel.validate_rules([("embed", "model")], mesh)
    with pytest.raises(ValueError, match="expected \\(logical_name, mesh_axes\\)"):
        parallel.validate_rules([("embed",)])


def test_undividable_dimension_names_parameter_and_sizes():
    params = jax.eval_shape(lambda k: models.init_params(CFG, k), jax.random.key(0))
    axes = models.logical_axes(CFG)
    # k_proj bias is [layers=2, kv_heads=2, head_dim=16]: 2 heads over tensor=8.
    with pytest.raises(ValueError) as err:
        parallel.param_shardings(axes, abstract_mesh(1, 1, 8), shapes=params)
    message = str(err.value)
    for word in ("layers/attn/k_proj/bias", "'heads'", "size 2", "tensor=8"):
        assert word in message
    # tensor=2 divides 2 and 4 heads, fsdp=4 divides width 64.
    parallel.param_shardings(axes, abstract_mesh(1, 4, 2), shapes=params)


def test_param_and_logical_trees_must_match():
    params = jax.eval_shape(
        lambda k: models.init_params(CFG, k, ("lm", "reward")), jax.random.key(0)
    )
    with pytest.raises(ValueError, match=r"only in params .*reward_head"):
        parallel.param_shardings(models.logical_axes(CFG), abstract_mesh(1, 1, 1), shapes=params)


def test_state_shardings_follow_params_into_optax_state():
    mesh = abstract_mesh(2, 2, 2)
    opt = make_optimizer(learning_rate=1e-3)
    state = jax.eval_shape(
        lambda k: TrainState.create({"policy": models.init_params(CFG, k)}, opt), jax.random.key(0)
    )
    sh = parallel.state_shardings(state, mesh, {"policy": models.logical_axes(CFG)})
    q = ("policy", "layers", "attn", "q_proj", "kernel")

    def get(tree, path):
        for k in path:
            tree = tree[k]
        return tree

    assert get(sh.params, q).spec == P(None, "fsdp", "tensor", None)
    adam = sh.opt_state[1][0]  # chain(clip, adamw) → adamw's chain → scale_by_adam
    assert get(adam.mu, q).spec == P(None, "fsdp", "tensor", None)
    assert get(adam.nu, q).spec == P(None, "fsdp", "tensor", None)
    assert adam.count.spec == P()
    assert sh.step.spec == P() and sh.skipped.spec == P()
    # Every optimizer leaf is accounted for: Adam's mu and nu mirror the params.
    n_params = len(jax.tree.leaves(state.params))
    sharded = [s for s in jax.tree.leaves(sh.opt_state) if s.spec != P()]
    param_sharded = [s for s in jax.tree.leaves(sh.params) if s.spec != P()]
    assert len(sharded) == 2 * len(param_sharded) and len(param_sharded) == n_params


def test_opt_state_leaf_of_another_shape_is_replicated():
    mesh = abstract_mesh(1, 2, 1)
    params = {"w": jax.ShapeDtypeStruct((8, 4), jnp.float32)}
    p_sh = {"w": NamedSharding(mesh, P("fsdp", None))}
    # adafactor keeps factored row/column statistics of shapes [8] and [4].
    opt_state = jax.eval_shape(optax.adafactor(1e-3, min_dim_size_to_factor=2).init, params)
    sh = parallel.opt_state_shardings(opt_state, params, p_sh, mesh)
    specs = {s.spec for s in jax.tree.leaves(sh)}
    assert specs == {P()}
    momentum = jax.eval_shape(optax.sgd(0.1, momentum=0.9).init, params)
    sh = parallel.opt_state_shardings(momentum, params, p_sh, mesh)
    assert sh[0].trace["w"].spec == P("fsdp", None)


def test_batch_and_cache_shardings():
    mesh = abstract_mesh(2, 2, 2)
    assert parallel.batch_sharding(mesh).spec == P(("data", "fsdp"))
    assert parallel.batch_parallelism(mesh) == 4
    with pytest.raises(ValueError, match=r"tokens has 6 rows.*data=2×fsdp=2 = 4"):
        parallel.check_batch({"tokens": np.zeros((6, 3))}, mesh)
    parallel.check_batch({"tokens": np.zeros((8, 3))}, mesh)
    # [layers, B, K, S, Dh]: batch over data×fsdp, KV heads over tensor.
    assert parallel.kv_cache_sharding(mesh).spec == P(None, ("data", "fsdp"), "tensor", None, None)
    assert parallel.CATCH_ALL not in dict(parallel.activation_rules())


def test_model_applies_under_the_rules_on_a_mesh():
    mesh = parallel.make_mesh()
    model = models.build(CFG)
    params = jax.jit(lambda k: models.init_params(CFG, k))(jax.random.key(0))
    tokens = jnp.arange(12, dtype=jnp.int32).reshape(2, 6)
    plain = jax.jit(lambda p, t: model.apply({"params": p}, t))(params, tokens)
    with parallel.use_rules(mesh):
        ruled = jax.jit(lambda p, t: model.apply({"params": p}, t))(params, tokens)
    np.testing.assert_allclose(np.asarray(ruled), np.asarray(plain), atol=1e-6)


def test_jit_step_traces_the_rules_keeps_shardings_and_donates():
    update, state, batch, axes = _steps.make_case("sft")
    host = jax.device_get(state)
    # The same update without the rules, shardings or donation: the reference.
    expected_state, expected = jax.jit(update)(host, batch, jax.random.key(3))
    mesh = parallel.make_mesh()
    sh = parallel.state_shardings(host, mesh, axes)
    state = jax.device_put(host, sh)
    step = parallel.jit_step(update, mesh, sh, parallel.batch_sharding(mesh))
    sharded_batch = parallel.shard_batch(batch, mesh)
    rng = jax.random.key(3)
    # The model's act_batch / act_mlp / act_embed constraints were traced under
    # the rules; a plain jit of the same update has none.
    assert step.lower(state, sharded_batch, rng).as_text().count("sharding_constraint") > 0
    plain = jax.jit(update).lower(state, sharded_batch, rng).as_text()
    assert plain.count("sharding_constraint") == 0
    new, metrics = step(state, sharded_batch, rng)
    assert state.params["policy"]["embed"]["embedding"].is_deleted()  # donated
    np.testing.assert_allclose(float(metrics["loss"]), float(expected["loss"]), rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        jax.device_get(new.params),
        jax.device_get(expected_state.params),
    )
    # The step moved the params: the comparison is not between two initial states.
    assert not np.array_equal(
        host.params["policy"]["embed"]["embedding"],
        np.asarray(new.params["policy"]["embed"]["embedding"]),
    )
    mu = new.opt_state[1][0].mu["policy"]["embed"]["embedding"]
    assert mu.sharding == sh.opt_state[1][0].mu["policy"]["embed"]["embedding"]
    assert new.step.sharding == parallel.replicated(mesh)


def test_init_sharded_creates_the_state_with_its_shardings():
    mesh = parallel.make_mesh()
    opt = make_optimizer(learning_rate=1e-3)

    def create(key):
        return TrainState.create({"policy": models.init_params(CFG, key)}, opt)

    abstract = jax.eval_shape(create, jax.random.key(0))
    sh = parallel.state_shardings(abstract, mesh, {"policy": models.logical_axes(CFG)})
    state = parallel.init_sharded(create, mesh, sh, jax.random.key(0))
    got = jax.tree.map(lambda x: x.sharding, state)
    assert jax.tree.leaves(got) == jax.tree.leaves(sh)
    eager = jax.jit(lambda k: models.init_params(CFG, k))(jax.random.key(0))
    np.testing.assert_array_equal(
        np.asarray(state.params["policy"]["embed"]["embedding"]),
        np.asarray(eager["embed"]["embedding"]),
    )


def test_shardings_summary():
    mesh = abstract_mesh(1, 1, 1)
    summary = parallel.shardings_summary(parallel.param_shardings(models.logical_axes(CFG), mesh))
    assert summary["embed/embedding"] == str(P("tensor", "fsdp"))
