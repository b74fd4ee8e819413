"""Sharded SFT, DPO, RM and GRPO steps on 8 fake CPU devices equal the single-device step.

Two worker processes (each with 8 fake devices) run two update steps of every
case on one device and on each mesh; the assertions below read their JSON.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _parallel_harness as harness

CASES = ("sft", "dpo", "rm", "grpo")
MESHES = ("8,1,1", "2,4,1", "1,4,2", "2,2,2")
TOL = 1e-5


@pytest.fixture(scope="module")
def results():
    groups = [["--cases", "sft,dpo", "--layout"], ["--cases", "rm,grpo"]]
    procs = [harness.start("_equivalence_worker.py", g, devices=8) for g in groups]
    merged = {}
    for proc, group in zip(procs, groups):
        code, out, err = harness.finish(proc, 600)
        if code != 0 and "Unknown flag" in err:
            code, out, err = harness.finish(
                harness.start("_equivalence_worker.py", group, devices=8, fast=False), 600
            )
        merged.update(harness.last_json(code, out, err, f"equivalence worker {group}"))
    return merged


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("case", CASES)
def test_sharded_step_equals_single_device(results, case, mesh):
    r = results[case][mesh]
    for loss, ref in zip(r["loss"], r["ref_loss"], strict=True):
        assert abs(loss - ref) < TOL
    assert r["param_diff"] < TOL
    assert r["metric_rel_diff"] < TOL, r["metric_names"]
    # The params really moved, so equal params are not two untouched copies.
    assert r["moved"] > 1e-3
    assert r["loss"][1] != r["loss"][0]


@pytest.mark.parametrize("mesh", MESHES)
def test_state_is_really_sharded(results, mesh):
    _, fsdp, tensor = (int(s) for s in mesh.split(","))
    for case in CASES:
        r = results[case][mesh]
        # q_proj kernel [layers=2, embed=64, heads=4, head_dim=16]: embed over
        # fsdp, heads over tensor; Adam's mu is laid out like its parameter.
        assert r["q_proj_shard"] == [2, 64 // fsdp, 4 // tensor, 16]
        assert r["q_proj_mu_shard"] == r["q_proj_shard"]
        assert r["devices"] == 8
        assert r["state_sharding_kept"]
        assert r["activation_constraints"] > 0


def test_mesh_layout_on_eight_devices(results):
    r = results["layout"]
    assert r["rest_shape"] == [2, 2, 2]  # data=-1 with fsdp=2, tensor=2 on 8 devices
    assert r["split"] == {"policy": [0, 1, 2, 3], "reference": [4, 5], "reward": [6, 7]}
    assert r["split_shapes"] == {"policy": [4, 1, 1], "reference": [2, 1, 1], "reward": [2, 1, 1]}
    # KV cache [layers=2, B=8, S=16, K=2, Dh=16] → B/(data·fsdp)=2, K/tensor=1.
    assert r["kv_shard"] == [2, 2, 1, 16, 16]
    # One process holds every row: the global batch is the local one, split 4 ways.
    assert r["global_batch_shape"] == [8, 2]
    assert r["global_batch_shard"] == [2, 2]
    assert r["global_batch_values"] == [[2 * i, 2 * i + 1] for i in range(8)]
    assert r["local_slice"] == [0, 8]
    assert "multiplies to 3 devices but 8 devices" in r["bad_size"]
    assert "6 rows" in r["bad_batch"] and "data=2×fsdp=2 = 4" in r["bad_batch"]
    assert "sum to 3, not the data size 2" in r["bad_split"]
    assert r["describe"] == "data=2 fsdp=2 tensor=2 (8 devices, 1 process)"
