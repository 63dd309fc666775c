"""What the environment says about a connection: proxies (``HTTP(S)_PROXY``,
``ALL_PROXY``, ``NO_PROXY``), credentials (a URL's ``user:password``, ``~/.netrc``) and
the CA certificates TLS is verified with (certifi's, or ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE``), read as requests read them (dcmweb 0.1 used requests).
"""

from __future__ import annotations

import base64
import contextlib
import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .errors import UsageError
from .redact import hide

if TYPE_CHECKING:
    import ssl


def _environ(name: str) -> str | None:
    """``name`` from the environment, lowercase first (as urllib reads them); HTTP_PROXY
    is ignored under CGI, where a client's Proxy header would land in it."""
    found = _environ_named(name)
    return found[1] if found else None


def _environ_named(name: str) -> tuple[str, str] | None:
    """(the variable's name as set, its value) for :func:`_environ`."""
    names = (name,) if name == "http_proxy" and "REQUEST_METHOD" in os.environ else (
        name, name.upper())
    return next(((n, os.environ[n]) for n in names if os.environ.get(n)), None)


def _bypassed(host: str, port: int) -> bool:
    """NO_PROXY: ``*``, names matched with their subdomains, addresses and CIDR ranges
    matched only as addresses (``.0.0.1`` is no suffix of 127.0.0.1), ``host:port``."""
    entries = [e.strip().lower() for e in (_environ("no_proxy") or "").split(",") if e.strip()]
    if not entries:
        return False
    import ipaddress

    host = host.lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in entries:
        if entry in ("*", f"{host}:{port}"):
            return True
        if address is not None:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            continue
        name = entry.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def environ_proxy(scheme: str, host: str, port: int) -> str | None:
    """The proxy URL the environment names for this scheme and host, if any; a
    :class:`UsageError` naming the variable (never its value, which may hold a password)
    when it is no http:// proxy URL: every request would fail alike."""
    found = _environ_named(f"{scheme}_proxy") or _environ_named("all_proxy")
    if not found or _bypassed(host, port):
        return None
    variable, proxy = found
    proxy = proxy.strip()
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    scheme_given = proxy.partition("://")[0]
    if scheme_given.lower() != "http":
        raise UsageError(f"{variable} names a {scheme_given}:// proxy, which dcmweb does not"
                         " support", f"use an http:// proxy, or set NO_PROXY={host}")
    try:
        parts = urlsplit(proxy)
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or parts.path.strip("/") or parts.query or (
            parts.fragment):
        # No "http://USER:PASSWORD@HOST" here: messages hide a URL's userinfo.
        raise UsageError(f"{variable} is not a valid proxy URL",
                         "write it as http://HOST:PORT, with credentials as USER:PASSWORD@"
                         " before HOST; '#', '?', '/' and '@' in the password percent-encoded"
                         " (%23, %3F, %2F, %40)")
    return proxy


def basic_authorization(user: str, password: str) -> str:
    """The Basic credentials for ``user`` and ``password``, sent as UTF-8 (RFC 7617, as
    curl sends them); the password and its encoding are never shown (redact.hide)."""
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    hide(password)
    hide(encoded)
    return "Basic " + encoded


def netrc_authorization(host: str) -> str | None:
    """Basic credentials for ``host`` from ``$NETRC`` or ``~/.netrc``, as requests used."""
    candidates = ([os.environ["NETRC"]] if os.environ.get("NETRC") else
                  [os.path.expanduser(f"~/{name}") for name in (".netrc", "_netrc")])
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
        return None
    import netrc

    try:
        found = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None  # an unreadable file is ignored, as requests ignores it
    if not found:
        return None
    login, _, password = found
    return basic_authorization(login or "", password or "")


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The context HTTPS connections are made with: ``verify`` is True (certifi's bundle,
    or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE), a bundle file or folder, or False."""
    import ssl  # here, not at the top: a plain http:// run never needs it

    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    where = verify if isinstance(verify, str) else (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        or _certifi_bundle())
    if where and os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where)


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # the system's certificates, as ssl finds them
        return None
    return str(certifi.where())


def userinfo_authorization(url: str) -> str | None:
    """Basic credentials from the user:password in ``url`` (a proxy's, or HOST's)."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return basic_authorization(unquote(parts.username), unquote(parts.password or ""))
