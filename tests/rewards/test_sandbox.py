"""rewardjax.rewards.sandbox: what a program sees, and how runs end."""

import concurrent.futures
import os
import tempfile
import time

import pytest

from rewardjax.rewards import sandbox

# Sandbox tests share one xdist worker: the hostile suite checks that no
# sandbox process is left, which a concurrent sandbox test would break.
pytestmark = pytest.mark.xdist_group(name="sandbox")


def run(program, **kw):
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("memory_mb", 256)
    return sandbox.run(program, **kw)


def test_stdin_to_stdout():
    res = run("import sys\nprint(sys.stdin.read()[::-1])", stdin="abc")
    assert (res.stdout, res.reason, res.exit_code, res.timed_out, res.ok) == (
        "cba\n",
        "ok",
        0,
        False,
        True,
    )


def test_stdin_closed_when_not_given():
    res = run("import sys\nprint(repr(sys.stdin.read()))")
    assert res.stdout == "''\n"


def test_large_stdin_is_fed_completely():
    # 3 MiB: more than a pipe buffer, so the feeding must interleave with reading.
    res = run(
        "import sys\ndata = sys.stdin.read()\nprint(len(data))\nprint(data[:3])",
        stdin="x" * (3 << 20),
    )
    assert res.stdout == f"{3 << 20}\nxxx\n"


def test_exit_code_and_error():
    res = run("raise SystemExit(3)")
    assert (res.exit_code, res.reason) == (3, "error")
    res = run("1 / 0")
    assert res.exit_code == 1 and res.reason == "error"
    assert "ZeroDivisionError" in res.stderr


def test_wall_clock_timeout():
    start = time.monotonic()
    res = run("import time\ntime.sleep(60)", timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert (res.reason, res.timed_out, res.exit_code) == ("timeout", True, -9)
    assert 0.5 <= elapsed < 1.5


def test_cpu_limit():
    # 1 CPU-second budget, a 10 s wall clock: the CPU limit ends the busy loop first.
    start = time.monotonic()
    res = run("while True:\n    pass", timeout_s=10, cpu_s=1)
    assert res.reason == "cpu_limit"
    assert time.monotonic() - start < 5
    assert res.cpu_s > 0.5  # rusage samples in scheduler ticks: not exactly the limit


def test_memory_limit():
    assert run("x = bytearray(50 * 2**20)\nprint('ok')", memory_mb=256).stdout == "ok\n"
    res = run("x = bytearray(600 * 2**20)\nprint('ok')", memory_mb=256)
    assert res.reason == "error" and "MemoryError" in res.stderr


def test_output_cap():
    res = run("print('z' * 10000)", max_output_bytes=1000)
    assert res.reason == "output_limit"
    assert res.stdout == "z" * 1000


def test_file_size_limit():
    res = run("open('f', 'wb').write(b'x' * (3 * 2**20))", max_file_mb=2)
    assert res.reason == "error" and "File too large" in res.stderr
    assert run("open('f', 'wb').write(b'x' * 2**20)\nprint('ok')", max_file_mb=2).stdout == "ok\n"


def test_process_limit():
    program = """
import os
n = 0
for _ in range(100):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        import time
        time.sleep(5)
        os._exit(0)
    n += 1
print(n)
"""
    res = run(program, max_processes=10, timeout_s=3)
    # The program itself is one of the uid's processes: at most 9 children.
    assert 0 < int(res.stdout) <= 9


def test_open_files_limit():
    res = run("fs = [open('/dev/null') for _ in range(100)]", max_open_files=32)
    assert "Too many open files" in res.stderr


def test_files_are_provided_and_workdir_is_private():
    program = "import os\nprint(open('data/in.txt').read())\nprint(os.getcwd())\nopen('out', 'w').write('x')\nprint(sorted(os.listdir('.')))"
    res = run(program, files={"data/in.txt": "hello", "b.bin": b"\x00\x01"})
    lines = res.stdout.splitlines()
    assert lines[0] == "hello"
    assert lines[2] == "['b.bin', 'data', 'main.py', 'out']"
    with pytest.raises(ValueError, match="relative path"):
        run("pass", files={"../escape": "x"})
    with pytest.raises(ValueError, match="relative path"):
        run("pass", files={"/etc/x": "x"})


def test_work_dir_is_removed():
    def leftovers():
        return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rewardjax-sandbox-")}

    before = leftovers()
    res = run("open('made_here', 'w').write('x')\nimport os\nos.chmod('.', 0o500)", timeout_s=5)
    assert res.reason == "ok"
    assert leftovers() <= before


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("RJX_SHOULD_NOT_LEAK", "leak")
    res = run("import os\nprint(sorted(os.environ))")
    assert "RJX_SHOULD_NOT_LEAK" not in res.stdout
    assert eval(res.stdout) == sorted(
        [
            "PATH",
            "LANG",
            "LC_ALL",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONIOENCODING",
            "PYTHONHASHSEED",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
            "HOME",
            "TMPDIR",
        ]
    )


def test_site_packages_only_on_request():
    program = "import numpy\nprint(numpy.arange(4).sum())"
    assert "ModuleNotFoundError" in run(program).stderr
    assert run(program, memory_mb=1024, timeout_s=20, site_packages=True).stdout == "6\n"


def test_invalid_utf8_output_is_replaced():
    res = run("import os\nos.write(1, b'a\\xffb')")
    assert res.stdout == "a\ufffdb"


def test_runs_as_unprivileged_uid():
    res = run("import os\nprint(os.getuid(), os.geteuid(), os.getgroups())")
    uid, euid, groups = res.stdout.split(maxsplit=2)
    assert int(uid) == int(euid) != 0
    assert groups.strip() == "[]"


def test_concurrent_runs_do_not_mix():
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: run(f"print({i} * {i})"), range(16)))
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(16)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout_s"):
        sandbox.run("pass", timeout_s=0, memory_mb=256)
    with pytest.raises(ValueError, match="isolation"):
        sandbox.run("pass", timeout_s=1, memory_mb=256, isolation="docker")


def test_unsandboxed_baseline_runs_the_same_program():
    res = sandbox.run_unsandboxed(
        "import sys\nprint(sys.stdin.read().upper())", stdin="abc", timeout_s=5
    )
    assert (res.stdout, res.reason, res.isolation) == ("ABC\n", "ok", "none")


def test_host_network_check_reads_routes():
    assert isinstance(sandbox.host_has_network(), bool)
