"""The sandbox's launcher: isolates, then executes the untrusted program.

Not imported by the library: `sandbox.py` passes this file's source to
`python -S -c <source> serve <socket_fd>`, so it starts fast and imports
builtin modules only. It runs as the calling user (root for full isolation)
as a fork server: each request on the Unix socket carries the launch
arguments and the run's stdin, stdout, stderr and status pipes; the server
forks a launcher for it and replies with the launcher's PID. Forking a warm
process avoids an interpreter start (and the `ctypes` import) per program.

Launch arguments:
  mode uid gid cpu_s as_bytes nproc fsize_bytes nofile tmpfs_mb expose -- program...

Modes:
  ns    unshare mount, network, PID, IPC and UTS namespaces; fork an init
        (PID 1 of the new PID namespace) that makes the whole file tree
        read-only, mounts a fresh /proc and size-capped tmpfs on /tmp and
        /dev/shm, copies the work directory into /tmp/sandbox, and forks the
        program with rlimits under an unprivileged uid. When the program exits,
        init exits, and the kernel kills everything left in the PID namespace
        before init is reaped: nothing survives the launcher. `expose` lists
        the Python installation's directories (os.pathsep-separated): when an
        ancestor of one is closed to others (e.g. /root, a 0700 temp dir), that
        ancestor is covered by an empty read-only tmpfs holding only bind
        mounts of the installations at their own paths.
  plain no namespaces: fork the program with rlimits, as `uid` when root.

The status pipe is file descriptor 3 of a launcher. Lines written to it:
  init <pid>                      host PID of the namespace's init (ns mode)
  exit <code> <signal> <cpu_s> <maxrss_kb>
  setup_error <message>
SIGTERM to a launcher kills the run (the whole PID namespace in ns mode).
"""

import ctypes
import os
import resource
import signal
import socket
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SYS_MOUNT_SETATTR = 442  # same number on every architecture (added in Linux 5.12)
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
FALLBACK_UID = 65534  # nobody: used when the per-run uid is not mapped (containers)
STATUS_FD = 3

LIBC = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    def enc(s):
        return None if s is None else s.encode()

    check(
        LIBC.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def report(line):
    try:
        os.write(STATUS_FD, (line + "\n").encode())
    except OSError:
        pass


def make_tree_read_only():
    """Every mount read-only and nosuid, recursively; per-mount remount if needed."""
    attr = MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    ret = LIBC.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(-100),  # AT_FDCWD
        b"/",
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if ret == 0:
        return
    # Kernels before 5.12: remount each mount point read-only, keeping its flags.
    keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    for line in lines:
        parts = line.split()
        target = parts[4].encode().decode("unicode_escape")
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
        for opt in parts[5].split(","):
            flags |= keep.get(opt, 0)
        try:
            mount(None, target, None, flags)
        except OSError:
            if target == "/":
                raise


def expose_installations(prefixes):
    """Makes each prefix reachable for any uid, hiding the rest of closed ancestors.

    For every prefix below a directory others cannot enter (e.g. /root, or a
    0700 temp dir holding a virtualenv), that ancestor is covered by an empty
    read-only tmpfs holding bind mounts of the prefixes at their own paths.
    """
    covers = {}  # blocked ancestor -> [(prefix, O_PATH fd)]
    for prefix in prefixes:
        path = ""
        for comp in prefix.strip("/").split("/"):
            path += "/" + comp
            if not os.stat(path).st_mode & 0o001:
                covers.setdefault(path, []).append((prefix, os.open(prefix, os.O_PATH)))
                break
    for blocked, entries in covers.items():
        mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for prefix, fd in entries:
            os.makedirs(prefix, 0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", prefix, None, MS_BIND | MS_REC)
            os.close(fd)
        mount(None, blocked, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def copy_tree(src, dst, uid, gid):
    """Copy the work directory (files only, no links) and hand it to `uid`."""
    os.mkdir(dst, 0o700)
    os.chown(dst, uid, gid)
    for entry in os.scandir(src):
        s = os.path.join(src, entry.name)
        d = os.path.join(dst, entry.name)
        if entry.is_dir(follow_symlinks=False):
            copy_tree(s, d, uid, gid)
        elif entry.is_file(follow_symlinks=False):
            with open(s, "rb") as fin:
                data = fin.read()
            fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.chown(d, uid, gid)


def drop_privileges(uid, gid):
    if os.geteuid() != 0:
        return
    os.setgroups([])
    try:
        os.setgid(gid)
        os.setuid(uid)
    except OSError:
        os.setgid(FALLBACK_UID)
        os.setuid(FALLBACK_UID)


def exec_program(argv, limits, uid, gid):
    cpu_s, as_bytes, nproc, fsize, nofile = limits
    os.set_inheritable(STATUS_FD, False)  # closed by a successful exec
    # The soft CPU limit sends SIGXCPU (reported as "cpu_limit"); the hard one kills.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # RLIMIT_NPROC counts every process of the real uid, so it means something
    # only with a per-run uid (and root ignores it); the caller passes 0 otherwise.
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    drop_privileges(uid, gid)
    LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.execve(argv[0], argv, os.environ)


def fork_program_and_wait(argv, limits, uid, gid):
    """Fork the program, reap every child until it exits, report its status."""
    pid = os.fork()
    if pid == 0:
        try:
            exec_program(argv, limits, uid, gid)
        except BaseException as e:
            report(f"setup_error cannot start the program: {e}")
        os._exit(127)
    while True:
        try:
            wpid, status, ru = os.wait4(-1, 0)
        except ChildProcessError:
            return
        if wpid == pid:
            break
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    cpu = ru.ru_utime + ru.ru_stime
    report(f"exit {code} {sig} {cpu:.4f} {ru.ru_maxrss}")


def run_init(argv, limits, uid, gid, tmpfs_mb, expose):
    """PID 1 of the new PID namespace (still root inside the namespaces)."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    make_tree_read_only()
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    if expose != "-":
        expose_installations(expose.split(os.pathsep))
    opts = f"size={tmpfs_mb}m,nr_inodes=4096,mode=1777"
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts)
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    # The launcher's cwd is the host work directory, still reachable as "."
    # although /tmp is now covered.
    copy_tree(".", "/tmp/sandbox", uid, gid)
    os.chdir("/tmp/sandbox")
    LIBC.sethostname(b"sandbox", 7)
    fork_program_and_wait(argv, limits, uid, gid)


def launch(args):
    """One run: the launcher's body (never returns)."""
    sep = args.index("--")
    mode = args[0]
    uid, gid, cpu_s, as_bytes, nproc, fsize, nofile, tmpfs_mb = map(int, args[1:9])
    expose = args[9]
    argv = args[sep + 1 :]
    limits = (cpu_s, as_bytes, nproc, fsize, nofile)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if mode == "plain":
        try:
            fork_program_and_wait(argv, limits, uid, gid)
        except BaseException as e:
            report(f"setup_error {e}")
        os._exit(0)
    try:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        check(LIBC.unshare(flags), "unshare")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except BaseException as e:
        report(f"setup_error {e}")
        os._exit(0)
    init_pid = os.fork()
    if init_pid == 0:
        try:
            run_init(argv, limits, uid, gid, tmpfs_mb, expose)
        except BaseException as e:
            report(f"setup_error {e}")
        os._exit(0)
    report(f"init {init_pid}")

    # SIGTERM from the caller (wall-clock timeout): kill init, which takes the
    # whole PID namespace down; wait4 below returns once it is empty.
    def on_term(signum, frame):
        try:
            os.kill(init_pid, signal.SIGKILL)
        except OSError:
            pass  # init has already exited and been reaped

    signal.signal(signal.SIGTERM, on_term)
    try:
        os.wait4(init_pid, 0)
    except ChildProcessError:
        pass
    os._exit(0)


def serve(sock_fd):
    """Fork server: one launcher per request, until the socket closes."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    sock = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # launchers are reaped automatically
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        except OSError:
            break
        if not msg:
            break
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            sock.send(b"error: expected 4 file descriptors")
            continue
        fields = msg.decode().split("\0")
        cwd, n_env = fields[0], int(fields[1])
        env = dict(kv.split("=", 1) for kv in fields[2 : 2 + n_env])
        args = fields[2 + n_env :]
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            sock.send(f"error: {e}".encode())
            continue
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setsid()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                os.closerange(4, 1 << 16)
                os.chdir(cwd)
                os.environ.clear()
                os.environ.update(env)
                launch(args)
            except BaseException as e:
                report(f"setup_error {e}")
            os._exit(0)
        for fd in fds:
            os.close(fd)
        sock.send(str(pid).encode())
    os._exit(0)


if __name__ == "__main__":  # run as `python -c <source> serve <fd>`; importing does nothing
    serve(int(sys.argv[2]))
