"""The limits of the process and of the system (``ulimit``): hints that name the limit,
not a folder, nor a bug: ``ulimit -n`` and ``ulimit -f`` refuse files (EMFILE, EFBIG)
that a message would otherwise blame on their folder.
"""

from __future__ import annotations

import errno

from .optionnames import option


def limit_hint(number: int | None) -> str | None:
    """The hint for a file error (its errno) that a limit of the process or the system
    causes, not the folder: it names the limit; None for any other error."""
    if number == errno.EMFILE:
        return (f"this process may open no more files: use fewer {option('workers')}, or "
                "raise its limit with ulimit -n")
    if number == errno.ENFILE:
        return ("the system's limit on open files: close other programs, or raise it "
                "with sysctl fs.file-max")
    if number == errno.EFBIG:
        return ("a limit on the size of a file: this process's, set with ulimit -f, or the "
                "largest file the file system holds")
    return None
