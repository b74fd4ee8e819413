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


@pytest.mark.slow
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


# ---------------------------------------------------------------- ranked lists (adpo_anchored)


def test_list_targets_by_hand():
    from rewardjax.data.formats import RankedList
    from rewardjax.training.kinds.data import list_targets

    # Five responses, K = 3: the best three by score (b, a, d), best first.
    lst = RankedList(
        prompt="Q", responses=["a", "b", "c", "d", "e"], scores=[0.5, 1.0, 0.0, 0.25, -1.0]
    )

    def q(target, temperature=1.0):
        kept, out = list_targets(
            [lst], list_size=3, target=target, temperature=temperature, where=["x"]
        )
        assert kept == [["b", "a", "d"]]
        return out[0]

    np.testing.assert_allclose(q("top1"), [1.0, 0.0, 0.0])
    # 1/rank normalised: (1, 1/2, 1/3) / (11/6).
    np.testing.assert_allclose(q("ranking"), [6 / 11, 3 / 11, 2 / 11], rtol=1e-6)
    # softmax((1.0, 0.5, 0.25) / 0.5) = softmax(2, 1, 0.5).
    z = np.exp([2.0, 1.0, 0.5])
    np.testing.assert_allclose(q("softmax_scores", 0.5), z / z.sum(), rtol=1e-6)
    # A ranking without scores: softmax_scores has nothing to read.
    ranked = RankedList(prompt="Q", responses=["a", "b", "c"], ranking=[2, 0, 1])
    with pytest.raises(ValueError, match=r"lists.jsonl:7: .*needs 'scores'"):
        list_targets([ranked], list_size=3, target="softmax_scores", where=["lists.jsonl:7"])
    kept, _ = list_targets([ranked], list_size=2, target="top1", where=["x"])
    assert kept == [["c", "a"]]


def _list_config(target: str, **data):
    c = dpo_arithmetic.get_config(f"runlocal=True,loss=adpo_anchored,format=lists,target={target}")
    c.export_hf = False
    c.eval.every = 0
    for k, v in data.items():
        c.data[k] = v
    return c


@pytest.mark.parametrize("target", ["top1", "softmax_scores", "ranking"])
def test_adpo_on_lists_starts_at_kl_to_uniform_and_learns(target, tmp_path):
    from rewardjax.training.step import batch_totals

    # Eight lists, one batch: a few steps from a random start fit them (the
    # reference is that start, τ = 1/β = 10).
    c = _list_config(target, num_train=8)
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 0
    c.optim.schedule = "constant"
    trainer = offline.OfflineTrainer(c, str(tmp_path / target))
    k = c.data.list_size
    batch, _ = trainer.objective.next_batch()
    assert batch["list_tokens"].shape[:2] == (c.batch_size, k)  # [B, K, T]
    loss_fn = jax.jit(trainer.objective.loss)

    def loss():
        return float(loss_fn(trainer.state.params, batch, None, batch_totals(batch))[0])

    # π_θ = π_ref: softmax(0, …, 0) is uniform, so the loss is the batch mean of
    # KL(q ‖ 1/K) = Σ_k q_k·log(K·q_k).
    q = batch["target"].astype(np.float64)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
    kl = np.where(q > 0, q * np.log(np.where(q > 0, q * k, 1.0)), 0.0).sum(-1)
    start = loss()
    np.testing.assert_allclose(start, kl.mean(), rtol=1e-4)
    if target == "top1":
        np.testing.assert_allclose(start, math.log(k), rtol=1e-5)
    else:  # soft targets: strictly between 0 and log K
        assert 0.0 < start < math.log(k) - 0.1
    for _ in range(5):
        trainer.train_step()
    assert loss() < 0.9 * start, (start, loss())


def test_lists_need_adpo_anchored_and_enough_responses(tmp_path):
    from rewardjax.data.formats import write_jsonl

    c = dpo_arithmetic.get_config("runlocal=True,format=lists")
    with pytest.raises(ValueError, match=r"data.format='lists' with objective.loss='dpo_sigmoid'"):
        offline.OfflineTrainer(c, str(tmp_path / "loss"))
    # The second list of the file has 3 responses: short of list_size = 4.
    task = TASKS.get("arithmetic_chain")(num_steps=3, max_operand=9)
    lists = generators.ranked_lists(task, num=2, num_responses=4)
    short = generators.ranked_lists(task, start=2, num=1, num_responses=3)
    path = tmp_path / "lists.jsonl"
    write_jsonl(str(path), lists[:1] + short + lists[1:])
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # a blank line 2
    c = _list_config("top1", train_path=str(path))
    with pytest.raises(
        ValueError, match=r"lists.jsonl:3: 3 responses, fewer than data.list_size=4"
    ):
        offline.OfflineTrainer(c, str(tmp_path / "short"))
    c = dpo_arithmetic.get_config("runlocal=True,loss=adpo_anchored,target=ranking")
    with pytest.raises(ValueError, match=r"objective.target='ranking' needs data.format='lists'"):
        offline.OfflineTrainer(c, str(tmp_path / "pairs"))
