"""TLS settings checked before the first request.

A ``--ca-bundle`` file that is not a PEM bundle would otherwise surface as a TLS
failure on the first request (exit 5, "unavailable"): it is a usage error.
"""

from __future__ import annotations

from .errors import UsageError
from .optionnames import option


def check_ca_bundle(path: str) -> str:
    """``path`` if it is a readable bundle of PEM certificates, else a :class:`UsageError`."""
    import ssl  # only with --ca-bundle: an http:// run never loads it

    try:
        context = ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM"
        raise UsageError(f"{option('ca_bundle', path)} cannot be used: {reason}",
                         "give a file of PEM certificates (-----BEGIN CERTIFICATE-----)"
                         ) from None
    if not context.get_ca_certs():
        raise UsageError(f"{option('ca_bundle', path)} holds no CA certificate",
                         "give a file of PEM certificates (-----BEGIN CERTIFICATE-----)")
    return path
