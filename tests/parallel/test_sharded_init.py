"""Trainers create their state sharded: on data=1 × fsdp=8, each device holds 1/8 of every array.

A state built whole on one device and sharded afterwards would cap the model
at one device's memory; the shell's init is compiled with the final shardings
as its outputs instead. Checked on the runlocal SFT and GRPO trainers, right
after construction, for every array leaf of params and optimizer state.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _parallel_harness as harness


@pytest.fixture(scope="module")
def report():
    return harness.run_json("_sharded_init_worker.py", [], devices=8, timeout=600)


@pytest.mark.parametrize("trainer", ["sft", "grpo"])
def test_every_state_leaf_is_one_eighth_per_device_at_creation(report, trainer):
    leaves = report[trainer]
    # params, Adam's mu and nu of the tiny decoder (with q/k/v biases)
    assert len(leaves) >= 30
    assert any("mu" in path for path in leaves) and any("bias" in path for path in leaves)
    for path, leaf in leaves.items():
        assert leaf["devices"] == 8, path
        assert leaf["shard_sizes"] == [leaf["size"] // 8], (path, leaf)
