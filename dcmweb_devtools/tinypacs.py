"""A private tiny-pacs (PyPI `tiny_pacs[http]` + `tiny_pacs_dicomweb`) for tests.

A second, independent DICOMweb server that differs from Orthanc on purpose (duplicates get
409, no match is 204, quoted boundaries, single-part instance retrieve). It runs from the
Python environment of the tests, with file storage in the work directory. HTTP binds
127.0.0.1 by config; its DIMSE port, which tiny-pacs binds on all interfaces, is forced onto
loopback by the LD_PRELOAD shim and put on a free port.

    with TinyPacs(tmp_path / "tinypacs") as tp:
        requests.get(tp.url + "/studies")
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .procs import MissingDependency, ServerProcess

INSTALL_HINT = "pip install -e '.[test]'  (tiny_pacs[http]==0.4.1, tiny_pacs_dicomweb==0.1.0)"
_MODULES = ("tiny_pacs", "tiny_pacs_dicomweb", "waitress", "yaml")


def find_tinypacs() -> list[str] | None:
    """Command that runs tiny-pacs from this Python environment, or None if not installed."""
    if any(importlib.util.find_spec(m) is None for m in _MODULES):
        return None
    script = Path(sys.executable).with_name("tiny-pacs")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tiny_pacs"]


@functools.cache
def _generated_config(command: tuple[str, ...]) -> str:
    """`tiny-pacs config generate` output (every component, with its defaults); run once."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "generated.yaml"
        subprocess.run(
            [*command, "config", "generate", "-o", str(out)],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        return out.read_text()


class TinyPacs(ServerProcess):
    """One tiny-pacs process serving DICOMweb at /dicomweb."""

    name = "tinypacs"
    ready_path = "/dicomweb/studies"
    ready_statuses = (200, 204)

    def __init__(
        self,
        workdir: Path,
        *,
        cache_dir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, cache_dir=cache_dir, startup_timeout=startup_timeout)
        self.dimse_port = 0

    @property
    def url(self) -> str:
        """DICOMweb base URL: http://127.0.0.1:PORT/dicomweb"""
        return self.root_url + "/dicomweb"

    @property
    def config_path(self) -> Path:
        return self.workdir / "tinypacs.yaml"

    def _prepare(self) -> Sequence[str]:
        command = find_tinypacs()
        if command is None:
            raise MissingDependency(f"tiny-pacs is missing: run {INSTALL_HINT}")
        import yaml  # a dependency of tiny_pacs (checked by find_tinypacs)

        from .procs import free_port

        store = self.workdir / "store"
        store.mkdir(parents=True, exist_ok=True)
        self.dimse_port = free_port()
        # Same edits as the shell recipe: start from the generated config, switch file
        # storage, HTTP and DICOMweb on, quiet the log, move both ports.
        config: dict[str, Any] = yaml.safe_load(_generated_config(tuple(command)))
        config["ae"]["port"] = self.dimse_port
        config["ae"]["dump_ds"] = False
        config["log"]["root"]["level"] = "WARNING"
        components = config["components"]
        components["InMemoryStorage"]["on"] = False
        components["FileStorage"].update({"on": True, "storage_dir": str(store)})
        components["HttpServer"].update(
            {"on": True, "host": "127.0.0.1", "port": self.port, "allow_remote": False}
        )
        components["DICOMWeb"].update({"on": True, "prefix": "/dicomweb", "auth": "none"})
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [*command, "run", "-c", str(self.config_path)]
