"""Run one measured child process: wall time, CPU time (user+sys) and peak RSS.

Every client runs in its own process, reaped with os.wait4, so the kernel's own
accounting of that process (ru_utime + ru_stime, ru_maxrss) is what is reported:
the same for the dcmweb command, a library script, and curl.

Peak RSS comes from GNU time (/usr/bin/time -f %M), which forks the client from its own
small process: a child forked straight from this (large) Python process would inherit
its high-water mark in ru_maxrss. CPU comes from wait4 on the time process (its own
share is about a millisecond).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    """A progress line of the harness on stderr, with the time."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
BIN = Path(sys.executable).parent
GNU_TIME = "/usr/bin/time"


@dataclass
class Sample:
    """One repetition of one client in one case."""

    wall: float  # seconds: the whole process, or the work alone for library scripts
    cpu: float  # user+sys seconds of the measured process(es)
    rss_mb: float  # peak resident set size of the largest process, MiB
    ok: bool = True
    note: str = ""
    process_wall: float = 0.0  # the whole process (start-up included)
    process_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Proc:
    returncode: int
    wall: float
    cpu: float
    rss_mb: float
    stderr_tail: str


def child_env() -> dict[str, str]:
    """The environment for clients: no proxy settings (every server is on 127.0.0.1)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("DCMWEB_HOST", None)
    env.pop("DCMWEB_WORKERS", None)
    return env


def run(argv: list[str], *, stdout: Path | None = None, stderr: Path | None = None,
        cwd: Path | None = None, timeout: float = 600.0) -> Proc:
    """Run argv to completion; return its wall time and the kernel's accounting of it."""
    rss_file = Path(tempfile.mkstemp(prefix="dcmweb-bench-rss-")[1])
    argv = [GNU_TIME, "--quiet", "-f", "%M", "-o", str(rss_file), *argv]
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    err_path = stderr
    err = open(err_path, "wb") if err_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                cwd=cwd or ROOT, env=child_env())
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()  # our own child, by its PID
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for handle in (out, err):
            if not isinstance(handle, int):
                handle.close()
    try:
        rss_mb = int(rss_file.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        rss_mb = float("nan")
    finally:
        rss_file.unlink(missing_ok=True)
    tail = ""
    if err_path:
        with open(err_path, "rb") as f:
            f.seek(max(0, os.path.getsize(err_path) - 600))
            tail = f.read().decode("utf-8", "replace")
    return Proc(proc.returncode, wall, usage.ru_utime + usage.ru_stime, rss_mb, tail)


def run_sample(argv: list[str], *, stdout: Path | None = None, stderr: Path | None = None,
               cwd: Path | None = None) -> Sample:
    p = run(argv, stdout=stdout, stderr=stderr, cwd=cwd)
    note = "" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr_tail.strip()[-300:]}"
    return Sample(p.wall, p.cpu, p.rss_mb, p.returncode == 0, note, p.wall, p.cpu)


def run_library(task: dict[str, Any], scratch: Path) -> Sample:
    """Run a library script (benchmarks.libcase) in a child; time only its work."""
    spec = scratch / "task.json"
    result = scratch / "result.json"
    spec.write_text(json.dumps(task))
    if result.exists():
        result.unlink()
    p = run([sys.executable, "-m", "benchmarks.libcase", str(spec), str(result)],
            stderr=scratch / "lib.stderr")
    if p.returncode != 0 or not result.exists():
        return Sample(p.wall, p.cpu, p.rss_mb, False,
                      f"exit {p.returncode}: {p.stderr_tail.strip()[-300:]}", p.wall, p.cpu)
    info = json.loads(result.read_text())
    return Sample(info["wall"], info["cpu"], p.rss_mb, bool(info.get("ok", True)),
                  info.get("note", ""), p.wall, p.cpu, info.get("extra", {}))
