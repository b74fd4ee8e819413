"""A small SFT warm start shared by the offline-trainer tests (trained once per test session).

The reward-model, DPO and RL-with-PRM tests start from the same SFT policy, as
the real pipeline does. It is trained once and shared between pytest-xdist
workers through a file lock in the session's common temp directory.
"""

from __future__ import annotations

import fcntl
import os

import ml_collections

# An easy arithmetic variant: 2 operations, operands 1..5 (completions ~17 characters).
TASK = dict(num_steps=2, max_operand=5)
# Four layers: the 2-layer tiny preset learns to generate arithmetic but not to
# verify it from a reward head; with four it does (see BENCHMARKS.md).
MODEL_OVERRIDES = {"num_layers": 4}
COMPLETION_LENGTH = 24
SFT_STEPS = 300


def sft_config() -> ml_collections.ConfigDict:
    from configs import sft_arithmetic

    # Half of the demonstrations carry a wrong step: the policy copies that habit,
    # which preference pairs (reference ≻ one wrong step) can then remove.
    c = sft_arithmetic.get_config("error_rate=0.5")
    c.task.kwargs = dict(TASK)
    c.model.overrides = dict(MODEL_OVERRIDES)
    c.steps = SFT_STEPS
    c.batch_size = 32
    c.optim.total_steps = SFT_STEPS
    c.optim.warmup_steps = 10
    c.data.completion_length = COMPLETION_LENGTH
    c.checkpoint.every = 0
    c.log.every = 50
    c.eval.num_problems = 100
    c.eval.num_samples = 8
    c.eval.batch_prompts = 100
    return c


def shared_sft(tmp_path_factory, worker_id: str) -> str:
    """Path of the SFT policy's HF directory, training it if no worker has yet."""
    from rewardjax.training import offline

    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent
    workdir = os.path.join(str(root), "shared_sft")
    hf = os.path.join(workdir, "hf")
    with open(os.path.join(str(root), "shared_sft.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(os.path.join(hf, "config.json")):
                offline.OfflineTrainer(sft_config(), workdir).run()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return hf


def offline_config(module, arg: str = "", **data):
    """A config of `module` on the shared task, with small generated datasets."""
    c = module.get_config(arg or None)
    c.task.kwargs = dict(TASK)
    c.data.completion_length = COMPLETION_LENGTH
    c.data.num_train = 4096
    c.data.num_test = 200
    c.eval.num_records = 200
    c.eval.num_problems = 100
    c.eval.num_samples = 8
    c.eval.batch_prompts = 100
    c.checkpoint.every = 0
    c.log.every = 25
    for k, v in data.items():
        c.data[k] = v
    return c
