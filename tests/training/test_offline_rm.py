"""Bradley-Terry outcome reward models: learning, ties and margins, ensembles, export."""

import json
import os
import sys

import numpy as np

from configs import rm_arithmetic
from rewardjax.training import model_rewards as mr
from rewardjax.training import offline
from rewardjax.training.reward_models import evaluate_orm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _offline_fixtures as fx


def test_orm_learns_pairwise_preferences(tmp_path_factory, worker_id, tmp_path):
    sft_hf = fx.shared_sft(tmp_path_factory, worker_id)
    c = fx.offline_config(rm_arithmetic, f"model_path={sft_hf}")
    c.steps = 200
    c.optim.total_steps = 200
    c.optim.warmup_steps = 10
    c.optim.learning_rate = 5e-4
    c.eval.every = 0
    trainer = offline.OfflineTrainer(c, str(tmp_path / "rm"))
    start = trainer.evaluate()
    trainer.run()
    end = trainer.evaluate()
    # 200 held-out pairs (reference ≻ one propagated error) of problems never trained on;
    # random scores give 0.5, a random best-of-4 pick 0.25. Full scale: BENCHMARKS.md.
    assert (
        end["pairwise_accuracy"] >= ORM_BAR
        and end["pairwise_accuracy"] > start["pairwise_accuracy"] + 0.1
    ), (start, end)
    assert end["best_of_4_accuracy"] > 0.3, end
    # The export is an outcome reward model that scores like the trained parameters.
    loaded = mr.OutcomeRewardModel.load(str(tmp_path / "rm" / "hf"), tokenizer="char")
    direct = mr.OutcomeRewardModel(
        trainer.model_config, trainer.state.params["policy"], trainer.tokenizer
    )
    pairs = trainer.objective.test_pairs[:16]
    prompts, texts = [p.prompt for p in pairs], [p.chosen for p in pairs]
    np.testing.assert_allclose(
        loaded.scores(prompts, texts), direct.scores(prompts, texts), rtol=1e-4, atol=1e-5
    )


ORM_BAR = 0.6


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
        c.export_hf = False
        last = offline.OfflineTrainer(c, str(tmp_path / arg)).run()
        assert np.isfinite(last[metric]) and np.isfinite(last["train/loss"])
        assert last["eval/num_pairs"] == 16.0


def test_ensemble_of_seeds(tmp_path):
    dirs = []
    for seed in (0, 1):
        c = rm_arithmetic.get_config("runlocal=True")
        c.seed = seed
        c.eval.every = 0
        offline.OfflineTrainer(c, str(tmp_path / f"rm{seed}")).run()
        dirs.append(str(tmp_path / f"rm{seed}" / "hf"))
    members = [mr.OutcomeRewardModel.load(d, tokenizer="char") for d in dirs]
    prompts, texts = ["Q: 1+2\n", "Q: 3+4\n"], ["1+2=3\nA: 3", "3+4=8\nA: 8"]
    a, b = (m.scores(prompts, texts) for m in members)
    assert not np.allclose(a, b), "different seeds should give different members"
    ensemble = mr.RewardModelEnsemble(members, mode="mean_minus_std", std_coef=1.0)
    # Two members: mean − std = (a + b)/2 − |a − b|/2 = min(a, b).
    np.testing.assert_allclose(
        ensemble.scores(prompts, texts), np.minimum(a, b), rtol=1e-5, atol=1e-6
    )
    out = evaluate_orm(ensemble, pairs=[])
    assert out == {}
