"""Process plumbing shared by the test-server launchers (Orthanc, tiny-pacs).

Rules every launcher follows, enforced here once:

- everything listens on and is reached at 127.0.0.1 only: wildcard binds are rewritten to
  loopback by the LD_PRELOAD shim ``loopback-bind.c`` (compiled on demand with gcc), and
  HTTP helpers ignore proxy environment variables;
- a server runs in its own session (``start_new_session=True``) and is stopped by ITS OWN
  PID only: SIGTERM, then SIGKILL after a grace period. The ``Popen`` object is kept until
  the process is reaped, so the PID cannot be reused by another process meanwhile.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import requests

LOOPBACK = "127.0.0.1"
SHIM_SOURCE = Path(__file__).with_name("loopback-bind.c")
GCC_HINT = "sudo apt-get install -y gcc"

S = TypeVar("S", bound="ServerProcess")


class MissingDependency(RuntimeError):
    """A program a launcher needs is not installed; the message says how to install it."""


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_session() -> requests.Session:
    """A requests session for local servers: never goes through a proxy from the env."""
    session = requests.Session()
    session.trust_env = False
    return session


def log_tail(path: Path, lines: int = 30) -> str:
    """Last `lines` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def default_cache_dir() -> Path:
    """Per-user cache for the compiled shim when no pytest cache is at hand."""
    path = Path(tempfile.gettempdir()) / f"dcmweb-test-support-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise RuntimeError(f"{path} is not a private directory of this user; remove it")
    return path


def compile_shim(cache_dir: Path | None = None) -> Path:
    """Compile loopback-bind.c into `cache_dir` (once per source content) and return the .so.

    The file name carries a hash of the source, and the library is rebuilt when the source
    is newer, so an edited shim is never served stale. The build goes to a temporary name
    and is renamed into place, so parallel test processes never load a half-written file.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    source = SHIM_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    target = cache / f"loopback-bind-{digest}.so"
    if target.exists() and target.stat().st_mtime >= SHIM_SOURCE.stat().st_mtime:
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise MissingDependency(
            f"gcc is missing (needed to build the loopback-only bind shim): run '{GCC_HINT}'"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=".loopback-bind-", suffix=".so", dir=cache)
    os.close(fd)
    try:
        result = subprocess.run(
            [gcc, "-shared", "-fPIC", "-O2", "-o", tmp_name, str(SHIM_SOURCE), "-ldl"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerStartError(f"gcc failed to build {SHIM_SOURCE}:\n{result.stderr}")
        os.replace(tmp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return target


def stop_process(
    proc: subprocess.Popen[bytes], grace: float = 10.0, *, signalled: bool = False
) -> None:
    """Stop one process that we started: SIGTERM to its PID, SIGKILL after `grace` s.

    Only `proc.pid` is signalled (never its group, never by name). The process is reaped.
    `signalled=True` skips the SIGTERM (already sent).
    """
    if proc.poll() is not None:
        return
    if not signalled:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


_background_stops: list[threading.Thread] = []
_background_lock = threading.Lock()


def stop_in_background(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM `proc` now; wait for it (and SIGKILL after `grace` s) in a thread.

    Orthanc takes about 2 s to shut down; per-test servers should not make every test
    wait for that. `wait_for_background_stops()` (also run at exit) joins the threads.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    thread = threading.Thread(
        target=stop_process,
        args=(proc, grace),
        kwargs={"signalled": True},
        name=f"stop-pid-{proc.pid}",
        daemon=True,
    )
    thread.start()
    with _background_lock:
        _background_stops.append(thread)


def wait_for_background_stops() -> None:
    """Block until every process handed to stop_in_background() has exited."""
    with _background_lock:
        threads = list(_background_stops)
        _background_stops.clear()
    for thread in threads:
        thread.join()


atexit.register(wait_for_background_stops)


def _decode_addr(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by `pid` (Linux /proc)."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)  # header
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A = TCP_LISTEN
                    addr, port = local.rsplit(":", 1)
                    found.append((_decode_addr(addr), int(port, 16)))
    return sorted(set(found))


class ServerProcess:
    """A local server process in `workdir`, listening on a free loopback port.

    Subclasses set `name`, `ready_path`, `ready_statuses` and implement `_prepare`, which
    writes the configuration for `self.port` and returns the command line. Use as a context
    manager, or call `start()` and `stop()`.
    """

    name = "server"
    ready_path = "/"
    ready_statuses: Collection[int] = (200,)
    start_attempts = 3

    def __init__(
        self,
        workdir: Path,
        *,
        cache_dir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.cache_dir = cache_dir
        self.startup_timeout = startup_timeout
        self.port = 0
        self.startup_seconds: float | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- to implement -----------------------------------------------------------------
    def _prepare(self) -> Sequence[str]:
        """Write the configuration for `self.port`; return the command line to run."""
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """http://127.0.0.1:PORT (no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        """PID of the server (also after stop(), so tests can check that it is gone)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self: S, *, port: int | None = None) -> S:
        """Start the server on a free port, or on ``port``: a restart on the port of a
        server stopped or killed before (same workdir, same data), whose clients keep
        its URL. A given port another process took fails the start."""
        if self._finalizer is not None:
            raise RuntimeError(f"{self.name} already started (pid {self.pid})")
        shim = compile_shim(self.cache_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.start_attempts + 1):
            self.port = port or free_port()
            argv = list(self._prepare())
            env = dict(os.environ)
            env["LD_PRELOAD"] = " ".join(p for p in (str(shim), env.get("LD_PRELOAD")) if p)
            started = time.monotonic()
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    start_new_session=True,
                )
            self._proc = proc
            self._finalizer = weakref.finalize(self, stop_process, proc)
            try:
                self._wait_ready(proc)
            except ServerStartError:
                self.stop()
                raise
            if proc.poll() is None and self._owns_port(proc.pid):
                self.startup_seconds = time.monotonic() - started
                return self
            # Someone else grabbed the port between free_port() and our bind: try another.
            self.stop()
            if attempt == self.start_attempts or port:
                times = "" if port else f" {self.start_attempts} times in a row"
                raise ServerStartError(
                    f"{self.name}: port {self.port} taken by another process{times}; "
                    f"log {self.log_path}:\n" + log_tail(self.log_path)
                )
        raise AssertionError("unreachable")

    def stop(self, *, wait: bool = True) -> None:
        """SIGTERM to our own PID, SIGKILL after 10 s; idempotent.

        With `wait=False` it returns right after the SIGTERM and the process is reaped in
        the background (see stop_in_background); the port and PID are not reused meanwhile.
        """
        proc, finalizer = self._proc, self._finalizer
        self._finalizer = None
        if finalizer is None or proc is None:
            return
        if wait:
            finalizer()  # runs stop_process(proc) once
        else:
            finalizer.detach()
            stop_in_background(proc)

    def kill(self) -> None:
        """SIGKILL to our own PID, as a crash (nothing answered, flushed or closed
        cleanly), and reap it; ``start(port=self.port)`` brings it back on the same URL."""
        proc, finalizer = self._proc, self._finalizer
        self._finalizer = None
        if finalizer is None or proc is None:
            return
        finalizer.detach()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def __enter__(self: S) -> S:
        if self._finalizer is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        pid = self._proc.pid if self._proc else None
        return f"<{type(self).__name__} {self.root_url} pid={pid} {state}>"

    # -- internals --------------------------------------------------------------------
    def _owns_port(self, pid: int) -> bool:
        try:
            return any(port == self.port for _, port in listening_sockets(pid))
        except OSError:  # no /proc (not Linux): trust the readiness probe
            return True

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        url = self.root_url + self.ready_path
        deadline = time.monotonic() + self.startup_timeout
        with http_session() as session:
            while True:
                if proc.poll() is not None:
                    if port_open(self.port):
                        return  # lost the port race; start() notices and retries
                    raise ServerStartError(
                        f"{self.name} exited with status {proc.returncode} during startup; "
                        f"log {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                try:
                    status = session.get(url, timeout=2).status_code
                except requests.RequestException:
                    status = None
                if status in self.ready_statuses:
                    return
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"{self.name} (pid {proc.pid}) gave no ready answer on {url} within "
                        f"{self.startup_timeout:.0f} s (last status {status}); "
                        f"log {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                time.sleep(0.02)
