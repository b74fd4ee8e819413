"""Bradley-Terry outcome reward models: learning, ties and margins, ensembles, export."""

import json
import os
import sys

import numpy as np
import pytest

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


# ---------------------------------------------------------------- ratings: regression heads


def test_ratings_format_reads_named_or_listed_ratings(tmp_path):
    from rewardjax.data.formats import DataFormatError, Ratings, read_jsonl

    rows = [
        {"prompt": "Q", "response": "a", "ratings": {"helpfulness": 3, "correctness": 4}},
        {"prompt": "Q", "response": "b", "ratings": [1, 2.5]},
        {"prompt": "Q", "response": "c", "ratings": {"correctness": 1, "verbosity": 2}},
    ]
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b, c = read_jsonl(str(path), "ratings")
    attributes = ["correctness", "helpfulness"]
    assert a.values(attributes) == ([4.0, 3.0], [1.0, 1.0])
    assert b.values(attributes) == ([1.0, 2.5], [1.0, 1.0])  # a list is in attribute order
    # Unnamed attributes are ignored, absent ones masked out.
    assert c.values(attributes) == ([1.0, 0.0], [1.0, 0.0])
    assert Ratings.from_json(a.to_json()) == a
    path.write_text(json.dumps({"prompt": "Q", "response": "a", "ratings": {"x": "3"}}) + "\n")
    with pytest.raises(DataFormatError, match=r"ratings.jsonl:1: ratings\['x'\] must be a number"):
        read_jsonl(str(path), "ratings")


def test_reward_head_with_k_outputs_scores_b_by_k():
    import jax

    from rewardjax import models
    from rewardjax.scoring.models import last_token_scores
    from rewardjax.training.kinds.rm import attribute_scores

    tokens = jax.random.randint(jax.random.key(1), (3, 5), 3, 60)  # [B, T]
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)
    prompt = np.full((3, 4), 7, np.int32)  # [B, L]
    prompt_mask = np.ones((3, 4), np.float32)
    scalar = models.preset("tiny", num_layers=1)
    for k in (1, 3):
        config = scalar.replace(reward_outputs=k)
        params = models.init_params(config, jax.random.key(0), heads=("lm", "reward"))
        model = models.build(config, ("lm", "reward"))
        head = params["reward_head"]
        d = config.hidden_size
        # K = 1 keeps the scalar head's shapes (existing checkpoints load).
        assert head["kernel"].shape == ((d,) if k == 1 else (d, k))
        assert head["bias"].shape == (() if k == 1 else (k,))
        scores = jax.jit(attribute_scores, static_argnums=0)(
            model, params, prompt, prompt_mask, tokens, mask
        )
        assert scores.shape == (3, k)
        if k == 1:
            np.testing.assert_allclose(
                scores[:, 0],
                jax.jit(last_token_scores, static_argnums=0)(
                    model, params, prompt, prompt_mask, tokens, mask
                ),
                rtol=1e-6,
            )
        else:  # each output is its own linear read-out: not copies of one another
            assert np.ptp(np.asarray(scores), axis=1).min() > 1e-3


def _ratings_config(arg: str):
    c = rm_arithmetic.get_config(f"runlocal=True,{arg}")
    c.task.kwargs = dict(num_steps=2, max_operand=5)
    c.data.completion_length = 24
    c.model.overrides = dict(c.model.overrides, num_layers=1)
    # Eight rated responses (and pairs), one batch: a few steps fit them.
    c.data.num_train = c.batch_size
    c.optim.learning_rate = 3e-4
    c.optim.schedule = "constant"
    c.optim.warmup_steps = 0
    c.eval.every = 0
    c.export_hf = False
    return c


@pytest.mark.parametrize(
    "arg",
    [
        "loss=regression_rm,attributes=correctness+length",
        "loss=bt_plus_regression,attributes=correctness+progress",
    ],
)
def test_rating_losses_fit_the_ratings(arg, tmp_path):
    import jax

    from rewardjax.training.step import batch_totals

    c = _ratings_config(arg)
    trainer = offline.OfflineTrainer(c, str(tmp_path / "rm"))
    obj = trainer.objective
    batch, _ = obj.next_batch()
    rated = "" if "regression_rm" in arg else "rated_"
    ratings, present = batch[rated + "ratings"], batch[rated + "rating_mask"]
    assert ratings.shape == present.shape == (c.batch_size, 2)  # [B, K]
    # Generated ratings: correctness ∈ {0, 1}, then length (chars/100) or progress ∈ [0, 1].
    assert set(np.unique(ratings[:, 0])) <= {0.0, 1.0} and present.all()
    loss_fn = jax.jit(obj.loss)

    def loss_and_error():
        params = trainer.state.params
        loss = float(loss_fn(params, batch, None, batch_totals(batch))[0])
        preds = obj._predict(params["policy"], {k.removeprefix(rated): v for k, v in batch.items()})
        assert preds.shape == (c.batch_size, 2)  # [B, K]
        return loss, float(np.mean(np.abs(preds - ratings)))

    loss0, error0 = loss_and_error()
    for _ in range(5):
        metrics = trainer.train_step()
    loss1, error1 = loss_and_error()
    assert loss1 < 0.5 * loss0, (loss0, loss1)
    assert error1 < error0, (error0, error1)
    metrics = {k: float(v) for k, v in metrics.items()}
    assert np.isfinite(metrics["train/mse" if rated == "" else "train/mse_loss"])
    out = obj.evaluate(trainer.state.params, None)
    assert {"ratings/correctness_mse", "ratings/correctness_pearson"} <= set(out)
    if rated:
        assert 0.0 <= out["pairwise_accuracy"] <= 1.0


def test_rating_losses_check_the_head_against_the_attributes(tmp_path):
    c = _ratings_config("loss=regression_rm,attributes=correctness+length")
    c.model.overrides = dict(reward_outputs=3)
    with pytest.raises(ValueError, match=r"names 2 attributes but the reward head has 3 outputs"):
        offline.OfflineTrainer(c, str(tmp_path / "k"))
    c = _ratings_config("loss=regression_rm,attributes=correctness+length")
    c.export_hf = True
    with pytest.raises(ValueError, match=r"export_hf=True: HF exports carry a scalar reward head"):
        offline.OfflineTrainer(c, str(tmp_path / "export"))
    c = rm_arithmetic.get_config("runlocal=True")
    c.model.overrides = dict(reward_outputs=2)
    with pytest.raises(ValueError, match=r"'bt_pairwise' trains a scalar reward"):
        offline.OfflineTrainer(c, str(tmp_path / "bt"))
