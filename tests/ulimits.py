"""dcmweb as a process under the limits ``ulimit`` sets (open files, file size, stack and
address space): the operating system's own refusals (EMFILE, EFBIG, "can't start new
thread"), without root or a mount."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

GIB = 1 << 30
# No thread can start, the main thread runs: every thread's stack (glibc sizes it by
# RLIMIT_STACK) is as large as the whole address space allowed (RLIMIT_AS), which the
# main thread's stack only takes as it grows.
NO_THREADS = {resource.RLIMIT_STACK: GIB, resource.RLIMIT_AS: GIB}


def run_limited(limits: dict[int, int], *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m dcmweb ARGS`` with each of ``limits`` (resource.RLIMIT_*: value) set
    before it starts. Python ignores SIGXFSZ: a write past RLIMIT_FSIZE fails (EFBIG)."""

    def apply() -> None:
        for which, value in limits.items():
            resource.setrlimit(which, (value, value))

    return subprocess.run([sys.executable, "-m", "dcmweb", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
                          preexec_fn=apply)


# Takes every descriptor (ulimit -n 64) but ``headroom`` once dcmweb's start-up imports are
# done, then runs the command: a run that met its limit on open files mid-way.
_OUT_OF_DESCRIPTORS = """
import os, resource, sys
from dcmweb.cli import main
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
for _ in range(int(sys.argv[1])):
    os.close(held.pop())
sys.argv[:2] = ["dcmweb"]
main()
"""


def run_out_of_descriptors(headroom: int, *args: str, timeout: float = 120
                           ) -> subprocess.CompletedProcess[str]:
    """``dcmweb ARGS`` with only ``headroom`` file descriptors left to open: EMFILE for
    the next one (a connection, a file, a module imported late)."""
    return subprocess.run([sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(headroom), *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
