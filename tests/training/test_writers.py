"""Run logs: trimmed on resume by write + rename, set aside (not deleted) without a checkpoint."""

import json
import os

import pytest

from rewardjax.training.writers import MetricWriter


def _rows(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def test_trimming_is_atomic_a_crash_mid_rewrite_keeps_the_old_log(tmp_path, monkeypatch):
    writer = MetricWriter(str(tmp_path), enabled=True, tensorboard=False)
    for step in range(1, 6):
        writer.write_scalars(step, {"loss": float(step)})
    metrics = tmp_path / "metrics.jsonl"

    def crash(src, dst):
        raise OSError("killed mid-rewrite")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        writer.truncate_after(3)
    # An in-place rewrite would have left a truncated or empty file here.
    assert _rows(metrics) == [1, 2, 3, 4, 5]
    monkeypatch.undo()
    writer = MetricWriter(str(tmp_path), enabled=True, tensorboard=False)
    writer.truncate_after(3)
    assert _rows(metrics) == [1, 2, 3]
    writer.write_scalars(4, {"loss": 4.0})
    assert _rows(metrics) == [1, 2, 3, 4]


def test_logs_without_a_checkpoint_are_set_aside_not_deleted(tmp_path):
    writer = MetricWriter(str(tmp_path), enabled=True, tensorboard=False)
    writer.write_scalars(1, {"loss": 1.0})
    assert writer.logged_steps() == 1
    assert writer.set_aside() == "unresumed-1"
    assert _rows(tmp_path / "metrics.jsonl.unresumed-1") == [1]
    assert writer.logged_steps() == 0
    writer.write_scalars(1, {"loss": 0.5})
    assert writer.set_aside() == "unresumed-2"
    assert _rows(tmp_path / "metrics.jsonl.unresumed-2") == [1]
