"""dcmweb: a command-line client and Python library for DICOMweb servers.

``from dcmweb import Client``. The client (and requests with it) is imported on
first use, so that ``dcmweb --help`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AuthError,
    DcmwebError,
    ExitStatus,
    NotFoundError,
    PartialFailure,
    ServerError,
    UnavailableError,
    UsageError,
)

if TYPE_CHECKING:
    from .client import Client

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Client",
    "DcmwebError",
    "ExitStatus",
    "NotFoundError",
    "PartialFailure",
    "ServerError",
    "UnavailableError",
    "UsageError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module 'dcmweb' has no attribute {name!r}")
