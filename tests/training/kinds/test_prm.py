"""PRM training: learning against exact step labels, soft labels, micro-batches, export."""

import json
import os
import sys

import numpy as np

from configs import prm_arithmetic
from rewardjax import evaluation
from rewardjax.data.formats import read_jsonl
from rewardjax.data.steps import first_error_label
from rewardjax.scoring.models import ProcessRewardModel
from rewardjax.training import offline

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
    # ProcessBench's rule (first step below τ = 0.5). The τ tuned on the small
    # validation set moves with the machine's numerics at this budget (0.58 on a
    # 2-core AMD EPYC gave 0.26 where τ = 0.5 gave 0.52): it must still beat chance.
    assert end["processbench_f1"] >= chance + 0.15, (chance, end)
    assert end["tuned_processbench_f1"] > chance, (chance, end)
    # The export carries the PRM head and scores like the trainer's own model.
    scorer = ProcessRewardModel.load(str(tmp_path / "prm" / "hf"), tokenizer="char")
    s = trainer.objective.test_solutions[:8]
    loaded = scorer.step_scores([x.prompt for x in s], [x.steps for x in s])
    direct = ProcessRewardModel(
        trainer.model_config, trainer.state.params["policy"], trainer.tokenizer
    )
    for a, b in zip(loaded, direct.step_scores([x.prompt for x in s], [x.steps for x in s])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


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
