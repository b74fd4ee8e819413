"""The SFT kind of the offline loop: the runlocal config trains, exports and resumes."""

import json
import os

import numpy as np

from configs import sft_arithmetic
from rewardjax import models
from rewardjax.training import offline


def test_sft_runlocal_trains_exports_and_resumes(tmp_path):
    c = sft_arithmetic.get_config("runlocal=True")
    c.checkpoint.async_save = False
    trainer = offline.OfflineTrainer(c, str(tmp_path))
    last = trainer.run()
    assert trainer.step == 4 and np.isfinite(last["train/loss"]) and "train/nll" in last
    config, params = models.load_hf(str(tmp_path / "hf"))
    assert config.vocab_size == trainer.model_config.vocab_size and "embed" in params
    # A second trainer on the same workdir resumes at step 4, data position included.
    c2 = sft_arithmetic.get_config("runlocal=True")
    c2.steps = 6
    c2.optim.total_steps = 6
    resumed = offline.OfflineTrainer(c2, str(tmp_path))
    assert resumed.step == 4 and resumed.data.get_state()["index"] == 4 * c.batch_size
    resumed.run()
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [1, 2, 3, 4, 5, 6]
