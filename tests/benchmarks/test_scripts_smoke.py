"""Each benchmark script runs at a tiny size and ends with its JSON line, the load on record."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.slow


def last_line(script: str, *flags: str) -> dict:
    """Runs benchmarks/`script` with `flags`; the JSON object it printed last."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_load_recorded(line: dict) -> None:
    assert line["load_avg_start"] >= 0 and line["load_avg_end"] >= 0
    assert line["cpus"] == os.cpu_count()
    assert line["machine"] == f"{os.cpu_count()}-core {os.uname().machine} CPU"
    assert isinstance(line["loaded"], bool)


def test_logprob_interleaves_the_paths():
    line = last_line("logprob.py", "--n", "64", "--d", "16", "--v", "512", "--iters", "2")
    assert line["bench"] == "logprob" and line["repeats"] == 2
    free = line["logits_free_impl"]
    for kind in ("naive", free):
        assert len(line[f"{kind}_s_all"]) == 2 and line[f"{kind}_s_spread"] >= 0
        assert line[f"{kind}_time_s"] == line[f"{kind}_s_median"] > 0
    assert 0 < line["ratio_temp_bytes"] < 1 and line["ratio_time"] > 0
    assert_load_recorded(line)


@pytest.mark.xdist_group(name="sandbox")
def test_sandbox_interleaves_the_paths():
    line = last_line("sandbox.py", "--trivial", "4", "--humaneval", "2", "--repeats", "2")
    assert line["bench"] == "sandbox" and line["repeats"] == 2
    for workload in ("trivial", "humaneval"):
        for path in ("sandboxed", "unsandboxed"):
            assert len(line[f"{workload}_{path}_s_all"]) == 2
    assert line["programs_per_s"] > 0 and line["humaneval_programs_per_s"] > 0
    assert line["overhead_ratio"] > 0 and line["humaneval_overhead_ratio"] > 0
    assert line["unsandboxed_programs_per_s"] > 0 and line["unsandboxed_humaneval_per_s"] > 0
    assert isinstance(line["isolation"], str) and isinstance(line["workers"], int)
    assert_load_recorded(line)


def test_soak_records_the_load():
    line = last_line("soak.py", "--steps", "2", "--warmup", "1")
    assert line["bench"] == "soak" and line["steps"] == 2
    assert line["rss_end_mb"] > 0 and line["recompiled"] is False
    assert_load_recorded(line)


def test_rollout_reports_the_issue_keys():
    # The script itself asserts that every engine emitted the imposed row lengths.
    line = last_line(
        "rollout.py",
        *("--prompts", "2", "--samples", "2", "--cap", "32", "--median", "8"),
        *("--uniform-new-tokens", "16", "--repeats", "1", "--layers", "2", "--vocab", "512"),
    )
    assert line["bench"] == "rollout" and line["repeats"] == 1
    for key in ("speedup_vs_previous", "speedup_vs_hf", "decode_ratio_1024_vs_64"):
        assert line[key] > 0, key
    assert line["speedup_vs_tunix"] is None
    assert line["useful_tokens_per_s"] > 0 and line["rl_rows"] == 4
    assert line["rl_useful_tokens"] >= 4 and line["rl_length_max"] <= 32
    # Greedy and without early stops, the new path decodes what the previous one did.
    assert line["uniform_new_equals_previous"] is True
    assert_load_recorded(line)
