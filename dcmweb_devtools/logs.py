"""Reading dcmweb's stderr in tests: log lines without their timestamps."""

from __future__ import annotations

import re

# 2026-11-26T16:40:00.123+01:00 dcmweb: info: message
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ")


def lines(stderr: str) -> list[str]:
    """Each stderr line with its timestamp cut off: ``dcmweb: error: ...``."""
    return [TIMESTAMP.sub("", line) for line in stderr.splitlines()]


def messages(stderr: str, level: str) -> list[str]:
    """The messages of one level (``info``, ``warning``, ``error``, ``debug``)."""
    prefix = f"dcmweb: {level}: "
    return [line[len(prefix):] for line in lines(stderr) if line.startswith(prefix)]


def timed(stderr: str) -> list[tuple[float, str]]:
    """(when, message) of each log line: what came when, in a test of progress."""
    from datetime import datetime

    out = []
    for line in stderr.splitlines():
        stamp, _, rest = line.partition(" dcmweb: ")
        out.append((datetime.fromisoformat(stamp).timestamp(), rest.partition(": ")[2]))
    return out
