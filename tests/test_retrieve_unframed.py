"""Frames and bulk data in answers that only the connection's close ends (no
Content-Length, no chunked coding): a cut there looks like a normal end, so a single body
is kept only when the instance's metadata confirms its length; multipart answers are
framed by their closing boundary."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, Route, forward, multipart
from test_retrieve import files_under, uids_of

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus

SINGLE_PART = "application/octet-stream; transfer-syntax=*"
PIXELS = 128 * 128 * 2  # the synthetic instances: 128 x 128, one sample of 16 bits


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 1)


@pytest.fixture
def stored(local_server: LocalServer, synth: list[Path]) -> LocalServer:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    return local_server


def instance_path(source: Path) -> str:
    study, series, sop = uids_of(source)
    return f"studies/{study}/series/{series}/instances/{sop}"


def close_delimited(server: LocalServer, keep: Callable[[bytes], bytes]) -> Route:
    """Frames and bulk data asked of ``server`` in their single-part form and sent on as
    an HTTP/1.0 server does, ended by the close, with ``keep(body)`` of the body; every
    other request (metadata) relayed as it is."""
    relay = forward(server.root_url)

    def action(req: Request) -> None:
        if "/frames/" not in req.seen.path and "/bulkdata/" not in req.seen.path:
            relay(req)
            return
        connection = http.client.HTTPConnection(urlsplit(server.root_url).netloc, timeout=30)
        try:
            connection.request("GET", req.seen.target, headers={"Accept": SINGLE_PART})
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        assert answer.status == 200, body
        req.stream(200, answer.getheader("Content-Type", ""), [keep(body)])
    return action


@pytest.fixture
def fake() -> Iterator[Hostile]:
    with Hostile() as server:
        yield server


def through(fake: Hostile, server: LocalServer) -> str:
    """The local server's DICOMweb base, reached through ``fake``."""
    return fake.root_url + urlsplit(server.url).path


@pytest.mark.parametrize(("piece", "thing"), [("frames/1", "frame 1"),
                                              ("bulkdata/7FE00010", "value 7FE00010")])
def test_a_cut_frame_or_value_ended_by_the_close_is_not_saved(
        stored: LocalServer, synth: list[Path], fake: Hostile, tmp_path: Path, piece: str,
        thing: str) -> None:
    """Old dcmweb saved the first half with exit 0: only the instance's metadata shows the cut."""
    fake.fallback = close_delimited(stored, lambda body: body[:len(body) // 2])
    path = f"{instance_path(synth[0])}/{piece}"
    out = tmp_path / "out"
    result = dcmweb(through(fake, stored), "retrieve", path, "--output", str(out))
    assert result.exit_code == 1, result.stderr
    assert (f"the answer was cut off 3 times: the connection closed after {PIXELS // 2} "
            f"bytes; the instance's metadata gives {PIXELS} bytes for the {thing}"
            ) in result.stderr
    assert len([seen for seen in fake.requests if seen.path.endswith(piece)]) == 3
    assert files_under(out) == set()


@pytest.mark.parametrize("piece", ["frames/1", "bulkdata/7FE00010"])
def test_a_whole_frame_or_value_ended_by_the_close_is_saved(
        stored: LocalServer, synth: list[Path], fake: Hostile, tmp_path: Path,
        piece: str) -> None:
    fake.fallback = close_delimited(stored, lambda body: body)
    path = f"{instance_path(synth[0])}/{piece}"
    out = tmp_path / "out"
    result = dcmweb(through(fake, stored), "retrieve", path, "--output", str(out))
    assert result.exit_code == 0, result.stderr
    [saved] = files_under(out)
    assert saved.read_bytes() == pydicom.dcmread(synth[0]).PixelData
    asked = [seen.path.rsplit("/", 1)[-1] for seen in fake.requests]
    assert asked == [piece.rsplit("/", 1)[-1], "metadata"]  # metadata only to confirm


def test_a_body_nothing_confirms_is_not_saved(tmp_path: Path, fake: Hostile) -> None:
    """A compressed frame's length is nowhere in its metadata: it cannot be told from a cut."""
    path = "studies/1.2/series/1.3/instances/1.4"
    fake.route("GET", f"/{path}/frames/1", lambda req: req.stream(
        200, "image/jpeg", [b"\xff\xd8" + b"x" * 100]))
    fake.route("GET", f"/{path}/metadata", lambda req: req.json(
        200, [{"00280010": {"vr": "US", "Value": [64]}}], "application/dicom+json"))
    result = dcmweb(fake.url, "retrieve", f"{path}/frames/1", "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    assert ("the connection closed after 102 bytes, and nothing confirms that this is the "
            "whole frame 1 (no Content-Length, and the instance's metadata gives no length "
            "for it)") in result.stderr
    assert files_under(tmp_path) == set()


def test_a_multipart_frame_cut_where_only_the_close_ends_it_is_not_saved(
        tmp_path: Path, fake: Hostile) -> None:
    """The closing boundary frames a multipart answer: no metadata is needed to see a cut."""
    path = "studies/1.2/series/1.3/instances/1.4"
    body = multipart([b"\x00\x01" * 500], "b1", "application/octet-stream")
    fake.route("GET", f"/{path}/frames/1", lambda req: req.stream(
        200, "multipart/related; boundary=b1", [body[:600]]))
    result = dcmweb(fake.url, "retrieve", f"{path}/frames/1", "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    assert "the answer was cut off 3 times" in result.stderr
    assert [seen.path for seen in fake.requests] == [f"/{path}/frames/1"] * 3
    assert files_under(tmp_path) == set()
