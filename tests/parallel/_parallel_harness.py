"""Starts worker scripts in fresh Python processes with fake CPU devices.

The pytest process has already started JAX with one device, and the device
count is fixed when JAX starts, so each multi-device check runs in its own
process with `--xla_force_host_platform_device_count` set in its environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Faster XLA:CPU compiles for these tiny programs (the numbers compared are
# all produced under the same flags).
FAST_COMPILE_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


def _env(devices: int, fast: bool) -> dict[str, str]:
    env = dict(os.environ)
    flags = f"--xla_force_host_platform_device_count={devices}"
    if fast:
        flags += " " + FAST_COMPILE_FLAGS
    env["XLA_FLAGS"] = flags
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    # Workers here run side by side (the ranks of one run, a resumed run beside
    # a fresh one): none reads the test suite's compilation cache, whose
    # entries are written in place and could be read half-written.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def popen(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts `cmd` with its stdout and stderr in unnamed files, not pipes.

    The ranks of one run wait for each other: with pipes, a rank whose stderr
    filled its pipe (compiler warnings) blocked while the test read another
    rank's, and that rank then waited for it in a collective forever.
    """
    files = tuple(
        tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") for _ in "oe"
    )
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=files[0], stderr=files[1], text=True)
    proc.output_files = files
    return proc


def start(script: str, args: list[str], *, devices: int, fast: bool = True) -> subprocess.Popen:
    """Starts `python script args...` with `devices` fake CPU devices."""
    path = script if os.path.isabs(script) else os.path.join(HERE, script)
    return popen([sys.executable, path, *args], _env(devices, fast))


def _read(f) -> str:
    f.flush()
    f.seek(0)
    text = f.read()
    f.close()
    return text


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a process started by `popen`, waited up to `timeout`."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        err = _read(proc.output_files[1])
        _read(proc.output_files[0])
        raise AssertionError(
            f"worker {proc.args} timed out after {timeout}s:\n{err[-3000:]}"
        ) from None
    out, err = (_read(f) for f in proc.output_files)
    return proc.returncode, out, err


def run_json(script: str, args: list[str], *, devices: int, timeout: float = 300) -> dict:
    """Runs a worker to completion and returns the JSON object on its last stdout line."""
    code, out, err = finish(start(script, args, devices=devices), timeout)
    if code != 0 and "Unknown flag" in err:
        code, out, err = finish(start(script, args, devices=devices, fast=False), timeout)
    return last_json(code, out, err, script)


def last_json(code: int, out: str, err: str, what: str) -> dict:
    if code != 0:
        raise AssertionError(f"{what} exited with {code}:\n{err[-4000:]}")
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"{what} printed nothing:\n{err[-4000:]}")
    return json.loads(lines[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
