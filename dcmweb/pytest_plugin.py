"""A pytest plugin: a real DICOMweb server for your project's tests, in one line.

Installed with dcmweb (a ``pytest11`` entry point), so pytest loads it in every project
where dcmweb is installed; it only defines fixtures and imports nothing heavy until one
is used::

    def test_my_upload(dcmweb_server):
        client = dcmweb_server.client
        client.store(["scan.dcm"])
        assert client.search("instances")

``dcmweb_server`` starts dcmweb's GCP-like local server (``dcmweb.testing.LocalServer``)
on a free 127.0.0.1 port with an empty store in the test's temporary folder, and stops
it after the test. Disable the plugin with ``-p no:dcmweb``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .client import Client
    from .testing import LocalServer


@dataclass(frozen=True)
class DcmwebServer:
    """What the ``dcmweb_server`` fixture yields."""

    url: str  # the DICOMweb base URL (HOST for the dcmweb command)
    client: Client  # a Client of that server, closed after the test
    server: LocalServer  # the server itself: inject_fault(), requests, token


@pytest.fixture
def dcmweb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DcmwebServer]:
    """A fresh, empty GCP-like DICOMweb server on 127.0.0.1, and a Client of it."""
    from .client import Client
    from .testing import LocalServer

    with LocalServer(tmp_path_factory.mktemp("dcmweb-server")) as server, \
            Client(server.url) as client:
        yield DcmwebServer(url=server.url, client=client, server=server)
