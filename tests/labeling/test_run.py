"""The labelling CLI's run: sampled solutions → step-label JSONL the PRM trainer reads."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import label_arithmetic, prm_arithmetic
from rewardjax import models
from rewardjax.data.formats import StepLabels, read_jsonl
from rewardjax.labeling import PrefixValues, run
from rewardjax.labeling.run import label_run
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import offline

TOK = CharTokenizer()


def _export(path, seed=0):
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=TOK.eos_id, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id
    )
    params = models.init_params(config, jax.random.key(seed), ("lm",))
    models.save_hf(str(path), config, jax.tree.map(np.asarray, params))
    return str(path)


def test_label_run_writes_step_labels_that_the_prm_trainer_reads(tmp_path):
    solver = _export(tmp_path / "sft")
    c = label_arithmetic.get_config(f"runlocal=True,solver_path={solver},k=2")
    c.num_problems, c.samples_per_problem = 6, 4
    c.solver.max_new_tokens = c.completer.max_new_tokens = 24
    c.output = str(tmp_path / "labels.jsonl")
    summary = label_run(c)
    records = read_jsonl(c.output, StepLabels)
    assert summary["written"] == len(records) == summary["labelled"]
    assert summary["solutions"] + sum(summary["skipped"].values()) == 24
    assert len(records) > 0
    for r in records:
        values = r.fields["prefix_values"]
        assert r.labels == values  # soft labels: the prefix values themselves
        assert all(0.0 <= v <= 1.0 for v in values)
        # K = 2 rollouts per prefix: values are multiples of 1/2; the last is the outcome.
        assert all(v in (0.0, 0.5, 1.0) for v in values)
        assert values[-1] == float(r.correct)
    assert summary["rollouts"] == 2 * summary["prefixes"]
    assert summary["prefixes"] == sum(len(r.steps) - 1 for r in records)
    # The PRM trainer reads the file unchanged.
    p = prm_arithmetic.get_config("runlocal=True")
    p.model.path = solver
    p.data.train_path = c.output
    p.steps = 2
    p.eval.num_records = 0
    out = offline.train(p, str(tmp_path / "prm"))
    assert np.isfinite(out["train/loss"])


def test_threshold_sets_hard_labels_and_first_errors(tmp_path, monkeypatch):
    # Every rolled-out prefix valued 1/2, the last (the outcome) 0: τ = 0 finds the
    # error at the last step, τ = 1/2 at the first.
    def half_values(completer, problems, solutions, *, k, **kwargs):
        values = [np.array([0.5] * (len(s) - 1) + [0.0]) for s in solutions]
        return PrefixValues(values, k, 0, 0, 0.0, {})

    monkeypatch.setattr(run, "monte_carlo_values", half_values)
    sampled = []

    def sample_and_grade(config, params, tokenizer, task, problems, **kwargs):
        sampled.append([tokenizer.render_prompt(p.prompt) for p in problems])
        return real_sample_and_grade(config, params, tokenizer, task, problems, **kwargs)

    real_sample_and_grade = run.sample_and_grade
    monkeypatch.setattr(run, "sample_and_grade", sample_and_grade)
    solver = _export(tmp_path / "sft")
    firsts = {}
    for threshold in (0.0, 0.5):
        c = label_arithmetic.get_config(f"runlocal=True,solver_path={solver},labels=hard")
        c.threshold = threshold
        c.prompt.suffix = "!"  # the prompt block reaches the solver's prompts
        c.solver.max_new_tokens = 24
        c.output = str(tmp_path / f"hard_{threshold}.jsonl")
        run.label_run(c)
        records = read_jsonl(c.output, StepLabels)
        assert records
        for r in records:
            expected = [float(v > threshold) for v in r.fields["prefix_values"]]
            assert r.labels == expected
        firsts[threshold] = [r.first_error for r in records]
    assert firsts[0.0] == [len(r.steps) - 1 for r in records]
    assert sampled and all(text.endswith("\n!") for texts in sampled for text in texts)
    assert firsts[0.5] == [0] * len(records)
    c.threshold = 1.0
    with pytest.raises(ValueError, match="threshold=1.0"):
        run.label_run(c)
    c.threshold, c.method = 0.25, "first_error_search"
    with pytest.raises(ValueError, match="set threshold=0"):
        run.label_run(c)


def test_cli_first_error_search_prints_a_summary(tmp_path):
    solver = _export(tmp_path / "sft", seed=1)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.label",
            "--config",
            f"configs/label_arithmetic.py:runlocal=True,solver_path={solver},"
            "method=first_error_search,k=2",
            "--config.solver.max_new_tokens=24",
            "--config.completer.max_new_tokens=24",
            f"--config.output={tmp_path / 'omega.jsonl'}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["method"] == "first_error_search" and summary["labels"] == "hard"
    records = read_jsonl(tmp_path / "omega.jsonl", StepLabels)
    for r in records:
        assert r.hard
        if r.correct:
            assert r.labels == [1.0] * len(r.steps)  # searched only when graded wrong
        else:
            assert r.labels[-1] == 0.0
