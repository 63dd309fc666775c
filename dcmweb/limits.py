"""The limits of the process and of the system (``ulimit``): errors and hints that name
the limit, not a folder, nor a bug.

``ulimit -v`` too small for the threads' stacks, or ``ulimit -u`` reached, makes
``Thread.start`` raise ``RuntimeError: can't start new thread``, which would otherwise end
the run as an unexpected error (a bug to report). ``ulimit -n`` and ``ulimit -f`` refuse
files (EMFILE, EFBIG) that a message would otherwise blame on their folder, and
connections (EMFILE) that it would blame on the server.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from .errors import DcmwebError
from .optionnames import option


class ThreadLimit(DcmwebError):
    """Threads the run needs could not be started (a memory or process limit): exit 1."""


class DescriptorLimit(DcmwebError):
    """A file or connection could not be opened: the process (ulimit -n) or the system
    has no file descriptor left. Neither the file's fault nor the server's outage: the
    run stops, exit 1."""


def start_thread(target: Callable[[], object], name: str, *, what: str = "a thread"
                 ) -> threading.Thread:
    """Start ``target`` in a daemon thread (Ctrl-C never waits for it); ``what`` it is,
    for the message when a limit refuses it."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError as error:  # "can't start new thread"
        raise ThreadLimit(f"could not start {what}: {error}",
                          "a memory or process limit, ulimit -v or ulimit -u: use fewer "
                          f"{option('workers')}, or raise it") from None
    return thread


def out_of_descriptors(error: OSError, what: str) -> DescriptorLimit | None:
    """The error that stops the run when ``error`` is the lack of a file descriptor
    (EMFILE, ENFILE) to do ``what``: every other file and connection would be refused
    alike, and neither the file nor the server is at fault. None for any other error."""
    if error.errno not in (errno.EMFILE, errno.ENFILE):
        return None
    return DescriptorLimit(f"{what}: {error.strerror}", limit_hint(error.errno))


def late_import_refused(error: Exception) -> DescriptorLimit | None:
    """The error that stops the run when ``error`` is a module imported mid-run (dcmweb
    imports what only some runs need when it is needed) that found no descriptor to open
    its file: an OSError for a .py, an ImportError with dlopen's words for a .so. None for
    any other error, a bug."""
    if isinstance(error, OSError) and error.filename:
        return out_of_descriptors(error, f"cannot open {error.filename}")
    if isinstance(error, ImportError):
        for number in (errno.ENFILE, errno.EMFILE):  # ENFILE's words hold EMFILE's
            if os.strerror(number) in str(error):
                return DescriptorLimit(f"cannot load the module {error.name}: "
                                       f"{os.strerror(number)}", limit_hint(number))
    return None


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
