"""Implicit-PRM training: an outcome-trained LM read as a PRM beats random first-error F1."""

import os
import sys

import numpy as np

from configs import prm_arithmetic
from rewardjax import evaluation
from rewardjax.data.steps import first_error_label
from rewardjax.training import offline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _offline_fixtures as fx


def _random_f1(solutions, seed=0, reps=20):
    """ProcessBench F1 of uniform random step scores, averaged over draws."""
    rng = np.random.default_rng(seed)
    labels = np.array([first_error_label(s) for s in solutions])
    draws = [[rng.random(len(s.steps)) for s in solutions] for _ in range(reps)]
    return float(np.mean([evaluation.processbench_f1(d, labels)["f1"] for d in draws]))


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
