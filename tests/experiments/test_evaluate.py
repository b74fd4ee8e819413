"""experiments/evaluate.py: the command line prints the metric table and writes the JSON."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from rewardjax import models
from rewardjax.evaluation.search_curves import SAMPLED
from rewardjax.tokenizers import CharTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_command_line_prints_a_table(tmp_path):
    tok = CharTokenizer()
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id
    )
    for i, (name, heads) in enumerate(
        [("orm", ("lm", "reward")), ("prm", ("lm", "prm")), ("policy", ("lm",))]
    ):
        params = models.init_params(config, jax.random.key(i), heads)
        models.save_hf(str(tmp_path / name), config, jax.tree.map(np.asarray, params))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.evaluate",
            f"--orm={tmp_path / 'orm'}",
            f"--prm={tmp_path / 'prm'}",
            f"--policy={tmp_path / 'policy'}",
            "--metrics=pairwise_accuracy,best_of_4,search",
            '--task_kwargs={"num_steps": 2, "max_operand": 5}',
            "--num_records=8",
            "--num_problems=2",
            "--max_n=2",
            "--max_new_tokens=12",
            "--search_beams=1x2",
            "--search_max_steps=2",
            "--search_early=0.5",
            "--search_refine=2:0.5:1",
            "--confidence=laser",
            f"--search_plot={tmp_path / 'search.png'}",
            f"--output_json={tmp_path / 'out.json'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pairwise_accuracy" in out.stdout and "best_of_4_accuracy" in out.stdout
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result["table"]["orm"]) == {
        "pairwise_accuracy",
        "num_pairs",
        "best_of_4_accuracy",
        "num_ranked",
    }
    assert result["selection"] is None
    # The search metric: each method at each flag-given setting, with its compute.
    settings = {(row["method"], row["setting"]) for row in result["search"]}
    assert settings == {
        *((m, f"N={n}") for m in SAMPLED for n in (1, 2)),
        ("greedy_step", "W=1,M=2"),
        ("early_rejection", "N=2,keep=0.5"),
        ("refined_bon", "N=2,tau=0.5,R=1"),
    }
    for row in result["search"]:
        assert row["tokens"] > 0 and row["flops"] > 0 and 0 <= row["accuracy"] <= 1, row
    assert "greedy_step" in out.stdout and "GFLOPs" in out.stdout
    assert (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"
