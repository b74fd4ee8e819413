"""The quickstart pipeline learns: held-out pass@1 after GRPO beats the SFT start.

A smaller, faster version of `configs/quickstart.py` (the full command's
figure is in BENCHMARKS.md): the same SFT, 50 instead of 120 GRPO steps,
200 held-out problems × 8 samples.
"""

import json

import pytest

from configs import quickstart
from rewardjax.training import quickstart as qs


@pytest.mark.slow
def test_quickstart_improves_heldout_pass_at_1(tmp_path):
    c = quickstart.get_config()
    c.sft.checkpoint.every = 0
    c.rl.steps = 50
    c.rl.checkpoint.every = 0
    c.rl.log.samples_every = 0
    c.eval.num_problems = 200
    c.eval.num_samples = 8
    c.lock()
    summary = qs.train(c, str(tmp_path))
    assert summary["num_heldout_problems"] == 200
    before, after = summary["sft"]["pass@1"], summary["rl"]["pass@1"]
    # 1,600 samples per side: a 5-point gain is ~3 standard errors of the difference.
    assert after - before >= 0.05, (before, after)
    assert (tmp_path / "quickstart.png").stat().st_size > 0
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["pass@1_gain"] == summary["pass@1_gain"]
    assert written["pass_at_1_before"] == before and written["pass_at_1_after"] == after
    assert written["n_heldout"] == 200 and written["wall_s"] > 0
