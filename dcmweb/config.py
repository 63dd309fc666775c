"""The config file: named profiles of settings (host, auth, workers, timeouts, output).

TOML, at ``$XDG_CONFIG_HOME/dcmweb/config.toml`` (``~/.config/dcmweb/config.toml``), or
the file given with ``--config`` / ``DCMWEB_CONFIG``::

    default-profile = "local"          # used when no --profile / DCMWEB_PROFILE is given

    [profiles.prod]
    host = "projects/P/locations/L/datasets/D/dicomStores/S"
    multithreading = true
    workers = 8

    [profiles.prod.search]             # options of one command
    format = "jsonl"

Keys are the long option names (``read-timeout`` or ``read_timeout``). A profile only
supplies defaults: a flag beats its environment variable, which beats the profile, which
beats the built-in default. This module reads and picks; the CLI checks the keys against
its options.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError
from .record import field, record
from .redact import is_credential_header, redact_url


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "dcmweb" / "config.toml"


@record(frozen=True)
class Profile:
    """The chosen profile's settings: ``values`` for the global options, ``commands`` for
    each command's (``{"search": {"format": "jsonl"}}``)."""

    name: str | None = None
    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_profile(config: str | None, profile: str | None) -> Profile:
    """Read the config file and return the profile asked for (or its default profile).

    ``config``/``profile`` are what the command line or the environment gave; ``None``
    means the default file (which may be missing) and its ``default-profile``.
    """
    path = Path(config).expanduser() if config else default_path()
    if not path.is_file():
        if config:
            raise UsageError(f"config file {path} not found")
        if profile:
            raise UsageError(f"profile {profile!r} asked for, but there is no config file "
                             f"{path}", "create it, or give one with --config FILE")
        return Profile()
    # Imported here: most runs have no config file, and each command's start-up counts.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read config file {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from error
    unknown = sorted(set(document) - {"default-profile", "default_profile", "profiles"})
    if unknown:
        raise UsageError(f"config file {path}: unknown key {unknown[0]!r}",
                         "settings go in [profiles.NAME] tables")
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UsageError(f"config file {path}: profiles is not a table",
                         "write each profile as [profiles.NAME]")
    name = profile or document.get("default-profile") or document.get("default_profile")
    if not name:
        return Profile(path=path)
    table = profiles.get(name)
    if table is not None and not isinstance(table, dict):
        raise UsageError(f"config file {path}: profile {name!r} is not a table",
                         f"write its settings under [profiles.{name}]")
    if table is None:
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"no profile {name!r} in {path}", f"profiles: {known}")
    values = {key: value for key, value in table.items() if not isinstance(value, dict)}
    commands = {key: value for key, value in table.items() if isinstance(value, dict)}
    return Profile(name=name, path=path, values=values, commands=commands)


def option_key(key: str) -> str:
    """A config key as an option name: ``read_timeout`` and ``read-timeout`` both work."""
    return key.replace("_", "-")


def redact(name: str, value: Any) -> Any:
    """A setting's value fit to print: passwords, tokens and secret headers hidden."""
    if value is None or value == () or value == "":
        return value
    if name == "token":
        return "***"
    if name == "user":
        user, sep, _ = str(value).partition(":")
        return f"{user}:***" if sep else user
    if name == "header":
        return tuple(_redact_header(header) for header in value)
    if name == "host":
        return redact_url(str(value))
    return value


def _redact_header(header: str) -> str:
    header_name, sep, value = header.partition(":")
    if sep and is_credential_header(header_name, value):
        return f"{header_name}: ***"
    return header
