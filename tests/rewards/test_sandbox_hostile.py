"""Hostile programs against rewardjax.rewards.sandbox.

Every program must be contained: the host process survives, nothing outside
the sandbox's temp dir changes, no planted secret leaks into the returned
output, nothing the program started survives the call, no connection reaches
the host, and the call returns within its timeout plus 1 second.
"""

import hashlib
import os
import pathlib
import secrets
import shutil
import socket
import sys
import tempfile
import time

import pytest

from rewardjax.rewards import sandbox

# Sandbox tests share one xdist worker: the hostile suite checks that no
# sandbox process is left, which a concurrent sandbox test would break.
pytestmark = pytest.mark.xdist_group(name="sandbox")

TIMEOUT_S = 0.6
MARK = "rjxmark" + secrets.token_hex(6)
SECRET = "RJXSECRET" + secrets.token_hex(12)


class Host:
    """Secrets, a sentinel directory and listeners planted on the host."""

    def __init__(self):
        # /var/tmp is visible (read-only) inside the box, unlike /tmp.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="rjx-hostile-", dir="/var/tmp"))
        os.chmod(self.dir, 0o755)
        self.secret_file = self.dir / "secret.txt"
        self.secret_file.write_text(SECRET)
        os.chmod(self.secret_file, 0o600)
        self.sentinel = self.dir / "sentinel"
        self.sentinel.mkdir()
        os.chmod(self.sentinel, 0o777)  # world-writable: only the box's read-only view protects it
        for name in ("a.txt", "b.txt"):
            (self.sentinel / name).write_text(f"keep {name}\n")
            os.chmod(self.sentinel / name, 0o666)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.unix_name = "rjx-test-" + secrets.token_hex(6)
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.unix_name)
        self.unix.listen(8)
        self.unix.setblocking(False)

    def placeholders(self) -> dict[str, str]:
        return {
            "SECRET_PATH": str(self.secret_file),
            "SENTINEL": str(self.sentinel),
            "HOSTDIR": str(self.dir),
            "HOST_PID": str(os.getpid()),
            "TCP_PORT": str(self.tcp.getsockname()[1]),
            "UDP_PORT": str(self.udp.getsockname()[1]),
            "UNIX_NAME": self.unix_name,
            "MARK": MARK,
        }

    def snapshot(self) -> dict[str, tuple]:
        out = {}
        for p in sorted(self.dir.rglob("*")):
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            out[str(p)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, digest)
        return out

    def connections(self) -> list[str]:
        got = []
        for name, sock in (("tcp", self.tcp), ("unix", self.unix)):
            try:
                conn, _ = sock.accept()
                conn.close()
                got.append(name)
            except BlockingIOError:
                pass
        try:
            self.udp.recv(65536)
            got.append("udp")
        except BlockingIOError:
            pass
        return got

    def close(self):
        for s in (self.tcp, self.udp, self.unix):
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def host():
    old = os.environ.get("RJX_TEST_SECRET")
    os.environ["RJX_TEST_SECRET"] = SECRET
    h = Host()
    yield h
    h.close()
    if old is None:
        os.environ.pop("RJX_TEST_SECRET", None)
    else:
        os.environ["RJX_TEST_SECRET"] = old


def _sandbox_processes() -> list[str]:
    """Processes of the sandbox's uids, or whose command line holds MARK."""
    found = []
    uids = range(sandbox.UID_BASE, sandbox.UID_BASE + sandbox.UID_SLOTS)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if uid in uids or MARK.encode() in cmdline:
            found.append(f"{pid} uid={uid} {cmdline[:80]!r}")
    return found


def _marked_files(host: Host) -> list[str]:
    roots = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/etc", "/root", "/work", os.getcwd()]
    hits = [str(p) for p in host.dir.rglob(f"*{MARK}*")]
    for root in roots:
        try:
            hits += [os.path.join(root, n) for n in os.listdir(root) if MARK in n]
        except OSError:
            pass
    return hits


# name -> (program, timeout_s). Placeholders in capitals are replaced by Host.placeholders().
HOSTILE = {
    "fork_bomb": """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
""",
    "fork_bomb_exec": """
import subprocess, sys
while True:
    try:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "MARK"])
    except OSError:
        pass
""",
    "memory_bomb": """
chunks = []
while True:
    chunks.append(bytearray(50 * 2**20))
""",
    "memory_bomb_children": """
import os
for _ in range(8):
    if os.fork() == 0:
        x = []
        while True:
            x.append(bytearray(50 * 2**20))
os.wait()
""",
    "mmap_huge": """
import mmap
m = mmap.mmap(-1, 64 * 2**30)
m[0] = 1
""",
    "infinite_loop": "while True:\n    pass\n",
    "sleep_forever": "import time\ntime.sleep(10**6)\n",
    "busy_threads": """
import threading
def spin():
    while True:
        pass
for _ in range(500):
    threading.Thread(target=spin, daemon=True).start()
spin()
""",
    "busy_children": """
import os
for _ in range(16):
    if os.fork() == 0:
        while True:
            pass
while True:
    pass
""",
    "zombie_flood": """
import os
while True:
    try:
        if os.fork() == 0:
            os._exit(0)
    except OSError:
        pass
""",
    "huge_stdout": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "huge_stderr": "import sys\nwhile True:\n    sys.stderr.write('y' * 65536)\n",
    "write_outside": """
for path in ["SENTINEL/MARK", "HOSTDIR/MARK", "/work/MARK", "/etc/MARK", "/root/MARK", "/MARK"]:
    try:
        open(path, "w").write("pwned")
        print("WROTE", path)
    except OSError as e:
        print("denied", path, e.errno)
""",
    "write_world_writable_dirs": """
for path in ["/tmp/MARK", "/var/tmp/MARK", "/dev/shm/MARK", "/run/lock/MARK"]:
    try:
        open(path, "w").write("pwned")
        print("wrote (private)", path)
    except OSError as e:
        print("denied", path, e.errno)
""",
    "modify_sentinel": """
import os
for f in ["SENTINEL/a.txt", "SENTINEL/b.txt"]:
    for act in (lambda: open(f, "a").write("x"), lambda: os.utime(f, (0, 0)),
                lambda: os.chmod(f, 0o777), lambda: os.truncate(f, 0)):
        try:
            act()
        except OSError:
            pass
""",
    "delete_files": """
import os, shutil
for act in (lambda: os.remove("SENTINEL/a.txt"), lambda: shutil.rmtree("SENTINEL"),
            lambda: os.rename("SENTINEL/b.txt", "SENTINEL/c.txt"),
            lambda: os.remove("SECRET_PATH"), lambda: os.rmdir("HOSTDIR")):
    try:
        act()
    except OSError as e:
        print(type(e).__name__, e.errno)
""",
    "fill_disk_big_file": """
with open("big", "wb") as f:
    while True:
        f.write(b"z" * 2**20)
""",
    "fill_disk_many_files": """
i = 0
while True:
    with open("f%d" % i, "w") as f:
        f.write("z" * 8192)
    i += 1
""",
    "fill_disk_tmp": """
import os
i = 0
while True:
    with open("/tmp/fill%d" % i, "wb") as f:
        f.write(b"z" * 4 * 2**20)
    i += 1
""",
    "read_secret_file": "print(open('SECRET_PATH').read())\n",
    "read_secret_symlink": """
import os
os.symlink("SECRET_PATH", "link")
print(open("link").read())
""",
    "read_secret_hardlink": """
import os
os.link("SECRET_PATH", "hard")
print(open("hard").read())
""",
    "chmod_secret": """
import os
os.chmod("SECRET_PATH", 0o644)
print(open("SECRET_PATH").read())
""",
    "read_environment": "import os\nprint(dict(os.environ))\nprint(os.environ.get('RJX_TEST_SECRET'))\n",
    "scan_proc_environ": """
import os
for pid in os.listdir("/proc"):
    for leaf in ("environ", "cmdline"):
        try:
            data = open("/proc/%s/%s" % (pid, leaf), "rb").read()
        except OSError:
            continue
        print(pid, leaf, data[:2000])
""",
    "read_host_proc": """
for leaf in ("environ", "cmdline", "maps", "mem"):
    try:
        print(open("/proc/HOST_PID/" + leaf, "rb").read(4096))
    except OSError as e:
        print("denied", leaf, e.errno)
""",
    "connect_host_tcp": """
import socket
s = socket.create_connection(("127.0.0.1", TCP_PORT), timeout=0.5)
print("CONNECTED")
""",
    "connect_external": """
import socket
for addr in [("1.1.1.1", 53), ("8.8.8.8", 53), ("10.0.0.1", 80)]:
    try:
        socket.create_connection(addr, timeout=0.3)
        print("CONNECTED", addr)
    except OSError as e:
        print("no", addr, e.errno)
""",
    "send_udp_host": """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"SECRET?", ("127.0.0.1", UDP_PORT))
print("SENT")
""",
    "connect_abstract_unix": """
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0UNIX_NAME")
print("CONNECTED")
""",
    "dns_lookup": "import socket\nprint(socket.getaddrinfo('example.com', 80))\n",
    "raw_socket": "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)\nprint('RAW')\n",
    "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')\n",
    "kill_everything": "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('alive')\n",
    "kill_host_pid": """
import os, signal
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.kill(HOST_PID, sig)
    except OSError as e:
        print("denied", e.errno)
""",
    "kill_own_group": "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
    "daemon_double_fork": """
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "MARK"])
    os._exit(0)
print("parent done")
""",
    "daemon_closes_pipes": """
import os, sys
if os.fork() == 0:
    os.setsid()
    for fd in (0, 1, 2):
        os.close(fd)
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "MARK"])
print("parent done")
""",
    "setsid_escape_loop": """
import os
if os.fork() == 0:
    os.setsid()
    while True:
        pass
""",
    "ignore_signals": """
import signal
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
""",
    "stop_self": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n",
    "ctypes_system": """
import ctypes
libc = ctypes.CDLL(None)
print(libc.system(b"touch /tmp/MARK SENTINEL/MARK HOSTDIR/MARK; cat SECRET_PATH"))
""",
    "ctypes_privileges": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("setuid", libc.setuid(0), "setgid", libc.setgid(0))
print("mount", libc.mount(b"none", b"HOSTDIR", b"tmpfs", 0, None))
print("umount", libc.umount2(b"/", 2))
print("chroot", libc.chroot(b"/"))
print("ptrace", libc.ptrace(16, HOST_PID, 0, 0))
print("sethostname", libc.sethostname(b"pwned", 5))
""",
    "user_namespace_escape": """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000 | 0x00020000))
print("mount", libc.mount(b"none", b"SENTINEL", b"tmpfs", 0, None))
try:
    open("SENTINEL/MARK", "w").write("x")
    print("wrote inside own namespace")
except OSError as e:
    print("denied", e.errno)
""",
    "setuid_binary": """
import subprocess
for cmd in (["su", "-c", "cat SECRET_PATH", "root"], ["sudo", "-n", "cat", "SECRET_PATH"]):
    try:
        print(subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=0.5))
    except Exception as e:
        print(type(e).__name__)
""",
    "device_access": """
for dev in ("/dev/vda", "/dev/sda", "/dev/mem", "/dev/kmsg", "/proc/sysrq-trigger", "/proc/sys/kernel/hostname"):
    try:
        open(dev, "wb").write(b"x")
        print("WROTE", dev)
    except OSError as e:
        print("denied", dev, e.errno)
""",
    "open_many_files": """
fs = []
while True:
    fs.append(open("/dev/null"))
""",
    "raise_rlimits": """
import resource
for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE):
    try:
        resource.setrlimit(r, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("RAISED", r)
    except (ValueError, OSError) as e:
        print("denied", r)
while True:
    pass
""",
    "binary_garbage_output": "import os\nos.write(1, bytes(range(256)) * 100)\nos.write(2, b'\\xff\\xfe' * 1000)\n",
    "stack_overflow_crash": """
import sys
sys.setrecursionlimit(10**9)
def f(n):
    return f(n + 1) + 1
f(0)
""",
}

SLOW = {"setuid_binary": 2.0}


def _program(template: str, host: Host) -> str:
    for k, v in host.placeholders().items():
        template = template.replace(k, v)
    return template


def test_suite_is_large_enough():
    assert len(HOSTILE) >= 30


def test_isolation_is_full():
    # The suite's guarantees rely on the namespaces, which need root on Linux.
    assert sandbox.isolation_level() == "ns"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name, host):
    before = host.snapshot()
    timeout = SLOW.get(name, TIMEOUT_S)
    start = time.monotonic()
    res = sandbox.run(_program(HOSTILE[name], host), timeout_s=timeout, memory_mb=256)
    elapsed = time.monotonic() - start

    assert elapsed <= timeout + 1.0, f"{name} took {elapsed:.2f}s"
    assert res.reason != "setup_error", res.stderr
    assert SECRET not in res.stdout and SECRET not in res.stderr
    assert host.snapshot() == before
    assert _marked_files(host) == []
    assert _sandbox_processes() == []
    assert host.connections() == []
    assert (
        "CONNECTED" not in res.stdout and "WROTE" not in res.stdout and "RAISED" not in res.stdout
    )
    assert "RAW" not in res.stdout and "SENT" not in res.stdout
    # The host and the launcher's fork server are still there.
    os.kill(os.getpid(), 0)
    assert sandbox.run("print(7 * 6)", timeout_s=5, memory_mb=256).stdout == "42\n"


def test_program_cannot_reach_network_at_all():
    res = sandbox.run(
        "import socket\nprint(sorted(n for _, n in socket.if_nameindex()))\n"
        "print(open('/proc/net/route').read().splitlines()[1:])\n",
        timeout_s=5,
        memory_mb=256,
    )
    # A fresh network namespace has only a loopback device and no routes.
    assert res.stdout.splitlines() == ["['lo']", "[]"]


def test_host_process_untouched_by_a_storm_of_hostile_runs(host):
    # Several hostile programs at once from threads: all contained, host fine.
    import concurrent.futures

    names = ["fork_bomb", "kill_everything", "daemon_double_fork", "huge_stdout", "memory_bomb"]
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        results = list(
            pool.map(
                lambda n: sandbox.run(
                    _program(HOSTILE[n], host), timeout_s=TIMEOUT_S, memory_mb=256
                ),
                names,
            )
        )
    assert time.monotonic() - start <= TIMEOUT_S + 2.0
    assert all(r.reason != "setup_error" for r in results)
    assert _sandbox_processes() == []
    assert sys.modules["rewardjax.rewards.sandbox"] is sandbox
