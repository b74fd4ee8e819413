"""PRIME online: the implicit PRM ψ learns at every RL step, rewards the batch, and survives a resume."""

import functools
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import grpo_arithmetic, rl_variants
from rewardjax.objectives.credit import prime_combined_rloo
from rewardjax.training import rl
from rewardjax.training.checkpoint import ResumeError
from rewardjax.training.config_checks import ConfigError
from rewardjax.training.prime import check_prime_config

BETA = 0.05


def _config(steps=2, **prime):
    c = rl_variants.get_config("runlocal=True,algo=prime")
    c.steps = steps
    c.export_hf = False
    c.log.samples_every = 0
    c.checkpoint.every = 0
    c.checkpoint.async_save = False
    c.prime.beta = BETA
    for key, value in prime.items():
        c.prime[key] = value
    return c


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _force_labels(trainer, labels_fn):
    """The rollouts' `correct` replaced (a random policy solves nothing: every label would be 0)."""
    collect = trainer.collect

    def relabelled():
        batch, problems, metrics = collect()
        batch["correct"] = labels_fn(batch["correct"].shape[0]).astype(np.float32)
        return batch, problems, metrics

    trainer.collect = relabelled


def _capture_prepared_batches(trainer):
    seen = []
    prepare = trainer.prepare

    def capturing(batch):
        seen.append({k: np.asarray(v) for k, v in batch.items()})
        return prepare(batch)

    trainer.prepare = capturing
    return seen


@pytest.mark.slow
def test_psi_learns_from_the_labels_every_step_and_rewards_the_batch_after_its_update(tmp_path):
    trainer = rl.RLTrainer(_config(update_order="before"), str(tmp_path))
    # Every row labelled correct: ψ's update must raise Σ_t log π_ψ/π_ref on it.
    _force_labels(trainer, np.ones)
    seen = _capture_prepared_batches(trainer)
    policy0 = _host(trainer.state.params["policy"])
    ref0 = _host(trainer.ref_params)
    psi0 = _host(trainer.aux_states["prime"].params["policy"])
    assert _leaves_equal(psi0, policy0)  # ψ starts as the initial policy

    m1 = trainer.train_step()
    psi1 = _host(trainer.aux_states["prime"].params["policy"])
    m2 = trainer.train_step()
    psi2 = _host(trainer.aux_states["prime"].params["policy"])
    policy2 = _host(trainer.state.params["policy"])

    assert not _leaves_equal(psi1, psi0) and not _leaves_equal(psi2, psi1), "ψ did not move"
    assert not _leaves_equal(policy2, policy0), "the policy did not move"
    assert not _leaves_equal(psi2, policy2)  # ψ is its own model, not the policy
    assert _leaves_equal(_host(trainer.ref_params), ref0)  # π_ref stays frozen
    assert int(trainer.aux_states["prime"].step) == 2  # prime.updates = 1 per RL step
    # Labels 1 on every row: after its update ψ rewards this batch above π_ref.
    assert float(m1["prime/reward_mean"]) > 0 and float(m2["prime/reward_mean"]) > 0
    assert 0 < float(m1["prime/param_distance"]) < float(m2["prime/param_distance"])
    # The first update sees ψ = π_ref: score 0, loss log 2.
    np.testing.assert_allclose(float(m1["prime/loss"]), np.log(2.0), rtol=1e-5)
    assert float(m2["prime/loss"]) < np.log(2.0)
    for m in (m1, m2):
        assert {"prime/loss", "prime/accuracy", "prime/reward_mean"} <= set(m)
        assert float(m["advantage/abs_max"]) > 0  # the process rewards reach the advantages
    # update_order="before": step 2's token rewards come from ψ after its update (ψ2).
    _check_token_rewards(trainer, seen[-1], used=psi2, other=psi1)


def _check_token_rewards(trainer, batch, *, used, other):
    """The batch's token rewards are β·log π_ψ/π_ref of `used` ψ, and not of `other`."""
    expected = _independent_token_rewards(trainer, used, batch)
    assert np.abs(expected).max() > 1e-4  # ψ has moved away from π_ref
    assert np.abs(_independent_token_rewards(trainer, other, batch) - expected).max() > 1e-5
    got = batch["token_rewards"]
    assert got.shape == batch["tokens"].shape
    assert np.all(got[batch["mask"] == 0] == 0)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-3)


def _independent_token_rewards(trainer, psi, batch):
    """β·(log π_ψ − log π_ref) of each completion token, from full-sequence logits."""
    model = trainer.policy
    tokens = np.concatenate([batch["prompt_tokens"], batch["tokens"]], axis=1)
    attention = np.concatenate([batch["prompt_mask"], batch["mask"] > 0], axis=1).astype(np.int32)
    prompt_len, t = batch["prompt_tokens"].shape[1], batch["tokens"].shape[1]

    def logprobs(params):
        logits = model.apply({"params": params}, jnp.asarray(tokens), jnp.asarray(attention))
        logits = np.asarray(logits, np.float64)[:, prompt_len - 1 : prompt_len - 1 + t]
        logits -= logits.max(-1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(-1))
        picked = np.take_along_axis(logits, batch["tokens"][..., None], -1)[..., 0]
        return picked - log_z

    return BETA * (logprobs(psi) - logprobs(_host(trainer.ref_params))) * (batch["mask"] > 0)


@pytest.mark.slow
def test_resume_restores_psi_exactly_and_rewards_come_before_its_update(tmp_path):
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    c = _config(steps=2, update_order="after")
    c.checkpoint.every = 1
    trainer = rl.RLTrainer(c, str(first))
    seen = _capture_prepared_batches(trainer)
    trainer.train_step()
    psi1 = _host(trainer.aux_states["prime"].params["policy"])
    trainer.run()  # the second step, and the checkpoints
    saved = _host(trainer.aux_states["prime"])
    # update_order="after": step 2's token rewards come from ψ before its update (ψ1).
    _check_token_rewards(trainer, seen[-1], used=psi1, other=_host(saved.params["policy"]))
    shutil.copytree(first, resumed)

    c3 = _config(steps=3, update_order="after")
    c3.checkpoint.every = 1
    again = rl.RLTrainer(c3, str(resumed))
    assert again.step == 2
    restored = _host(again.aux_states["prime"])
    # Without the checkpoint, ψ would be the initial policy and Adam's moments zero.
    assert not _leaves_equal(saved.params, _host(again.ref_params))
    assert any(np.abs(x).max() > 0 for x in jax.tree.leaves(saved.opt_state))
    assert jax.tree.structure(restored) == jax.tree.structure(saved)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)

    # The resumed run continues exactly as the one that never stopped.
    trainer.train_step()
    again.train_step()
    for a, b in zip(
        jax.tree.leaves(_host(trainer.aux_states["prime"])),
        jax.tree.leaves(_host(again.aux_states["prime"])),
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(_host(trainer.state.params)), jax.tree.leaves(_host(again.state.params))
    ):
        np.testing.assert_array_equal(a, b)


def test_psi_is_exported_beside_the_policy_and_loads_as_an_implicit_prm(tmp_path):
    from rewardjax import models
    from rewardjax.scoring.models import ImplicitProcessRewardModel

    c = _config(steps=1)
    c.export_hf = True
    trainer = rl.RLTrainer(c, str(tmp_path))
    trainer.run()
    psi = _host(trainer.aux_states["prime"].params["policy"])
    _, exported = models.load_hf(str(tmp_path / "prime_hf"))
    _, policy = models.load_hf(str(tmp_path / "hf"))
    for a, b in zip(jax.tree.leaves(psi), jax.tree.leaves(exported)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not _leaves_equal(exported, policy)  # ψ, not the policy again
    prm = ImplicitProcessRewardModel.load(
        str(tmp_path / "prime_hf"), reference=str(tmp_path / "hf"), tokenizer="char", beta=BETA
    )
    (scores,) = prm.step_scores(["Q: 1+2\n"], [["1+2=3", "A: 3"]])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


def test_a_prime_run_cannot_resume_a_checkpoint_without_psi(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 1
    c.export_hf = False
    c.checkpoint.async_save = False
    plain = rl.RLTrainer(c, str(tmp_path))
    assert "aux_states" not in plain.signature()  # runs without ψ save what they always did
    plain.run()
    with pytest.raises(ResumeError, match=r"model.aux_states was None in the checkpoint"):
        rl.RLTrainer(_config(), str(tmp_path))


def test_prime_with_an_outcome_only_estimator_is_an_error(tmp_path):
    c = _config()
    c.advantage = dict(name="grpo_group_norm", kwargs=dict(eps=1e-6))
    with pytest.raises(
        ValueError, match=r"advantage.name='grpo_group_norm' reads only the outcome"
    ):
        rl.RLTrainer(c, str(tmp_path))


def test_prime_with_a_token_level_reward_source_is_an_error():
    prime = ml_collections.ConfigDict(_config().prime.to_dict())
    estimator = functools.partial(prime_combined_rloo, group_size=4)
    with pytest.raises(ValueError, match=r"rewards.sources \['prm'\] give token-level rewards"):
        check_prime_config(
            prime,
            advantage_name="prime_combined_rloo",
            estimator=estimator,
            token_level_sources=["prm"],
        )
    prime.enabled = False  # off: the block is not in the way
    check_prime_config(
        prime,
        advantage_name="prime_combined_rloo",
        estimator=estimator,
        token_level_sources=["prm"],
    )


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("beta", 0.0, "config prime.beta=0.0 is out of range: it must be a number in (0.0, ∞)"),
        ("updates", 0, "config prime.updates=0 is out of range: it must be an integer ≥ 1"),
        ("learning_rate", -1e-6, "config prime.learning_rate=-1e-06 is out of range"),
    ],
)
def test_prime_values_out_of_range_fail_at_start(key, value, message, tmp_path):
    c = _config(**{key: value})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rl.RLTrainer(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_unknown_update_order_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"prime.update_order='during'; known: before, after"):
        rl.RLTrainer(_config(update_order="during"), str(tmp_path))
