"""experiments/evaluate.py: the command line prints the metric table and writes the JSON."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from rewardjax import models
from rewardjax.tokenizers import CharTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_command_line_prints_a_table(tmp_path):
    tok = CharTokenizer()
    config = models.preset("tiny", num_layers=1).replace(
        eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id
    )
    params = models.init_params(config, jax.random.key(0), ("lm", "reward"))
    models.save_hf(str(tmp_path / "orm"), config, jax.tree.map(np.asarray, params))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.evaluate",
            f"--orm={tmp_path / 'orm'}",
            "--metrics=pairwise_accuracy,best_of_4",
            '--task_kwargs={"num_steps": 2, "max_operand": 5}',
            "--num_records=8",
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
