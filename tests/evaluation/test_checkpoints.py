"""rewardjax.evaluation.checkpoints: every metric on exported checkpoints, selection curves."""

import json
import os

import jax
import numpy as np
import pytest

from rewardjax import models
from rewardjax.data import generators
from rewardjax.evaluation.checkpoints import (
    evaluate_and_report,
    evaluate_checkpoints,
    format_metric_table,
)
from rewardjax.registry import TASKS
from rewardjax.scoring import OutcomeRewardModel
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()
TASK = {"num_steps": 2, "max_operand": 5}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny random checkpoints of each kind (1 layer), exported as HF directories."""
    root = tmp_path_factory.mktemp("ckpt")
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    out = {}
    for i, (name, heads) in enumerate(
        [
            ("orm_a", ("lm", "reward")),
            ("orm_b", ("lm", "reward")),
            ("prm", ("lm", "prm")),
            ("lm", ("lm",)),
            ("ref", ("lm",)),
        ]
    ):
        params = models.init_params(config, jax.random.key(i), heads)
        models.save_hf(str(root / name), config, jax.tree.map(np.asarray, params))
        out[name] = str(root / name)
    return out


def test_every_metric_on_generated_data(checkpoints):
    result = evaluate_checkpoints(
        orm_paths=[checkpoints["orm_a"]],
        prm_path=checkpoints["prm"],
        implicit_path=checkpoints["lm"],
        reference=checkpoints["ref"],
        policy_path=checkpoints["lm"],
        task_kwargs=TASK,
        num_records=24,
        num_problems=4,
        max_n=4,
        num_subsets=4,
        max_new_tokens=24,
        search={"confidence": "stated"},
    )
    table = result["table"]
    assert {"pairwise_accuracy", "best_of_4_accuracy", "brier", "ece", "pearson", "auroc"} <= set(
        table["orm"]
    )
    assert {
        "processbench_f1",
        "tuned_processbench_f1",
        "step_auroc",
        "step_brier",
        "outcome_auroc",
    } <= set(table["prm"])
    assert (
        "processbench_f1" in table["implicit_prm"]
        and "pairwise_accuracy" in table["implicit_prm_outcome"]
    )
    assert "pass@1" in table["policy"]
    for row in table.values():
        for key, value in row.items():
            if key.startswith(
                (
                    "pairwise",
                    "best_of",
                    "step_auroc",
                    "processbench",
                    "tuned",
                    "brier",
                    "ece",
                    "pass@",
                )
            ):
                assert 0.0 <= value <= 1.0 or np.isnan(value), (key, value)
    selection = result["selection"]
    assert next(iter(selection)) == "pass_at_n" and set(selection["pass_at_n"]) == {1, 2, 4}
    rules = {
        "majority_vote",
        "bon_orm",
        "weighted_majority_vote_orm",
        "bon_prm_min",
        "bon_prm_last",
    }
    assert rules <= set(selection) and any(k.startswith("implicit_bon_prm") for k in selection)
    # pass@N is the ceiling: no selection rule beats an oracle on the same candidates.
    for rule, curve in selection.items():
        for n, acc in curve.items():
            assert acc <= selection["pass_at_n"][n] + 1e-9, (rule, n)
    # A random policy states no <confidence>: the confidence vote falls back to the majority.
    assert selection["confidence_weighted_vote"] == selection["majority_vote"]
    assert result["search"] is None  # not asked for by name
    # With one candidate every rule picks it: all equal pass@1.
    assert len({round(curve[1], 9) for curve in selection.values()}) == 1


def test_metric_filter_and_ensemble(checkpoints):
    result = evaluate_checkpoints(
        orm_paths=[checkpoints["orm_a"], checkpoints["orm_b"]],
        ensemble="min",
        metrics=["pairwise_accuracy"],
        task_kwargs=TASK,
        num_records=16,
    )
    # The reference: each member scores the 16 held-out pairs on its own; the
    # ensemble's score is their minimum, and a pair counts when chosen > rejected.
    pairs = generators.preference_pairs(
        TASKS.get("arithmetic_chain")(**TASK), num=16, split="test", seed=0
    )
    prompts = [p.prompt for p in pairs]
    chosen, rejected = [], []
    for name in ("orm_a", "orm_b"):
        member = OutcomeRewardModel.load(checkpoints[name], tokenizer="char")
        chosen.append(member.scores(prompts, [p.chosen for p in pairs]))
        rejected.append(member.scores(prompts, [p.rejected for p in pairs]))
    expected = float(np.mean(np.min(chosen, 0) > np.min(rejected, 0)))
    # The mean of the members ranks the pairs differently: a wrong mode would not match.
    assert expected != float(np.mean(np.mean(chosen, 0) > np.mean(rejected, 0)))
    assert result["table"] == {
        "orm_ensemble_min": {"pairwise_accuracy": pytest.approx(expected), "num_pairs": 16.0}
    }
    assert result["selection"] is None
    with pytest.raises(ValueError, match="--metrics: unknown"):
        evaluate_checkpoints(
            orm_paths=[checkpoints["orm_a"]], metrics=["accuracy"], task_kwargs=TASK
        )
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_checkpoints(task_kwargs=TASK)


def test_wrong_head_type_is_named(checkpoints):
    with pytest.raises(models.CheckpointError, match="is not a process reward model"):
        evaluate_checkpoints(prm_path=checkpoints["orm_a"], task_kwargs=TASK, num_records=8)


def test_report_prints_and_writes_the_result(checkpoints, tmp_path, capsys):
    out = tmp_path / "out.json"
    result = evaluate_and_report(
        orm_paths=[checkpoints["orm_a"]],
        metrics=["pairwise_accuracy"],
        task_kwargs=TASK,
        num_records=8,
        output_json=str(out),
    )
    assert capsys.readouterr().out == format_metric_table(result["table"]) + "\n"
    assert json.loads(out.read_text()) == result


def test_format_metric_table():
    table = {"orm": {"pairwise_accuracy": 0.75, "num_pairs": 16.0}, "prm": {"step_auroc": 0.5}}
    assert format_metric_table(table).splitlines() == [
        "model  metric             value",
        "-" * (5 + 17 + 12),
        "orm    pairwise_accuracy  0.7500",
        "orm    num_pairs          16.0000",
        "prm    step_auroc         0.5000",
    ]
    assert format_metric_table({}) == "(no metric applies to the given models and data)"


FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "fixtures", "published")


def _published(name):
    return os.path.join(FIXTURES, f"{name}.jsonl")


def test_benchmark_files_score_as_their_benchmarks_define(checkpoints):
    from rewardjax.data.published import read_published
    from rewardjax.evaluation.rm_metrics import rewardbench2_ties_score
    from rewardjax.scoring import ProcessRewardModel

    result = evaluate_checkpoints(
        orm_paths=[checkpoints["orm_a"]],
        prm_path=checkpoints["prm"],
        rewardbench2=_published("rewardbench2"),
        processbench=[f"math={_published('processbench')}"],
        task_kwargs=TASK,
    )
    # With benchmark files and no --metrics, only the benchmarks run.
    assert set(result["table"]["orm"]) == {
        "rewardbench2_score",
        "rewardbench2/Factuality",
        "rewardbench2/Ties",
    }
    orm = OutcomeRewardModel.load(checkpoints["orm_a"], tokenizer=TOK)
    lists = read_published("rewardbench2", _published("rewardbench2")).records
    scores = [orm.scores([r.prompt] * len(r.responses), r.responses) for r in lists]
    # Factuality: right when the one correct response out-scores the three others.
    factuality = float(scores[0][0] > max(scores[0][1:]))
    tied, ref = scores[1], scores[2]
    ties = rewardbench2_ties_score([ref], [1], [tied], [4])["score"]
    rb2 = result["benchmarks"]["rewardbench2"]["orm"]
    assert rb2["subsets"] == pytest.approx({"Factuality": factuality, "Ties": ties})
    assert result["table"]["orm"]["rewardbench2_score"] == pytest.approx((factuality + ties) / 2)
    # ProcessBench: the first step scored below τ = 0.5 against the label.
    prm = ProcessRewardModel.load(checkpoints["prm"], tokenizer=TOK)
    solutions = read_published("processbench", _published("processbench")).records
    step_scores = prm.step_scores([s.prompt for s in solutions], [s.steps for s in solutions])
    predicted = [next((k for k, p in enumerate(row) if p < 0.5), -1) for row in step_scores]
    labels = [-1 if s.first_error is None else s.first_error for s in solutions]
    hits = [p == y for p, y in zip(predicted, labels)]
    erroneous = [h for h, y in zip(hits, labels) if y >= 0]
    correct = [h for h, y in zip(hits, labels) if y < 0]
    acc_e, acc_c = np.mean(erroneous), np.mean(correct)
    f1 = 0.0 if acc_e + acc_c == 0 else 2 * acc_e * acc_c / (acc_e + acc_c)
    pb = result["benchmarks"]["processbench"]["prm"]
    assert pb["subsets"]["math"]["f1"] == pytest.approx(f1)
    assert result["table"]["prm"]["processbench_f1/math"] == pytest.approx(f1)


def test_pass_at_k_on_a_problem_file(checkpoints):
    result = evaluate_checkpoints(
        policy_path=checkpoints["lm"],
        problems_data=_published("gsm8k"),
        problems_reader="gsm8k",
        prompt={"suffix": "\nA:"},
        metrics=["pass_at_k"],
        max_n=2,
        num_problems=3,
        max_new_tokens=4,
    )
    assert {"pass@1", "pass@2"} <= set(result["table"]["policy"])
    with pytest.raises(ValueError, match="'rewardbench' holds preference_pairs, not prompts"):
        evaluate_checkpoints(
            policy_path=checkpoints["lm"],
            problems_data=_published("rewardbench"),
            problems_reader="rewardbench",
            metrics=["pass_at_k"],
        )


def test_a_generative_judge_selects_among_the_policys_samples(checkpoints):
    from rewardjax.evaluation import scorers
    from rewardjax.training.rollout import EvalResult

    # An oracle judge (P(Yes) = correctness) picks a correct sample whenever one is
    # among the N: best-of-N with it is pass@N, on every subset (C(4, N) <= 100).
    correct = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]], np.float32)
    answers = [[str(int(c)) if c else str(9 - j) for j, c in enumerate(row)] for row in correct]
    texts = [[f"A: {a}" for a in row] for row in answers]
    candidates = EvalResult(
        correct, answers, np.ones((3, 4), np.int32), np.zeros((3, 4), bool), texts
    )
    truth = {t: c for row_t, row_c in zip(texts, correct) for t, c in zip(row_t, row_c)}

    class Oracle:
        def scores(self, prompts, completions):
            return np.array([truth[c] for c in completions])

    problems = [type("P", (), {"prompt": f"Q{i}\n"})() for i in range(3)]
    curves = scorers.selection_curves(problems, candidates, judge=Oracle(), ns=(1, 2, 4))
    for n in (1, 2, 4):
        assert curves["bon_judge"][n] == pytest.approx(curves["pass_at_n"][n])
    assert set(curves["weighted_majority_vote_judge"]) == {1, 2, 4}

    # Through the evaluator: a (random) judge checkpoint adds its rules to the curves.
    result = evaluate_checkpoints(
        policy_path=checkpoints["lm"],
        judge_path=checkpoints["lm"],
        metrics=["selection"],
        task_kwargs=TASK,
        num_problems=3,
        max_n=2,
        num_subsets=2,
        max_new_tokens=16,
    )
    selection = result["selection"]
    assert {"bon_judge", "weighted_majority_vote_judge"} <= set(selection)
    assert all(selection["bon_judge"][n] <= selection["pass_at_n"][n] + 1e-9 for n in (1, 2))
    with pytest.raises(ValueError, match="--judge selects among a policy's samples"):
        evaluate_checkpoints(judge_path=checkpoints["lm"], metrics=["selection"])
