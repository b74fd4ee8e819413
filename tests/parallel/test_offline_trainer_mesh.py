"""The offline trainer itself (not only its update step) runs sharded.

The runlocal SFT, DPO, RM and PRM configs train three steps on one device and on
a (data 2, fsdp 2, tensor 2) mesh of 8 fake CPU devices: same losses, same
params (within 1e-5), and the params really spread over 8 devices.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _parallel_harness as harness

KINDS = ("sft", "dpo", "rm", "prm")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    procs = {}
    for name, mesh, devices in (("single", "1,1,1", 1), ("mesh", "2,2,2", 8)):
        out = tmp_path_factory.mktemp(name)
        args = ["--kinds", ",".join(KINDS), "--mesh", mesh, "--out", str(out)]
        procs[name] = (harness.start("_offline_trainer_worker.py", args, devices=devices), out)
    runs = {}
    for name, (proc, out) in procs.items():
        runs[name] = harness.last_json(*harness.finish(proc, 600), f"offline worker ({name})")
        for kind in KINDS:
            with np.load(out / f"{kind}.npz") as f:
                runs[name][kind]["params"] = {k: f[k] for k in f.files}
    return runs


@pytest.mark.parametrize("kind", KINDS)
def test_sharded_trainer_equals_single_device(runs, kind):
    single, mesh = runs["single"][kind], runs["mesh"][kind]
    assert single["devices"] == 1 and mesh["devices"] == 8, (single, mesh)
    # The embedding [vocab, embed] is split (vocab over tensor, embed over fsdp).
    assert np.prod(mesh["embed_shard"]) < np.prod(single["embed_shard"]), mesh
    np.testing.assert_allclose(mesh["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert sorted(mesh["params"]) == sorted(single["params"])
    for name, value in single["params"].items():
        if kind == "rm" and name == "policy/reward_head/bias":
            # A pairwise Bradley-Terry loss is blind to a shared offset: this
            # gradient is 0 up to rounding, which Adam scales to a full step,
            # so the bias drifts by rounding noise on any layout.
            continue
        np.testing.assert_allclose(mesh["params"][name], value, rtol=0, atol=1e-5, err_msg=name)
    # The steps moved the params: the comparison is not between two initial states.
    assert single["losses"][0] != single["losses"][-1]
