"""LaSeR in the RL loss: log π(t*) after the last completion token, fit to the verifier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import grpo_arithmetic
from rewardjax import models
from rewardjax.models import forward
from rewardjax.training import rl, rl_loss
from rewardjax.training.step import batch_totals

VOCAB = 61
CONFIG = models.preset("tiny", vocab_size=VOCAB, num_layers=2)
POLICY = models.build(CONFIG)
PARAMS = models.init_params(CONFIG, jax.random.key(0), ("lm",))
STAR = 7


def _batch(group=1):
    rng = np.random.default_rng(0)
    b, length, t = 4, 5, 6
    prompt = rng.integers(3, VOCAB, (b // group, length)).repeat(group, axis=0)
    lengths = np.array([6, 3, 1, 4])
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    tokens = np.where(mask > 0, rng.integers(3, VOCAB, (b, t)), 0).astype(np.int32)
    return dict(
        prompt_tokens=jnp.asarray(prompt, jnp.int32),
        prompt_mask=jnp.ones((b, length), jnp.int32),
        tokens=jnp.asarray(tokens),
        mask=jnp.asarray(mask),
    ), lengths


def _next_logprob_by_hand(batch, lengths):
    """log_softmax of the full-sequence logits after each row's last token (float64)."""
    out = []
    for i, n in enumerate(lengths):
        ids = np.concatenate(
            [np.asarray(batch["prompt_tokens"][i]), np.asarray(batch["tokens"][i, :n])]
        )
        logits = np.asarray(POLICY.apply({"params": PARAMS}, ids[None]), np.float64)[0, -1]
        out.append(logits[STAR] - logits.max() - np.log(np.exp(logits - logits.max()).sum()))
    return np.array(out)


@pytest.mark.parametrize("group", [1, 2])
def test_next_logprob_after_the_last_token(group):
    batch, lengths = _batch(group)
    args = (batch["prompt_tokens"], batch["prompt_mask"], batch["tokens"], batch["mask"])
    logp, entropy, nxt = forward.completion_logprobs_and_next(
        POLICY, PARAMS, *args, next_token=STAR, impl="reference", group_size=group
    )
    ref_logp, ref_entropy = forward.completion_logprobs(
        POLICY, PARAMS, *args, impl="reference", group_size=group
    )
    m = np.asarray(batch["mask"]) > 0
    np.testing.assert_allclose(np.asarray(logp)[m], np.asarray(ref_logp)[m], atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy)[m], np.asarray(ref_entropy)[m], atol=1e-5)
    np.testing.assert_allclose(nxt, _next_logprob_by_hand(batch, lengths), atol=1e-4)


@pytest.mark.slow
def test_the_laser_term_adds_alpha_times_the_squared_error():
    batch, lengths = _batch()
    b, t = batch["tokens"].shape
    mb = dict(
        batch,
        rollout_logprobs=jnp.zeros((b, t)),
        advantages=jnp.zeros((b, t)),  # the policy term is 0: only LaSeR's remains
        verifier_rewards=jnp.array([1.0, 0.0, 1.0, 0.0]),
    )
    kw = dict(
        loss_name="ppo_clip",
        loss_kwargs={},
        aggregation="token_mean",
        temperature=1.0,
        kl_placement="none",
        kl_estimator="kl_k3",
        entropy_coef=0.0,
        value_coef=0.0,
        value_clip=None,
        logprob_impl="reference",
    )
    c_ref = -4.0
    totals = dict(batch_totals(mb), laser_ref_constant=jnp.float32(c_ref))
    plain, _ = rl_loss.make_rl_loss(POLICY, None, **kw)({"policy": PARAMS}, mb, None, totals)
    laser = dict(token=STAR, kl_coef=0.1, coef=0.5)
    loss_fn = rl_loss.make_rl_loss(POLICY, None, laser=laser, **kw)
    loss, metrics = loss_fn({"policy": PARAMS}, mb, None, totals)
    score = 0.1 * (_next_logprob_by_hand(batch, lengths) - c_ref)
    expected = 0.5 * np.mean((score - np.array([1.0, 0.0, 1.0, 0.0])) ** 2)
    np.testing.assert_allclose(float(loss) - float(plain), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(metrics["laser/self_reward_mean"], score.mean(), rtol=1e-4)
    # The term has a gradient (the self-reward is trained).
    grads = jax.grad(lambda p: loss_fn({"policy": p}, mb, None, totals)[0])(PARAMS)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_laser_runs_in_the_rl_loop_with_a_constant_c(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.laser.enabled = True
    c.steps = 2
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    assert trainer.laser_token == trainer.tokenizer.bos_id
    trainer.run()
    import json

    rows = [json.loads(line) for line in open(tmp_path / "rl" / "metrics.jsonl")]
    constants = [r["laser/ref_constant"] for r in rows]
    assert len(constants) == 2 and constants[0] == constants[1] < 0
    assert all(np.isfinite(r["train/laser/self_reward_mse"]) for r in rows)


def test_a_laser_token_of_several_ids_is_an_error(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.laser.enabled = True
    c.laser.token = "ab"
    with pytest.raises(ValueError, match="encodes to 2 tokens"):
        rl.RLTrainer(c, str(tmp_path / "rl"))
