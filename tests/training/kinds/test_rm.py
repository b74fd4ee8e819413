"""Bradley-Terry outcome reward models: learning, ties and margins, ensembles, export."""

import json
import os
import sys

import numpy as np

from configs import rm_arithmetic
from rewardjax.data import generators
from rewardjax.evaluation.scorers import evaluate_orm
from rewardjax.scoring.models import OutcomeRewardModel, RewardModelEnsemble
from rewardjax.training import offline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _offline_fixtures as fx


def test_orm_fits_preference_pairs_and_exports(tmp_path):
    # 64 generated pairs (reference ≻ one propagated error), seen repeatedly: the
    # Bradley-Terry model must rank every one of them. Held-out generalisation at
    # scale is measured by benchmarks/reward_models.py (see BENCHMARKS.md).
    c = rm_arithmetic.get_config("runlocal=True")
    c.task.kwargs = dict(fx.TASK)
    c.data.completion_length = fx.COMPLETION_LENGTH
    c.data.num_train = 64
    c.batch_size = 32
    c.steps = 150
    c.optim.total_steps = 150
    c.optim.warmup_steps = 10
    c.optim.learning_rate = 2e-3
    c.eval.every = 0
    trainer = offline.OfflineTrainer(c, str(tmp_path / "rm"))
    train_pairs = generators.preference_pairs(trainer.task, num=64, seed=c.seed)
    scorer = OutcomeRewardModel(
        trainer.model_config, trainer.state.params["policy"], trainer.tokenizer
    )
    start = evaluate_orm(scorer, pairs=train_pairs)["pairwise_accuracy"]
    last = trainer.run()
    scorer = OutcomeRewardModel(
        trainer.model_config, trainer.state.params["policy"], trainer.tokenizer
    )
    end = evaluate_orm(scorer, pairs=train_pairs)["pairwise_accuracy"]
    assert start < 0.8 and end >= 0.95, (start, end)
    assert last["train/accuracy"] >= 0.95 and last["train/loss"] < 0.3, last
    # The export is an outcome reward model that scores like the trained parameters.
    loaded = OutcomeRewardModel.load(str(tmp_path / "rm" / "hf"), tokenizer="char")
    prompts, texts = [p.prompt for p in train_pairs[:16]], [p.chosen for p in train_pairs[:16]]
    np.testing.assert_allclose(
        loaded.scores(prompts, texts), scorer.scores(prompts, texts), rtol=1e-4, atol=1e-5
    )


def _pairs_file(path):
    rows = [
        {"prompt": "Q: 1+2\n", "chosen": "1+2=3\nA: 3", "rejected": "1+2=4\nA: 4", "margin": 1.0},
        {"prompt": "Q: 2+2\n", "chosen": "2+2=4\nA: 4", "rejected": "2+2=4\nA:4", "tie": True},
        {"prompt": "Q: 3+1\n", "chosen": "3+1=4\nA: 4", "rejected": "3+1=5\nA: 5", "margin": 0.5},
        {"prompt": "Q: 1+1\n", "chosen": "1+1=2\nA: 2", "rejected": "1+1=2\nA:  2", "tie": True},
    ] * 4
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_tie_aware_and_margin_variants(tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    for arg, metric in (
        ("loss=bt_tie_aware", "train/tie_abs_gap"),
        ("margin_scale=1.0", "train/margin_mean"),
    ):
        c = rm_arithmetic.get_config(f"runlocal=True,{arg}")
        c.data.train_path = c.data.test_path = pairs
        c.steps = c.eval.every = 2
        c.export_hf = False
        last = offline.OfflineTrainer(c, str(tmp_path / arg)).run()
        assert np.isfinite(last[metric]) and np.isfinite(last["train/loss"])
        assert last["eval/num_pairs"] == 16.0


def test_ensemble_of_seeds(tmp_path):
    dirs = []
    for seed in (0, 1):
        c = rm_arithmetic.get_config("runlocal=True")
        c.seed = seed
        c.steps = 1
        c.eval.every = 0
        offline.OfflineTrainer(c, str(tmp_path / f"rm{seed}")).run()
        dirs.append(str(tmp_path / f"rm{seed}" / "hf"))
    members = [OutcomeRewardModel.load(d, tokenizer="char") for d in dirs]
    prompts, texts = ["Q: 1+2\n", "Q: 3+4\n"], ["1+2=3\nA: 3", "3+4=8\nA: 8"]
    a, b = (m.scores(prompts, texts) for m in members)
    assert not np.allclose(a, b), "different seeds should give different members"
    ensemble = RewardModelEnsemble(members, mode="mean_minus_std", std_coef=1.0)
    # Two members: mean − std = (a + b)/2 − |a − b|/2 = min(a, b).
    np.testing.assert_allclose(
        ensemble.scores(prompts, texts), np.minimum(a, b), rtol=1e-5, atol=1e-6
    )
    out = evaluate_orm(ensemble, pairs=[])
    assert out == {}
