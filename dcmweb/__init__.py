"""dcmweb: a command-line client and Python library for DICOMweb servers.

``from dcmweb import Client``. The client (and the HTTP stack with it) is imported on
first use, so that ``dcmweb --help`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AllFailed,
    AnswerLost,
    AuthError,
    Busy,
    DcmwebError,
    ExitStatus,
    LocalFileError,
    NotFoundError,
    PartialFailure,
    RedirectRefused,
    ServerError,
    UnavailableError,
    Unserved,
    UsageError,
)

if TYPE_CHECKING:
    from .bulkrecords import Outcome, Summary
    from .client import Client
    from .delete import DeleteResult
    from .limits import DescriptorLimit, ThreadLimit
    from .operations import Operation
    from .rendered import RenderOptions
    from .retrieve import RetrieveResult
    from .storefiles import StoreResult

__version__ = "0.1.0"

__all__ = [
    "AllFailed",
    "AnswerLost",
    "AuthError",
    "Busy",
    "Client",
    "DcmwebError",
    "DeleteResult",
    "DescriptorLimit",
    "ExitStatus",
    "LocalFileError",
    "NotFoundError",
    "Operation",
    "Outcome",
    "PartialFailure",
    "RedirectRefused",
    "RenderOptions",
    "RetrieveResult",
    "ServerError",
    "StoreResult",
    "Summary",
    "ThreadLimit",
    "UnavailableError",
    "Unserved",
    "UsageError",
    "__version__",
]


# Imported on first use (they pull in the HTTP stack): name -> module.
_LAZY = {"Client": "client", "StoreResult": "storefiles", "RetrieveResult": "retrieve",
         "DeleteResult": "delete", "Operation": "operations", "RenderOptions": "rendered",
         "Summary": "bulkrecords", "Outcome": "bulkrecords", "DescriptorLimit": "limits",
         "ThreadLimit": "limits"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dcmweb' has no attribute {name!r}")
