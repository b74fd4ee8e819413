"""Run untrusted Python programs in a box.

`run(program, stdin=..., timeout_s=..., memory_mb=...)` executes one program
in its own process and returns what it printed and how it ended. Isolation
(design decision 10), when running as root on Linux:

- new mount, network, PID, IPC and UTS namespaces: no network interface but a
  downed loopback, no view of host processes (a fresh /proc), the whole file
  tree read-only, size-capped tmpfs on /tmp (holding the private work
  directory) and /dev/shm;
- the program runs as a per-run unprivileged uid (so RLIMIT_NPROC counts its
  processes only and host files with owner-only permissions stay unreadable)
  with `no_new_privs`;
- rlimits: CPU seconds, address space, processes, file size, open files, no
  core dumps;
- a scrubbed environment, closed stdin (or the given text), stdout/stderr
  capped (the run is stopped once a cap is exceeded);
- a wall-clock kill of the whole PID namespace, which the kernel empties
  before the call returns: nothing the program started survives it.

Programs run under the base Python interpreter with the standard library only
(`python -S`), unless `site_packages=True`. A fork server (one per process,
started on first use) forks a launcher per run, so a run costs one
interpreter start, as an unsandboxed `subprocess.run` does.

Without root or namespaces (`isolation="plain"`) the program still gets the
rlimits, a private work directory, the scrubbed environment and a wall-clock
kill of its process group, and a warning says what is missing (network,
file-system and process isolation).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import queue
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings

_LAUNCHER_SOURCE = (pathlib.Path(__file__).with_name("_sandbox_launcher.py")).read_text()

# Per-run uids: distinct uids keep RLIMIT_NPROC per run (it counts all
# processes of a uid) and make `kill(-1)` by one program miss the others.
UID_BASE = 1_500_000
UID_SLOTS = 256

_SCRUBBED_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONHASHSEED": "0",
    # One BLAS/OpenMP thread: threads count against RLIMIT_NPROC and RLIMIT_AS.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """How one sandboxed program ended.

    Attributes:
      stdout: decoded standard output (UTF-8, invalid bytes replaced), capped.
      stderr: decoded standard error, capped.
      exit_code: the program's exit status; -N when killed by signal N.
      timed_out: the wall-clock limit was reached and the run was killed.
      reason: "ok" (exit 0), "error" (non-zero exit), "timeout", "cpu_limit",
        "output_limit", "signal" (killed by another signal) or "setup_error"
        (the box could not be built; stderr says why).
      wall_s: wall-clock seconds of the call.
      cpu_s: CPU seconds of the program (NaN when unknown).
      isolation: "ns" or "plain".
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    reason: str
    wall_s: float
    cpu_s: float
    isolation: str

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


class _UidPool:
    def __init__(self, base: int, n: int):
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(n):
            self._free.put(base + i)

    def acquire(self) -> int:
        return self._free.get()

    def release(self, uid: int) -> None:
        self._free.put(uid)


_UIDS = _UidPool(UID_BASE, UID_SLOTS)
_ISOLATION: str | None = None
_ISOLATION_LOCK = threading.Lock()


def isolation_level() -> str:
    """The strongest isolation this host allows: "ns" or "plain" (probed once).

    "ns" needs Linux, root (CAP_SYS_ADMIN) and unshare not blocked by a
    seccomp filter. Otherwise a warning is issued once and, if the host has a
    network route, a second warning says that sandboxed programs can reach it.

    Raises:
      RuntimeError: not even "plain" can run a program (e.g. root without
        namespaces, and a Python installation unprivileged uids cannot read).
    """
    global _ISOLATION
    with _ISOLATION_LOCK:
        if _ISOLATION is not None:
            return _ISOLATION
        why = "not running as root"
        if sys.platform.startswith("linux") and os.geteuid() == 0:
            probe = _run("print(6 * 7)", "", 10.0, None, "ns", _Limits.default(10.0))
            if probe.reason == "ok" and probe.stdout.strip() == "42":
                _ISOLATION = "ns"
                return _ISOLATION
            why = f"namespaces unavailable ({probe.stderr.strip()[-200:]})"
        probe = _run("print(6 * 7)", "", 10.0, None, "plain", _Limits.default(10.0))
        if probe.reason != "ok" or probe.stdout.strip() != "42":
            raise RuntimeError(
                f"rewardjax sandbox: cannot run programs ({why}; without namespaces: "
                f"{probe.stderr.strip()[-300:]}). Running as root without namespaces needs a "
                f"Python installation that unprivileged users can read ({_PYTHON})."
            )
        warnings.warn(
            "rewardjax sandbox: "
            + why
            + "; running programs with rlimits, a private work dir, a scrubbed "
            "environment and a process-group kill only: no network, file-system "
            "or process isolation.",
            RuntimeWarning,
            stacklevel=2,
        )
        if host_has_network():
            warnings.warn(
                "rewardjax sandbox: this host has a network route and sandboxed "
                "programs are not in a network namespace: they can reach the network.",
                RuntimeWarning,
                stacklevel=2,
            )
        _ISOLATION = "plain"
        return _ISOLATION


def host_has_network() -> bool:
    """True when the current network namespace has a non-loopback route."""
    try:
        with open("/proc/net/route") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return True  # cannot tell: assume the worst
    return any(row.split()[0] != "lo" for row in rows if row.strip())


@dataclasses.dataclass(frozen=True)
class _Limits:
    cpu_s: int
    memory_mb: int
    max_processes: int
    max_file_mb: int
    max_open_files: int
    max_output_bytes: int
    tmpfs_mb: int

    @classmethod
    def default(cls, timeout_s: float) -> _Limits:
        return cls(math.ceil(timeout_s), 512, 32, 16, 64, 1 << 20, 64)


def run(
    program: str,
    *,
    stdin: str = "",
    timeout_s: float,
    memory_mb: int,
    files: dict[str, str | bytes] | None = None,
    cpu_s: int | None = None,
    max_processes: int = 32,
    max_file_mb: int = 16,
    max_open_files: int = 64,
    max_output_bytes: int = 1 << 20,
    tmpfs_mb: int = 64,
    site_packages: bool = False,
    isolation: str | None = None,
) -> SandboxResult:
    """Runs a Python program in a sandbox and returns its output and status.

    Args:
      program: Python source, run as `main.py` in a private work directory.
      stdin: text fed to standard input, which is then closed ("" = closed at once).
      timeout_s: wall-clock limit; the whole process tree is killed when it
        passes, and the call returns within about a second of it.
      memory_mb: address-space limit (RLIMIT_AS) of each process.
      files: extra files for the work directory, {relative path: content}.
      cpu_s: CPU-seconds limit (RLIMIT_CPU); default ceil(timeout_s).
      max_processes: RLIMIT_NPROC (processes and threads of the run's uid);
        enforced only with a per-run uid, i.e. when running as root.
      max_file_mb: largest file the program may write (RLIMIT_FSIZE).
      max_open_files: RLIMIT_NOFILE.
      max_output_bytes: cap on each of stdout and stderr; exceeding it stops
        the run with reason "output_limit".
      tmpfs_mb: size of the private /tmp holding the work directory ("ns").
      site_packages: run the program with this environment's interpreter and
        its site-packages (numpy, ...); by default it gets the standard
        library only (`python -S`), which also starts faster. The box mounts
        a private /tmp and hides /root, so an environment living there is not
        visible to the program.
      isolation: "ns", "plain" or None for `isolation_level()`.

    Returns:
      A `SandboxResult`.
    """
    if timeout_s <= 0:
        raise ValueError(f"sandbox.run: timeout_s must be > 0, got {timeout_s}")
    level = isolation or isolation_level()
    if level not in ("ns", "plain"):
        raise ValueError(f"sandbox.run: isolation must be 'ns' or 'plain', got {level!r}")
    limits = _Limits(
        cpu_s=cpu_s if cpu_s is not None else max(1, math.ceil(timeout_s)),
        memory_mb=memory_mb,
        max_processes=max_processes,
        max_file_mb=max_file_mb,
        max_open_files=max_open_files,
        max_output_bytes=max_output_bytes,
        tmpfs_mb=tmpfs_mb,
    )
    return _run(program, stdin, timeout_s, files, level, limits, site_packages)


def run_unsandboxed(program: str, *, stdin: str = "", timeout_s: float) -> SandboxResult:
    """Runs a program as a plain subprocess, with no isolation (benchmark baseline)."""
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="rewardjax-plain-")
    try:
        pathlib.Path(workdir, "main.py").write_text(program)
        try:
            p = subprocess.run(
                [_PYTHON, *_PYTHON_FLAGS, "main.py"],
                input=stdin.encode(),
                capture_output=True,
                cwd=workdir,
                timeout=timeout_s,
            )
            code, out, err, reason = p.returncode, p.stdout, p.stderr, None
        except subprocess.TimeoutExpired as e:
            code, out, err, reason = -9, e.stdout or b"", e.stderr or b"", "timeout"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if reason is None:
        reason = "ok" if code == 0 else "error"
    return SandboxResult(
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        exit_code=code,
        timed_out=reason == "timeout",
        reason=reason,
        wall_s=time.monotonic() - start,
        cpu_s=float("nan"),
        isolation="none",
    )


# The base interpreter, not the virtualenv's link to it: with -S the venv adds
# nothing, and the launcher must expose the real installation to the program.
_PYTHON = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
_PYTHON_PREFIX = os.path.realpath(sys.base_prefix)
if not _PYTHON.startswith(_PYTHON_PREFIX + os.sep):
    _PYTHON_PREFIX = os.path.dirname(os.path.dirname(_PYTHON))


def _exposed_prefixes(site_packages: bool) -> list[str]:
    """The installation the program runs from: the base interpreter, plus the
    virtualenv (which may sit in a directory only its owner can enter)."""
    prefixes = [_PYTHON_PREFIX]
    venv = os.path.realpath(sys.prefix)
    if site_packages and not (venv + os.sep).startswith(_PYTHON_PREFIX + os.sep):
        prefixes.append(venv)
    return prefixes


# -S: no site-packages (stdlib only; faster start), -E: ignore PYTHON* vars,
# -s: no user site, -B: no .pyc writes.
_PYTHON_FLAGS = ("-S", "-E", "-s", "-B")


def _write_files(workdir: str, program: str, files: dict[str, str | bytes] | None) -> None:
    root = pathlib.Path(workdir)
    root.joinpath("main.py").write_text(program, encoding="utf-8")
    for name, content in (files or {}).items():
        rel = pathlib.PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(
                f"sandbox.run: file name {name!r} must be a relative path inside the work dir"
            )
        path = root.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _chown_tree(path: str, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def _remove_tree(path: str) -> None:
    def onerror(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


class _ForkServer:
    """The launcher's fork server (see `_sandbox_launcher.py`), started on first use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._owner = -1

    def spawn(self, cwd: str, env: dict[str, str], args: list[str], fds: list[int]) -> int:
        """Starts one launcher with `fds` as its stdin, stdout, stderr and status; returns its PID."""
        fields = [cwd, str(len(env)), *(f"{k}={v}" for k, v in env.items()), *args]
        msg = "\0".join(fields).encode()
        with self._lock:
            for _ in range(2):
                if self._sock is None or self._owner != os.getpid():
                    self._start()
                try:
                    socket.send_fds(self._sock, [msg], fds)
                    reply = self._sock.recv(4096)
                except OSError:
                    reply = b""
                if reply.startswith(b"error"):
                    raise OSError(f"sandbox launcher: {reply.decode()}")
                if reply:
                    return int(reply)
                self._close()  # the server died: start a new one and retry once
        raise OSError("sandbox launcher: the fork server does not answer")

    def _start(self) -> None:
        if self._owner == os.getpid():
            self._close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [
                _PYTHON,
                "-S",
                "-E",
                "-s",
                "-B",
                "-c",
                _LAUNCHER_SOURCE,
                "serve",
                str(theirs.fileno()),
            ],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=dict(_SCRUBBED_ENV),
            close_fds=True,
            start_new_session=True,
        )
        theirs.close()
        self._sock, self._owner = ours, os.getpid()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the server exits on end of file
        if self._proc is not None:
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._sock = self._proc = None


_FORK_SERVER = _ForkServer()


def _run(
    program: str,
    stdin: str,
    timeout_s: float,
    files: dict[str, str | bytes] | None,
    level: str,
    limits: _Limits,
    site_packages: bool = False,
) -> SandboxResult:
    start = time.monotonic()
    deadline = start + timeout_s
    is_root = os.geteuid() == 0
    uid = _UIDS.acquire() if is_root else os.getuid()
    gid = uid if is_root else os.getgid()
    workdir = tempfile.mkdtemp(prefix="rewardjax-sandbox-")
    fds: list[int] = []
    try:
        _write_files(workdir, program, files)
        if is_root and level == "plain":
            _chown_tree(workdir, uid)  # "ns" copies the dir into its tmpfs as root
        home = "/tmp/sandbox" if level == "ns" else workdir
        env = dict(_SCRUBBED_ENV, HOME=home, TMPDIR="/tmp" if level == "ns" else workdir)
        if stdin:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), -1
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        st_r, st_w = os.pipe()
        fds = [in_r, in_w, out_r, out_w, err_r, err_w, st_r, st_w]
        args = [
            level,
            str(uid),
            str(gid),
            str(limits.cpu_s),
            str(limits.memory_mb << 20),
            str(limits.max_processes if is_root else 0),
            str(limits.max_file_mb << 20),
            str(limits.max_open_files),
            str(limits.tmpfs_mb),
            os.pathsep.join(_exposed_prefixes(site_packages)),
            "--",
            *((sys.executable, "-E", "-s", "-B") if site_packages else (_PYTHON, *_PYTHON_FLAGS)),
            "main.py",
        ]
        launcher = _FORK_SERVER.spawn(workdir, env, args, [in_r, out_w, err_w, st_w])
        for fd in (in_r, out_w, err_w, st_w, in_w):
            if fd != in_w:
                os.close(fd)
            fds.remove(fd)  # in_w: _communicate closes it once stdin is written
        out, err, status, how = _communicate(
            launcher,
            level,
            uid if is_root else None,
            stdin.encode(),
            in_w,
            out_r,
            err_r,
            st_r,
            deadline,
            limits.max_output_bytes,
        )
        if level == "plain":
            # Without a PID namespace, processes that closed their pipes (a
            # daemon, say) would outlive the run.
            _killpg(launcher)
            if is_root:
                _kill_uid(uid)
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        _remove_tree(workdir)
        if is_root:
            _UIDS.release(uid)
    return _result(out, err, status, how, level, limits, time.monotonic() - start)


def _communicate(launcher, level, uid, stdin_bytes, in_w, out_r, err_r, st_r, deadline, cap):
    """Feeds stdin and drains stdout, stderr and status until the launcher is done.

    Ends when all three pipes reach end of file (the launcher and everything
    it started have exited), at the deadline, or once an output exceeds `cap`.
    """
    sel = selectors.DefaultSelector()
    bufs = {out_r: bytearray(), err_r: bytearray(), st_r: bytearray()}
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin_bytes)
    if in_w >= 0:
        os.set_blocking(in_w, False)
        sel.register(in_w, selectors.EVENT_WRITE)
    open_reads = set(bufs)
    how = None
    exited_at = None
    try:
        while open_reads:
            now = time.monotonic()
            if now >= deadline:
                # A run that ended just in time (or while this thread was not
                # scheduled) has everything in its pipes already: read it first.
                for fd in list(open_reads):
                    if _drain(fd, bufs[fd], (1 << 16) if fd == st_r else cap):
                        open_reads.discard(fd)
                if open_reads:
                    how = "timeout"
                break
            # "plain": the program exited but something it started may hold a
            # pipe open. ("ns": the kernel kills everything when init exits.)
            if level == "plain" and exited_at is None and b"exit " in bufs[st_r]:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                _drain(out_r, bufs[out_r], cap)
                _drain(err_r, bufs[err_r], cap)
                break
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                fd = key.fd
                if fd == in_w:
                    try:
                        pending = pending[os.write(fd, pending[:65536]) :]
                    except BlockingIOError:
                        continue
                    except OSError:  # the program closed its stdin
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        os.close(in_w)
                        in_w = -1
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    open_reads.discard(fd)
                    continue
                buf = bufs[fd]
                room = (1 << 16 if fd == st_r else cap) - len(buf)
                buf += chunk[: max(room, 0)]
                if len(chunk) > room and fd != st_r:
                    how = "output_limit"
            if how is not None:
                break
        if open_reads:
            _stop(launcher, level, uid, st_r, bufs[st_r])
    finally:
        sel.close()
        if in_w >= 0:
            os.close(in_w)
    return bytes(bufs[out_r]), bytes(bufs[err_r]), bufs[st_r].decode("utf-8", "replace"), how


def _drain(fd: int, buf: bytearray, cap: int) -> bool:
    """Reads what a non-blocking pipe holds now, keeping at most `cap` bytes; True at end of file."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return False
        if not chunk:
            return True
        buf += chunk[: max(cap - len(buf), 0)]


def _stop(launcher: int, level: str, uid: int | None, st_r: int, status: bytearray) -> None:
    """Kills a run and waits until its launcher has exited (status pipe at end of file)."""
    if level == "ns":
        # The launcher kills init; the kernel then empties the PID namespace
        # before the launcher's wait returns and it exits.
        _signal(launcher, signal.SIGTERM)
        if _wait_eof(st_r, status, 1.0):
            return
    _killpg(launcher)
    if level == "plain" and uid is not None:
        _kill_uid(uid)
    _wait_eof(st_r, status, 1.0)


def _wait_eof(fd: int, buf: bytearray, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < end:
            if not sel.select(timeout=end - time.monotonic()):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return True
            buf += chunk
    return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int) -> None:
    """Kills every process of `uid`, including ones that left the group with setsid()."""
    # kill(-1) from a process with the run's uid reaches exactly that uid's
    # processes. `kill` is a small binary any uid can execute (the Python
    # installation may not be).
    kill = shutil.which("kill", path="/usr/bin:/bin") or "/bin/kill"
    subprocess.run(
        [kill, "-s", "KILL", "--", "-1"],
        user=uid,
        group=uid,
        extra_groups=[],
        env={},
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _result(out, err, status, how, level, limits, wall_s) -> SandboxResult:
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    cpu = float("nan")
    code = None
    setup_error = None
    for line in status.splitlines():
        if line.startswith("setup_error") and setup_error is None:
            setup_error = line[len("setup_error ") :]
        if line.startswith("exit "):
            _, ecode, esig, ecpu, _ = line.split()
            code = -int(esig) if int(esig) else int(ecode)
            cpu = float(ecpu)
    if setup_error is not None and code is None:
        # The program never ran (an exit report means it did).
        return SandboxResult(
            stdout=stdout,
            stderr=stderr + "\nsandbox setup error: " + setup_error,
            exit_code=126,
            timed_out=False,
            reason="setup_error",
            wall_s=wall_s,
            cpu_s=cpu,
            isolation=level,
        )
    if how is None:
        if code is None:
            how, code = "signal", -signal.SIGKILL  # the launcher died without a report
        elif code == 0:
            how = "ok"
        elif code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= limits.cpu_s):
            how = "cpu_limit"
        elif code < 0:
            how = "signal"
        else:
            how = "error"
    if how == "timeout" or code is None:
        code = -signal.SIGKILL
    return SandboxResult(
        stdout=stdout,
        stderr=stderr,
        exit_code=code,
        timed_out=how == "timeout",
        reason=how,
        wall_s=wall_s,
        cpu_s=cpu,
        isolation=level,
    )
