"""How a message names an option: the keyword argument in Python (``transfer_syntax``),
the flag on the command line (``--transfer-syntax``).

Messages, hints and log lines are written once, with :func:`option` where they name one;
the CLI names flags for the length of its run (:func:`as_flags`, in cligroup). A module
setting, not a context variable: messages are made in worker threads too.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager

# The keywords whose flag is not the keyword with dashes ("batch_size": "--batch-size").
_FLAGS = {"part_type": "--type", "study_uid": "--study", "headers": "-H"}
_NO_VALUE = object()
_as_flags = False


def option(keyword: str, value: object = _NO_VALUE) -> str:
    """``keyword`` (``keyword=value``) for Python, its flag (``--flag value``, a switch
    ``--flag`` or ``--no-flag``) on the command line."""
    if not _as_flags:
        return keyword if value is _NO_VALUE else f"{keyword}={value!r}"
    flag = _FLAGS.get(keyword) or "--" + keyword.replace("_", "-")
    if value is _NO_VALUE or value is True:
        return flag
    if value is False:
        return "--no-" + flag.removeprefix("--")
    return f"{flag} {shlex.quote(str(value))}"


def on_command_line() -> bool:
    """Whether messages are the command line's: a hint may then name a flag that has no
    keyword in Python (``--format``)."""
    return _as_flags


@contextmanager
def as_flags() -> Iterator[None]:
    """Name options as flags inside this block: the command line's run."""
    global _as_flags
    before, _as_flags = _as_flags, True
    try:
        yield
    finally:
        _as_flags = before
