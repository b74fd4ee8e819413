"""Nothing lost: corrupted checkpoints are found, reported, skipped, and never deleted.

A real SFT run leaves checkpoints 2, 3 and 4. Its newest checkpoint, then every
one, is truncated or bit-flipped (same size) on disk; a resume must restore the
newest intact one or, when none is intact, stop with one message and leave
every file of the workdir exactly as it was.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import sft_arithmetic
from rewardjax.training import offline
from rewardjax.training.checkpoint import ResumeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config():
    c = sft_arithmetic.get_config("runlocal=True")
    c.checkpoint.every = 1
    c.checkpoint.keep = 3
    c.checkpoint.async_save = False
    c.export_hf = False
    return c


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    trainer = offline.OfflineTrainer(_config(), str(workdir))
    trainer.run()
    return workdir


def _copy(src, dst):
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def _largest_data_file(workdir, step):
    data = os.path.join(workdir, "checkpoints", str(step), "state", "ocdbt.process_0", "d")
    return max((os.path.join(data, f) for f in os.listdir(data)), key=os.path.getsize)


def _truncate(workdir, step):
    path = _largest_data_file(workdir, step)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip(workdir, step):
    """64 bytes inverted in the middle of the largest data file: same size, other values."""
    path = _largest_data_file(workdir, step)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        chunk = f.read(64)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    assert os.path.getsize(path) == size


def _snapshot(workdir):
    """{relative path: sha256} of every file in the workdir."""
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "bit-flipped"])
def test_damaged_newest_checkpoint_resumes_from_the_previous_one(
    finished_run, tmp_path, damage, caplog
):
    workdir = _copy(finished_run, tmp_path / "w")
    intact = offline.OfflineTrainer(_config(), str(_copy(finished_run, tmp_path / "ref")))
    assert intact.step == 4
    damage(workdir, 4)
    before = _snapshot(workdir)
    c = _config()
    c.steps = 6
    resumed = offline.OfflineTrainer(c, str(workdir))
    assert resumed.step == 3
    warnings = [r.getMessage() for r in caplog.records if "checkpoint step 4" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    if damage is _flip:
        # The values changed but the files still read: only the checksum tells.
        assert "checksum" in warnings[0] and "was written at save" in warnings[0]
    assert "pybind" not in warnings[0] and "TensorStore(" not in warnings[0]
    # Resuming read and trimmed, but deleted nothing: every checkpoint file is still there.
    after = _snapshot(workdir)
    assert {k for k in before if k.startswith("checkpoints")} == {
        k for k in after if k.startswith("checkpoints")
    }
    # Step 3 restored is what the intact run had at step 3: it trains on from there.
    from rewardjax.training.checkpoint import Checkpointer

    ref_state, _ = Checkpointer(str(tmp_path / "ref")).restore_step(3, {"train": intact.state})
    got = resumed.state.params["policy"]["embed"]["embedding"]
    want = ref_state["train"].params["policy"]["embed"]["embedding"]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_every_checkpoint_damaged_stops_and_changes_nothing(finished_run, tmp_path):
    workdir = _copy(finished_run, tmp_path / "w")
    _flip(workdir, 4)
    _truncate(workdir, 3)
    _flip(workdir, 2)
    before = _snapshot(workdir)
    with pytest.raises(ResumeError) as raised:
        offline.OfflineTrainer(_config(), str(workdir))
    message = str(raised.value)
    assert "holds checkpoints [2, 3, 4] and none of them can be restored" in message
    for step in (2, 3, 4):
        assert f"step {step}: " in message
    assert "use a new workdir" in message
    assert _snapshot(workdir) == before  # logs, config.json and checkpoints untouched

    # The same through the CLI: exit 1 and the message, no traceback.
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env.pop("REWARDJAX_FAULT", None)
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=configs/sft_arithmetic.py:runlocal=True",
        f"--workdir={workdir}",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "none of them can be restored" in result.stderr
    assert "Traceback" not in result.stderr and "TensorStore(" not in result.stderr
    assert _snapshot(workdir) == before
