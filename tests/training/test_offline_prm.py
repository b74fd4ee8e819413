"""PRM and implicit-PRM training: learning against exact step labels, soft labels, RL use."""

import json
import os
import sys

import jax
import numpy as np

from configs import grpo_arithmetic_prm, prm_arithmetic
from rewardjax import evaluation
from rewardjax.data.formats import read_jsonl
from rewardjax.training import model_rewards as mr
from rewardjax.training import offline, rl
from rewardjax.training.offline_data import first_error_label

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _offline_fixtures as fx


def _random_f1(solutions, seed=0, reps=20):
    """ProcessBench F1 of uniform random step scores, averaged over draws."""
    rng = np.random.default_rng(seed)
    labels = np.array([first_error_label(s) for s in solutions])
    draws = [[rng.random(len(s.steps)) for s in solutions] for _ in range(reps)]
    return float(np.mean([evaluation.processbench_f1(d, labels)["f1"] for d in draws]))


def test_prm_learns_first_error_identification(tmp_path_factory, worker_id, tmp_path):
    sft_hf = fx.shared_sft(tmp_path_factory, worker_id)
    c = fx.offline_config(prm_arithmetic, f"model_path={sft_hf}")
    c.steps = 200
    c.optim.total_steps = 200
    c.optim.warmup_steps = 10
    c.optim.learning_rate = 5e-4
    c.eval.every = 0
    trainer = offline.OfflineTrainer(c, str(tmp_path / "prm"))
    start = trainer.evaluate()
    trainer.run()
    end = trainer.evaluate()
    chance = _random_f1(trainer.objective.test_solutions)
    # Held-out solutions of problems never trained on, exact labels from the step checker.
    # Full scale (benchmarks/reward_models.py): F1 ≥ 0.8; here 200 steps on a small SFT.
    assert end["step_auroc"] >= 0.72 and end["step_auroc"] > start["step_auroc"] + 0.05, (
        start,
        end,
    )
    assert end["tuned_processbench_f1"] >= chance + 0.15, (chance, end)
    # The export carries the PRM head and scores like the trainer's own model.
    scorer = mr.ProcessRewardModel.load(str(tmp_path / "prm" / "hf"), tokenizer="char")
    s = trainer.objective.test_solutions[:8]
    loaded = scorer.step_scores([x.prompt for x in s], [x.steps for x in s])
    direct = mr.ProcessRewardModel(
        trainer.model_config, trainer.state.params["policy"], trainer.tokenizer
    )
    for a, b in zip(loaded, direct.step_scores([x.prompt for x in s], [x.steps for x in s])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_implicit_prm_beats_random_first_error_f1(tmp_path_factory, worker_id, tmp_path):
    sft_hf = fx.shared_sft(tmp_path_factory, worker_id)
    c = fx.offline_config(prm_arithmetic, f"kind=implicit_prm,model_path={sft_hf}")
    c.steps = 120
    c.optim.total_steps = 120
    c.optim.warmup_steps = 10
    c.optim.learning_rate = 3e-4
    c.eval.every = 0
    c.export_hf = False
    trainer = offline.OfflineTrainer(c, str(tmp_path / "iprm"))
    start = trainer.evaluate()
    trainer.run()
    end = trainer.evaluate()
    chance = _random_f1(trainer.objective.test_solutions)
    # ψ = π_ref at the start: every step score is σ(0) = ½, never below τ, so every
    # solution is predicted correct and F1 = 0.
    assert start["processbench_f1"] == 0.0 and start["acc_correct"] == 1.0
    assert end["tuned_processbench_f1"] >= chance + 0.2, (chance, end)
    assert end["step_auroc"] >= 0.75, end


def test_soft_labels_and_microbatches(tmp_path):
    # Soft (Monte-Carlo style) labels, last-step-only training: the loss of one batch
    # equals the sum of its two micro-batch losses (the counts are global).
    rows = [
        {"prompt": "Q: 1+2+4\n", "steps": ["1+2=3", "3+4=7", "A: 7"], "labels": [1.0, 0.75, 0.5]},
        {
            "prompt": "Q: 2+2+1\n",
            "steps": ["2+2=5", "A: 5"],
            "labels": [0.25, 0.0],
            "first_error": 0,
        },
    ] * 8
    path = tmp_path / "soft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert not read_jsonl(path, "step_labels")[0].hard
    losses = []
    for microbatches in (1, 2):
        c = prm_arithmetic.get_config("runlocal=True,last_step_only=True")
        c.data.train_path = c.data.test_path = str(path)
        c.microbatches = microbatches
        c.steps = 1
        c.export_hf = False
        c.eval.every = 1
        trainer = offline.OfflineTrainer(c, str(tmp_path / f"run{microbatches}"))
        last = trainer.run()
        losses.append(last["train/loss"])
        assert np.isfinite(last["eval/step_auroc"]) and np.isfinite(last["eval/step_brier"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_rl_with_prm_process_rewards_runs(tmp_path):
    # A PRM (runlocal: a few steps from scratch), then GRPO sampling with min-form
    # process rewards at the step ends plus the verifiable outcome.
    prm = prm_arithmetic.get_config("runlocal=True")
    prm.eval.every = 0
    offline.OfflineTrainer(prm, str(tmp_path / "prm")).run()
    c = grpo_arithmetic_prm.get_config(f"runlocal=True,prm_path={tmp_path / 'prm' / 'hf'}")
    c.steps = 2
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "rl"))
    batch, metrics = trainer.collect()
    assert batch["token_rewards"].shape == batch["tokens"].shape
    # Process rewards sit only on completion tokens, and min-form step rewards sum
    # (per row) to the first step's return min_s p_s ∈ [0, 1], weighted by 0.5.
    assert np.all(batch["token_rewards"][batch["mask"] == 0] == 0)
    totals = batch["token_rewards"].sum(axis=1)
    assert np.all(totals >= -1e-6) and np.all(totals <= 0.5 + 1e-6)
    assert "reward/prm_reward/step_reward_mean" in metrics
    before = jax.tree.map(np.asarray, trainer.state.params)
    trainer.run()
    after = jax.tree.map(np.asarray, trainer.state.params)
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)))
