"""Judges train through the existing trainers: SFT on verdicts, then GRPO with the judge as policy."""

import json
import os

import numpy as np

from configs import judge_arithmetic
from rewardjax.training import offline, rl


def _small(c, steps):
    c.steps = steps
    c.checkpoint.every = 0
    c.checkpoint.async_save = False
    c.eval.every = 0
    return c


def test_a_short_judge_sft_then_grpo_run(tmp_path):
    sft_dir, rl_dir = str(tmp_path / "sft"), str(tmp_path / "rl")
    c = _small(judge_arithmetic.get_config("runlocal=True,stage=sft"), 2)
    c.optim.total_steps, c.optim.warmup_steps = 2, 0
    trainer = offline.OfflineTrainer(c, sft_dir)
    trainer.run()
    # The judge SFT learns the target replies: "Yes"/"No" and EOS (4 or 3 tokens).
    rows = [json.loads(line) for line in open(os.path.join(sft_dir, "metrics.jsonl"))]
    assert rows and 3 <= rows[-1]["data/tokens"] / c.batch_size <= 4

    c = _small(judge_arithmetic.get_config(f"runlocal=True,stage=rl,model_path={sft_dir}/hf"), 2)
    trainer = rl.RLTrainer(c, rl_dir)
    assert trainer.task.name == "judge" and c.rollout.max_new_tokens == 8
    batch, problems, metrics = trainer.collect()
    # The reward is the strict verdict check: a row scores 1 exactly when its reply
    # parses and names the problem's verdict.
    texts = rl.decode_completions(trainer.tokenizer, batch["tokens"], batch["lengths"])
    g = trainer.group_size
    expected = [float(t.strip() == problems[i // g].answer) for i, t in enumerate(texts)]
    np.testing.assert_array_equal(batch["rewards"], expected)
    assert "reward/well_formed" in metrics
    last = trainer.run()
    assert np.isfinite(last["train/loss"]) and os.path.isdir(os.path.join(rl_dir, "hf"))
