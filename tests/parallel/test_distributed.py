"""Multi-host start-up: arguments from flags and environment, and a 2-process CPU run."""

import os
import sys

import jax
import numpy as np
import pytest

from rewardjax import parallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _parallel_harness as harness


@pytest.mark.parametrize(
    "args, env, expected",
    [
        # a plain box: nothing to join
        ((None, None, None), {}, None),
        # GPU cluster, explicit flags
        (
            ("10.0.0.1:1234", 4, 2),
            {},
            dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2),
        ),
        # the same from the environment
        (
            (None, None, None),
            {"JAX_COORDINATOR_ADDRESS": "h0:99", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
            dict(coordinator_address="h0:99", num_processes=2, process_id=1),
        ),
        # flags win over the environment
        (
            ("h1:5", 2, 0),
            {"JAX_COORDINATOR_ADDRESS": "h0:99", "JAX_NUM_PROCESSES": "8", "JAX_PROCESS_ID": "7"},
            dict(coordinator_address="h1:5", num_processes=2, process_id=0),
        ),
        # a TPU pod slice with 4 workers: JAX finds everything itself
        ((None, None, None), {"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}, {}),
        # a single-host TPU VM is a plain single-process run
        ((None, None, None), {"TPU_WORKER_HOSTNAMES": "localhost"}, None),
        # Slurm with several tasks
        ((None, None, None), {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}, {}),
        # one process with a coordinator: nothing to join
        (("h:1", 1, 0), {}, None),
        # per-GPU processes
        (
            ("h:1", 2, 1),
            {"JAX_LOCAL_DEVICE_IDS": "2,3"},
            dict(coordinator_address="h:1", num_processes=2, process_id=1, local_device_ids=[2, 3]),
        ),
    ],
)
def test_distributed_arguments(args, env, expected):
    assert parallel.distributed_arguments(*args, env=env) == expected


@pytest.mark.parametrize(
    "args, env, words",
    [
        (("h:1", None, None), {}, "needs num_processes and process_id"),
        ((None, 4, None), {}, "needs a coordinator address"),
        (("h:1", 2, 2), {}, r"process_id=2 is outside \[0, 2\)"),
        (
            (None, None, None),
            {"JAX_NUM_PROCESSES": "two"},
            "JAX_NUM_PROCESSES='two' is not an integer",
        ),
    ],
)
def test_distributed_argument_errors(args, env, words):
    with pytest.raises(ValueError, match=words):
        parallel.distributed_arguments(*args, env=env)


def test_single_process_run_is_left_alone(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name in ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    assert parallel.initialize_distributed() is False
    assert parallel.is_main_process()
    mesh = parallel.make_mesh()
    assert parallel.local_batch_slice(8, mesh) == slice(0, 8)
    batch = parallel.host_local_batch_to_global({"x": np.arange(8)}, mesh)
    assert batch["x"].shape == (8,) and np.array_equal(np.asarray(batch["x"]), np.arange(8))
    parallel.barrier("no-op")
    assert jax.tree.leaves(parallel.gather_to_host({"a": batch["x"]}))[0].tolist() == list(range(8))


def test_two_cpu_processes_match_one_process(tmp_path):
    """Two processes × 2 CPU devices (gloo collectives) against one process × 4 devices."""
    port = harness.free_port()
    two = tmp_path / "two.npz"
    one = tmp_path / "one.npz"
    procs = [
        harness.start(
            "_multiprocess_worker.py",
            [
                "--process_id",
                str(i),
                "--num_processes",
                "2",
                "--port",
                str(port),
                "--out",
                str(two),
            ],
            devices=2,
        )
        for i in range(2)
    ]
    single = harness.start("_multiprocess_worker.py", ["--out", str(one)], devices=4)
    reports = [harness.last_json(*harness.finish(p, 300), "process") for p in procs]
    alone = harness.last_json(*harness.finish(single, 300), "single process")

    assert [r["process"] for r in reports] == [0, 1]
    assert [r["main"] for r in reports] == [True, False]
    assert all(r["multi"] and r["processes"] == 2 for r in reports)
    assert all(r["local_devices"] == 2 and r["global_devices"] == 4 for r in reports)
    # Each host loaded its own half of the 8 rows; the global batch has all 8.
    assert [r["rows"] for r in reports] == [[0, 4], [4, 8]]
    assert all(r["global_batch_rows"] == 8 for r in reports)
    assert not alone["multi"] and alone["rows"] == [0, 8] and alone["global_devices"] == 4

    # Both processes see the same global loss, equal to the one-process loss.
    np.testing.assert_allclose(reports[0]["losses"], reports[1]["losses"], rtol=0, atol=0)
    np.testing.assert_allclose(reports[0]["losses"], alone["losses"], atol=1e-6)
    assert alone["losses"][-1] < alone["losses"][0] - 0.1  # the steps did train
    a, b = np.load(two), np.load(one)
    assert sorted(a.files) == sorted(b.files) and len(a.files) == 14
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, rtol=0, err_msg=key)
