"""The SFT kind of the offline loop: the runlocal config trains, exports and resumes."""

import json
import math
import os

import pytest

from configs import sft_arithmetic
from rewardjax import models
from rewardjax.training import offline


def test_sft_runlocal_trains_exports_and_resumes(tmp_path):
    c = sft_arithmetic.get_config("runlocal=True")
    c.checkpoint.async_save = False
    trainer = offline.OfflineTrainer(c, str(tmp_path))
    last = trainer.run()
    assert trainer.step == 4
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    # A fresh model is near-uniform over the vocabulary: the token-mean NLL of the
    # first step is ≈ log V (a sum, or a mean over padding too, would be far off).
    log_v = math.log(trainer.model_config.vocab_size)
    assert abs(first["train/nll"] - log_v) < 0.2, (first, log_v)
    # Plain SFT has no other term: the loss is the NLL. Four steps already lower it.
    assert last["train/loss"] == pytest.approx(last["train/nll"], rel=1e-5)
    assert last["train/loss"] < first["train/loss"] - 0.2, (first, last)
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
