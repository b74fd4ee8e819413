"""DPO-family training in the offline loop: every loss, the reference, and learning."""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dpo_arithmetic
from rewardjax import models
from rewardjax.data import generators
from rewardjax.objectives import preference  # noqa: F401  (registers the losses)
from rewardjax.registry import PREFERENCE_LOSSES, TASKS
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import offline
from rewardjax.training.kinds.data import encode_pairs
from rewardjax.training.kinds.dpo import make_preference_loss, sequence_logprob_sums

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _offline_fixtures as fx

TOK = CharTokenizer()

# Loss value at π_θ = π_ref (every margin 0), from each formula with the config's
# hyperparameters: −log σ(0) = log 2 for the logistic family and ADPO's KL to
# softmax(0, 0); (0 − 1/(2β))² = 25 for IPO with β = 0.1; relu(1 − 0) = 1 for hinge.
AT_REFERENCE = {
    "dpo_sigmoid": math.log(2.0),
    "dpo_cdpo": math.log(2.0),
    "dpo_robust": math.log(2.0),
    "dpo_hinge": 1.0,
    "ipo_identity": 25.0,
    "adpo_anchored": math.log(2.0),
}


def test_every_registered_preference_loss_is_covered():
    assert set(PREFERENCE_LOSSES.names()) - {"pair_weights"} == set(AT_REFERENCE)


@pytest.fixture(scope="module")
def pair_batch():
    """A 1-layer policy, 4 generated pairs, and reference sums from the same policy."""
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id
    )
    params = models.init_params(config, jax.random.key(0))
    model = models.build(config)
    task = TASKS.get("arithmetic_chain")(num_steps=2, max_operand=5)
    pairs = generators.preference_pairs(task, num=4)
    batch = encode_pairs(TOK, pairs, prompt_length=16, completion_length=24, source="test")
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    for side in ("chosen", "rejected"):
        batch[f"ref_{side}"] = sequence_logprob_sums(
            model,
            params,
            batch["prompt_tokens"],
            batch["prompt_mask"],
            batch[f"{side}_tokens"],
            batch[f"{side}_mask"],
        )
    return model, params, batch


@pytest.mark.parametrize("loss_name", sorted(AT_REFERENCE))
def test_each_loss_at_the_reference_and_its_gradient(loss_name, pair_batch):
    model, params, batch = pair_batch
    kwargs = dpo_arithmetic.get_config(f"loss={loss_name}").objective.kwargs.to_dict()
    loss_fn = make_preference_loss(
        model, loss_name=loss_name, loss_kwargs=kwargs, logprob_impl="auto"
    )
    totals = {"num_rows": jnp.float32(4)}
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, metrics), grads = grad_fn({"policy": params}, batch, None, totals)
    np.testing.assert_allclose(loss, AT_REFERENCE[loss_name], rtol=1e-4)
    # At margin 0 every loss still pushes the margin up (logistic: −β/2 per pair), so
    # the policy gradient is non-zero.
    norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
    assert np.isfinite(norm) and norm > 0
    metrics = {k: float(v) for k, v in metrics.items()}
    if loss_name == "adpo_anchored":
        # KL(q = (1, 0) ‖ softmax(0, 0) = (½, ½)) = log 2 at the anchor.
        np.testing.assert_allclose(metrics["kl"], math.log(2.0), rtol=1e-5)
    else:
        # Implicit rewards β·(log π − log π_ref) are 0 on both sides; 0 > 0 is false.
        for key in ("rewards_chosen", "rewards_rejected", "reward_margin"):
            assert abs(metrics[key]) < 1e-6, (key, metrics[key])
        assert metrics["reward_accuracy"] == 0.0
    # The policy's sequence log-probs are the reference sums, computed separately.
    for side in ("chosen", "rejected"):
        expected = float(jnp.mean(batch[f"ref_{side}"]))
        np.testing.assert_allclose(metrics[f"logp_{side}"], expected, rtol=1e-5)
    # Mean token entropy of a near-uniform untrained model: below log V, not far below.
    log_v = math.log(params["embed"]["embedding"].shape[0])
    assert log_v - 0.5 < metrics["entropy"] <= log_v


def test_reference_precomputed_equals_on_the_fly(tmp_path):
    runs = {}
    for precompute in (True, False):
        c = dpo_arithmetic.get_config(f"runlocal=True,precompute={precompute}")
        c.steps = 2
        c.export_hf = False
        c.eval.every = 0
        trainer = offline.OfflineTrainer(c, str(tmp_path / str(precompute)))
        runs[precompute] = [trainer.train_step()["train/loss"] for _ in range(2)]
        runs[f"params_{precompute}"] = jax.tree.map(np.asarray, trainer.state.params)
    # The policy starts at the reference: the first loss is log 2, then both runs agree.
    np.testing.assert_allclose(float(runs[True][0]), math.log(2.0), rtol=1e-5)
    np.testing.assert_allclose(np.array(runs[True], float), np.array(runs[False], float), rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        runs["params_True"],
        runs["params_False"],
    )


def test_dpo_raises_held_out_pass_at_1_over_its_sft_start(tmp_path_factory, worker_id, tmp_path):
    sft_hf = fx.shared_sft(tmp_path_factory, worker_id)
    c = fx.offline_config(dpo_arithmetic, f"model_path={sft_hf}")
    c.steps = 100
    c.optim.total_steps = 100
    c.optim.warmup_steps = 10
    c.optim.learning_rate = 1e-5
    c.eval.every = 0
    c.eval.num_samples = 16
    c.export_hf = False
    trainer = offline.OfflineTrainer(c, str(tmp_path / "dpo"))
    # The same sampling key before and after (common random numbers): the
    # difference measures the policy change, not the sampling noise.
    key = jax.random.key(123)
    before = trainer.objective.evaluate(trainer.state.params, key)
    trainer.run()
    after = trainer.objective.evaluate(trainer.state.params, key)
    # 100 held-out problems × 16 samples each; see BENCHMARKS.md for the full-scale gain.
    assert after["pass@1"] >= before["pass@1"] + 0.02, (before["pass@1"], after["pass@1"])
    # The implicit reward β·log π/π_ref ranks held-out pairs; at the start it is 0 for
    # every pair, so the strict accuracy is 0.
    assert before["pairs/reward_accuracy"] == 0.0
    assert after["pairs/reward_accuracy"] >= 0.7, after["pairs/reward_accuracy"]


def test_pair_weights_average_the_pair_losses_by_weight(pair_batch):
    """L = Σ w_i·ℓ_i / Σ w_i, over the whole batch (w_i = 0 drops pair i)."""
    from rewardjax.training.step import batch_totals

    model, params, batch = pair_batch
    # Reference sums moved per pair, so that the pairs' losses differ.
    batch = dict(batch, ref_chosen=batch["ref_chosen"] + jnp.array([0.0, 1.0, -2.0, 0.5]))
    loss_fn = make_preference_loss(
        model, loss_name="dpo_sigmoid", loss_kwargs={"beta": 0.5}, logprob_impl="auto"
    )

    def loss(mb):
        return float(loss_fn({"policy": params}, mb, None, batch_totals(mb))[0])

    per_pair = [loss({k: v[i : i + 1] for k, v in batch.items()}) for i in range(4)]
    assert np.ptp(per_pair) > 0.1
    w = jnp.array([2.0, 0.0, 1.0, 0.5])
    expected = float(np.dot(w, per_pair) / w.sum())
    np.testing.assert_allclose(loss(dict(batch, weight=w)), expected, rtol=1e-5)
    np.testing.assert_allclose(loss(batch), np.mean(per_pair), rtol=1e-5)


def test_pair_weights_from_a_jsonl_field_train_and_bad_weights_fail(tmp_path):
    from rewardjax.data.formats import write_jsonl

    task = TASKS.get("arithmetic_chain")(num_steps=3, max_operand=9)
    pairs = generators.preference_pairs(task, num=64)
    for i, p in enumerate(pairs):
        p.fields["quality"] = float(i % 3)  # a third of the pairs get weight 0
    path = str(tmp_path / "pairs.jsonl")
    write_jsonl(path, pairs)

    def config(rule):
        c = dpo_arithmetic.get_config("runlocal=True")
        c.data.train_path = path
        c.objective.pair_weights = rule
        c.steps = 2
        c.export_hf = False
        c.eval.every = 0
        return c

    trainer = offline.OfflineTrainer(config("field:quality"), str(tmp_path / "ok"))
    weights = trainer.objective.data.arrays["weight"]
    np.testing.assert_array_equal(weights[:6], [0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    assert np.isfinite(float(trainer.train_step()["train/loss"]))
    with pytest.raises(ValueError, match=r"record 0 needs a finite weight >= 0 in its field 'q'"):
        offline.OfflineTrainer(config("field:q"), str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"objective.pair_weights='reward'; known"):
        offline.OfflineTrainer(config("reward"), str(tmp_path / "rule"))
