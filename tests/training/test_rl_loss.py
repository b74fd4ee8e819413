"""The RL loss path: config keys checked at start, one β input, fused == reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import grpo_arithmetic
from rewardjax import models, parallel, registry
from rewardjax.models import forward
from rewardjax.training import rl, rl_loss
from rewardjax.training.step import TrainState, make_update_step

AGGREGATIONS = [
    "token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
]
VOCAB = 99
CONFIG = models.preset("tiny", vocab_size=VOCAB)
POLICY = models.build(CONFIG)


def _loss(**overrides):
    kwargs = dict(
        loss_name="ppo_clip",
        loss_kwargs=dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0),
        aggregation="seq_mean_token_mean",
        temperature=1.0,
        kl_placement="loss",
        kl_estimator="kl_k3",
        entropy_coef=0.0,
        value_coef=0.0,
        value_clip=None,
    )
    kwargs.update(overrides)
    return rl_loss.make_rl_loss(POLICY, None, **kwargs)


def _minibatch(seed=1):
    k = jax.random.split(jax.random.key(seed), 6)
    b, length, t = 4, 5, 6
    mask = (np.arange(t)[None] < np.array([6, 3, 0, 4])[:, None]).astype(np.float32)
    old = -jax.random.uniform(k[2], (b, t), minval=3.0, maxval=6.0)
    return dict(
        prompt_tokens=jax.random.randint(k[0], (b, length), 3, VOCAB),
        prompt_mask=np.ones((b, length), np.int32),
        tokens=jax.random.randint(k[1], (b, t), 3, VOCAB),
        mask=mask,
        old_logprobs=old,
        rollout_logprobs=old + 0.01,
        advantages=jax.random.normal(k[3], (b, t)) * mask,
        ref_logprobs=-jax.random.uniform(k[4], (b, t), minval=3.0, maxval=6.0),
    )


# ------------------------------------------------------------------ keys checked at start


def test_unknown_loss_kwarg_fails_at_start_naming_the_key():
    with pytest.raises(
        ValueError, match=r"loss\.kwargs\.clip_hgh: .*accepted: clip_high, clip_low"
    ):
        _loss(loss_kwargs=dict(clip_low=0.2, clip_hgh=0.28))
    # A keyword the trainer passes itself names the config key that sets it.
    with pytest.raises(ValueError, match=r"loss\.kwargs\.kl_coef: .*kl\.coef"):
        _loss(loss_kwargs=dict(kl_coef=0.1))
    with pytest.raises(ValueError, match=r"loss\.kwargs\.aggregation: .*loss\.aggregation"):
        _loss(loss_kwargs=dict(aggregation="token_mean"))
    # cispo has no `dual_clip`.
    with pytest.raises(ValueError, match=r"loss\.kwargs\.dual_clip: cispo_loss has no keyword"):
        _loss(loss_name="cispo")


def test_forced_kernel_where_it_does_not_apply_fails_at_start():
    with pytest.raises(ValueError, match=r"loss\.kwargs\.impl: .*tis_mode='token'"):
        _loss(loss_kwargs=dict(impl="chunked", tis_mode="token"))
    with pytest.raises(ValueError, match=r"loss\.kwargs\.impl: .*kl_estimator='kl_k2'"):
        _loss(loss_kwargs=dict(impl="pallas"), kl_estimator="kl_k2")
    # "auto" decides once, at start: the kernel where it applies, the composition elsewhere.
    assert _loss().impl == "chunked"
    assert _loss(kl_estimator="kl_k2").impl == "reference"
    assert _loss(kl_placement="reward", kl_estimator="kl_k1").impl == "chunked"
    assert _loss(loss_kwargs=dict(tis_mode="token")).impl == "reference"


def test_unknown_advantage_kwarg_fails_at_start_naming_the_key():
    with pytest.raises(ValueError, match=r"advantage\.kwargs\.epsilon: .*accepted: .*eps"):
        rl_loss.advantage_estimator("grpo_group_norm", {"epsilon": 1e-6})
    with pytest.raises(ValueError, match=r"advantage\.kwargs\.group_size: .*the trainer"):
        rl_loss.advantage_estimator("grpo_group_norm", {"group_size": 4})
    # The bound value is used: rewards (1, 0) in one group of 2 have mean 0.5, so without
    # std scaling A = ±0.5 (with it, ±0.707).
    estimator = rl_loss.advantage_estimator("grpo_group_norm", {"scale_by_std": False})
    adv, returns = rl_loss.compute_advantages(
        estimator, rewards=jnp.array([1.0, 0.0]), mask=jnp.ones((2, 3)), group_size=2
    )
    np.testing.assert_allclose(adv, [[0.5] * 3, [-0.5] * 3])
    assert returns is None


def test_bind_checks_every_key_and_required_keywords():
    def loss(x, *, a, b=2.0, c=3.0):
        return x * a + b + c

    bound = registry.bind(loss, {"a": 10.0, "c": 0.0}, what="objective.kwargs")
    assert bound(1.0) == 12.0  # 1·10 + 2 + 0
    with pytest.raises(
        ValueError, match=r"objective\.kwargs\.d: loss has no keyword 'd'; accepted: a, b, c"
    ):
        registry.bind(loss, {"a": 1.0, "d": 1.0}, what="objective.kwargs")
    with pytest.raises(ValueError, match=r"needs objective\.kwargs\.a"):
        registry.bind(loss, {}, what="objective.kwargs")
    with pytest.raises(ValueError, match=r"loss\.kwargs\.b: loss gets 'b' from the data"):
        registry.bind(loss, {"a": 1.0, "b": 1.0}, reserved={"b": "the data"})


@pytest.mark.parametrize(
    "placement,coef,adaptive,needs_ref",
    [("none", 0.0, False, False), ("loss", 0.04, False, True), ("reward", 0.001, True, True)],
)
def test_kl_config_that_means_one_thing(placement, coef, adaptive, needs_ref):
    assert rl_loss.check_kl_config(placement, coef, adaptive) is needs_ref


@pytest.mark.parametrize(
    "placement,coef,adaptive,message",
    [
        ("none", 0.04, False, r"kl\.coef=0\.04 .*kl\.placement='none'"),
        ("none", 0.0, True, r"kl\.adaptive=True\) with kl\.placement='none'"),
        ("loss", 0.0, False, r"kl\.placement='loss' with kl\.coef=0"),
        ("reward", 0.0, True, r"kl\.placement='reward' with kl\.coef=0"),
        ("both", 0.04, False, r"kl\.placement='both'"),
        ("loss", -0.1, False, r"kl\.coef=-0\.1"),
    ],
)
def test_kl_config_that_would_silently_drop_kl_fails(placement, coef, adaptive, message):
    with pytest.raises(ValueError, match=message):
        rl_loss.check_kl_config(placement, coef, adaptive)


def test_trainer_rejects_bad_keys_at_start(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.kl.coef = 0.04  # placement stays "none"
    with pytest.raises(ValueError, match=r"kl\.coef=0\.04 .*kl\.placement='none'"):
        rl.RLTrainer(c, str(tmp_path / "kl"))
    c = grpo_arithmetic.get_config("runlocal=True")
    c.loss.kwargs.clip_hgh = 0.28
    with pytest.raises(ValueError, match=r"loss\.kwargs\.clip_hgh"):
        rl.RLTrainer(c, str(tmp_path / "loss"))


# ------------------------------------------------------------------ fused == reference


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_fused_policy_loss_matches_composed_objectives(aggregation):
    # Value and gradient with respect to the model's parameters, with and without the
    # KL and entropy terms, β a traced scalar in both paths.
    params = {"policy": models.init_params(CONFIG, jax.random.key(0))}
    mb = _minibatch()
    totals = dict(
        num_tokens=jnp.float32(mb["mask"].sum()),
        num_seqs=jnp.float32(3.0),
        kl_coef=jnp.float32(0.05),
    )
    kwargs = dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0, loss_scale_factor=6.0)
    variants = [("none", 0.0), ("loss", 0.0), ("none", 0.01), ("loss", 0.01)]
    losses = {
        (placement, ent, impl): _loss(
            loss_kwargs=dict(kwargs, impl=impl),
            aggregation=aggregation,
            kl_placement=placement,
            entropy_coef=ent,
        )
        for placement, ent in variants
        for impl in ("chunked", "reference")
    }

    @jax.jit
    def run():
        return {
            key: jax.value_and_grad(fn, has_aux=True)(params, mb, None, totals)
            for key, fn in losses.items()
        }

    out = run()
    for placement, ent in variants:
        (lf, mf), gf = out[(placement, ent, "chunked")]
        (lr, mr), gr = out[(placement, ent, "reference")]
        label = f"kl={placement} entropy_coef={ent}"
        np.testing.assert_allclose(lf, lr, rtol=1e-5, atol=1e-6, err_msg=label)
        assert set(mf) == set(mr), label
        for key in mr:
            np.testing.assert_allclose(mf[key], mr[key], rtol=1e-4, atol=1e-6, err_msg=key)
        for a, b in zip(jax.tree.leaves(gf), jax.tree.leaves(gr), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=label)
    # The variants differ from each other, so each term was really in both paths.
    base = out[("none", 0.0, "reference")][0][0]
    for placement, ent in variants[1:]:
        assert abs(float(out[(placement, ent, "reference")][0][0]) - float(base)) > 1e-6


# ------------------------------------------------------------------ β, one scalar input


def test_changed_beta_changes_the_loss_without_recompiling():
    aggregation = "token_mean"
    loss = _loss(aggregation=aggregation)
    opt = optax.sgd(0.0)  # params stay put, so the two steps differ by β alone
    params = {"policy": models.init_params(CONFIG, jax.random.key(0))}
    mesh = parallel.mesh_from_config(dict(data=-1, fsdp=1, tensor=1))
    state = TrainState.create(params, opt)
    shardings = parallel.state_shardings(state, mesh, {"policy": models.logical_axes(CONFIG)})
    step = parallel.jit_step(
        make_update_step(loss, opt), mesh, shardings, parallel.batch_sharding(mesh)
    )
    mb = _minibatch()
    # Independently of the loss code: k3 of the policy's own log-probs against the
    # reference, token-mean over the mask; the two losses must differ by Δβ·that.
    logp, _ = forward.completion_logprobs(
        POLICY, params["policy"], mb["prompt_tokens"], mb["prompt_mask"], mb["tokens"], mb["mask"]
    )
    delta = np.asarray(mb["ref_logprobs"], np.float64) - np.asarray(logp, np.float64)
    k3 = np.exp(delta) - delta - 1.0
    k3_mean = float((k3 * mb["mask"]).sum() / mb["mask"].sum())
    batch = parallel.shard_batch(mb, mesh)
    state = jax.device_put(state, shardings)  # donated by the step from here on
    state, m1 = step(state, batch, jax.random.key(0), {"kl_coef": 0.05})
    state, m2 = step(state, batch, jax.random.key(0), {"kl_coef": 0.45})
    assert step._cache_size() == 1
    assert k3_mean > 0.1  # a real KL term, not a vanishing one
    np.testing.assert_allclose(float(m2["loss"] - m1["loss"]), 0.4 * k3_mean, rtol=1e-4)


def test_kl_in_the_loss_without_beta_input_is_named():
    loss = _loss()
    params = {"policy": models.init_params(CONFIG, jax.random.key(0))}
    mb = _minibatch()
    totals = dict(num_tokens=jnp.float32(13.0), num_seqs=jnp.float32(3.0))
    with pytest.raises(KeyError, match="kl_coef"):
        jax.eval_shape(functools.partial(loss, rng=None, totals=totals), params, mb)


# ------------------------------------------------------------------ old log-probs in the update


def test_old_logprobs_from_the_update_equal_a_separate_pass():
    # One update per rollout: leaving old_logprobs out of the minibatch makes the
    # loss use its own forward pass (held constant) as the behaviour policy. Value,
    # gradient and metrics equal those with the old log-probs computed beforehand.
    params = {"policy": models.init_params(CONFIG, jax.random.key(0))}
    mb = _minibatch()
    mb.pop("ref_logprobs")
    logp, entropy = forward.completion_logprobs(
        POLICY, params["policy"], mb["prompt_tokens"], mb["prompt_mask"], mb["tokens"], mb["mask"]
    )
    mb["rollout_logprobs"] = logp + 0.3 * mb["mask"]
    separate = dict(mb, old_logprobs=logp)
    in_step = {k: v for k, v in mb.items() if k != "old_logprobs"}
    totals = dict(num_tokens=jnp.float32(mb["mask"].sum()), num_seqs=jnp.float32(3.0))
    loss = _loss(kl_placement="none", entropy_coef=0.01)
    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (la, ma), ga = grad(params, separate, None, totals)
    (lb, mb_), gb = grad(params, in_step, None, totals)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for key in ma:
        np.testing.assert_allclose(ma[key], mb_[key], rtol=1e-5, atol=1e-7, err_msg=key)
    # The metrics of the skipped pass come from the update instead.
    mask = np.asarray(mb["mask"])
    np.testing.assert_allclose(mb_["rollout/logp_gap_mean"], 0.3, rtol=1e-5)
    np.testing.assert_allclose(
        mb_["rollout/entropy"], (np.asarray(entropy) * mask).sum() / mask.sum(), rtol=1e-5
    )
    assert "rollout/entropy" not in ma


def test_trainer_skips_the_old_logprob_pass_only_for_one_update_per_rollout(tmp_path):
    def trainer(**updates):
        c = grpo_arithmetic.get_config("runlocal=True")
        c.updates.update(updates)
        c.kl.coef = 0.0
        return rl.RLTrainer(c, str(tmp_path / str(sorted(updates.items()))))

    calls = []
    one = trainer(epochs=1, minibatches=1)
    assert one.old_logprobs_in_update
    for t in (one, trainer(epochs=2, minibatches=1)):
        t._logprob_fn = lambda *a, fn=t._logprob_fn: calls.append(1) or fn(*a)
        metrics = t.train_step()
        assert {"rollout/logp_gap_mean", "rollout/entropy"} <= set(metrics)
        assert metrics["rollout/logp_gap_mean"] < 1e-4  # sampler and trainer agree
    assert len(calls) == 1  # only the two-epoch trainer ran the separate pass


# ------------------------------------------------------------------ unscorable rows, registries


def test_unscorable_rows_get_advantage_zero_and_leave_their_group_statistics():
    estimator = rl_loss.advantage_estimator("grpo_group_norm", {"eps": 1e-6})
    mask = jnp.ones((4, 2))
    # Row 3 is unscorable (its placeholder reward 0 must not count).
    rewards, valid = jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([1.0, 1.0, 1.0, 0.0])
    adv, _ = rl_loss.compute_advantages(
        estimator, rewards=rewards, mask=mask, group_size=4, valid=valid
    )
    # The scored rows alone: mean 1/3, sample std of (1, 0, 0) = 0.57735.
    scored, _ = rl_loss.compute_advantages(
        estimator, rewards=rewards[:3], mask=mask[:3], group_size=3
    )
    np.testing.assert_allclose(adv[:3], scored, rtol=1e-5)
    np.testing.assert_array_equal(adv[3], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"'reinforce_pp' cannot leave unscorable rows out"):
        rl_loss.compute_advantages(
            rl_loss.advantage_estimator("reinforce_pp", {}),
            rewards=rewards,
            mask=mask,
            group_size=4,
            valid=valid,
        )


def test_a_row_weight_rule_is_not_an_advantage_estimator(tmp_path):
    # zero_variance_policy returns row weights; as advantage.name it trained with A ≡ 1.
    assert "zero_variance_policy" in registry.CURATION.names()
    with pytest.raises(KeyError, match=r"zero_variance_policy.*grpo_group_norm"):
        rl_loss.advantage_estimator("zero_variance_policy", {})
    c = grpo_arithmetic.get_config("runlocal=True")
    c.advantage.name = "zero_variance_policy"
    with pytest.raises(KeyError, match="zero_variance_policy"):
        rl.RLTrainer(c, str(tmp_path))


def test_groups_of_one_row_report_no_zero_variance_and_cannot_mask_it(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.rollout.group_size = 1
    c.rollout.prompts_per_step = 8
    c.advantage = dict(name="reinforce_pp", kwargs={})
    c.curation.zero_variance = "mask"
    with pytest.raises(ValueError, match=r"zero_variance='mask'.*group_size=1"):
        rl.RLTrainer(c, str(tmp_path / "a"))
    c.curation.zero_variance = "keep"
    metrics = rl.RLTrainer(c, str(tmp_path / "b")).train_step()
    # Every one-row group has zero variance: the fraction (1.0) said nothing.
    assert not {"rollout/zero_std_row_frac", "rollout/zero_std_group_frac"} & set(metrics)
