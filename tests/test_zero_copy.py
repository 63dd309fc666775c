"""Large files go to the socket by sendfile (the kernel sends them from the page cache, no
copy through Python) and arrive byte for byte; small files are still joined into larger
sends; a file that changes while the kernel sends it fails; TLS bodies are read, since the
encryption happens in Python."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner
from hostile import Hostile, Request, forward, tls_certificate

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.filebody import SizedFileBody
from dcmweb.files import Stamp, read_part10_head
from dcmweb.multipart import SLICE_MIN, MultipartBody, MultipartError
from dcmweb.store import CHANGED_WHILE_SENT, Uploader
from dcmweb.storefiles import Part10File, StoreOptions
from dcmweb.testing import LocalServer
from dcmweb.wire import Connection, FileSlice, body_blocks
from dcmweb_devtools import corpus

LARGE = ("examples_jpeg2k.dcm", "SC_rgb_jpeg_dcmd.dcm", "waveform_ecg.dcm")  # 150-290 KB
SMALL = ("CT_small.dcm", "MR_small.dcm")


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes of each file slice the kernel sent to a socket (os.sendfile): calls that go on
    where the one before ended are one slice (a full socket takes a slice in pieces)."""
    slices: list[int] = []
    last: list[tuple[int, int, int]] = []  # (socket, file, the offset it ended at)
    plain = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        sent = plain(out_fd, in_fd, offset, count)
        if not stat.S_ISSOCK(os.fstat(out_fd).st_mode):  # shutil's copies (the server's)
            return sent
        if last and last[0] == (out_fd, in_fd, offset):
            slices[-1] += sent
        else:
            slices.append(sent)
        last[:] = [(out_fd, in_fd, offset + sent)]
        return sent

    monkeypatch.setattr(os, "sendfile", spy)
    return slices


def pick(pydicom_files: list[Path], names: tuple[str, ...], folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    by_name = {p.name: p for p in pydicom_files}
    return [Path(shutil.copy(by_name[name], folder / name)) for name in names]


def instance_path(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


@pytest.mark.parametrize("single_part", [False, True])
def test_large_files_are_sent_by_the_kernel_and_arrive_whole(
        local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path,
        sendfile_calls: list[int], single_part: bool) -> None:
    files = pick(pydicom_files, SMALL[:1] + LARGE + SMALL[1:], tmp_path / "in")
    with Client(local_server.url) as client:
        results = client.store([tmp_path / "in"], single_part=single_part)
        assert sorted(r.status for r in results) == ["stored"] * len(files)
        for path in files:
            assert client.retrieve_instance(instance_path(path)) == path.read_bytes()
    # Old dcmweb read every byte into Python and sent it from there: no sendfile at all.
    large = sorted(os.path.getsize(p) for p in files if p.name in LARGE)
    assert min(large) >= SLICE_MIN
    # A single part's last byte is read, after a check that the file did not change: the
    # kernel's send would end the body, and the server would have it all before the check.
    assert sorted(sendfile_calls) == [size - single_part for size in large]


def drained() -> tuple[Connection, list[bytes], threading.Thread]:
    """A connection whose other end collects everything sent on it."""
    ours, theirs = socket.socketpair()
    received: list[bytes] = []

    def drain() -> None:
        while data := theirs.recv(1 << 20):
            received.append(data)
        theirs.close()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return Connection(ours), received, thread


def test_a_body_sent_by_slices_is_the_body_read(tmp_path: Path) -> None:
    sizes = [0, 10, SLICE_MIN - 1, SLICE_MIN, 3 * SLICE_MIN + 7, 5, 200_000]
    paths = []
    for n, size in enumerate(sizes):
        paths.append(tmp_path / f"f{n}")
        paths[-1].write_bytes(os.urandom(size))
    expected = MultipartBody(paths, boundary="b").read()
    connection, received, thread = drained()
    blocks = []
    for block in body_blocks(MultipartBody(paths, boundary="b"), 256 * 1024, zero_copy=True):
        connection.send(block)  # a slice's file is open until the body moves on
        blocks.append(block)
    connection.close()
    thread.join(10)
    assert b"".join(received) == expected
    slices = [b for b in blocks if isinstance(b, FileSlice)]
    assert [s.length for s in slices] == [s for s in sizes if s >= SLICE_MIN]
    # The small files between two large ones went out as one send with their part heads.
    assert sum(isinstance(b, bytes) for b in blocks) == len(slices) + 1


@pytest.mark.parametrize(("change", "after"), [("shrink", 150_000), ("grow", 200_100),
                                               ("rewrite", 200_000)])
@pytest.mark.parametrize("kind", ["multipart", "single part"])
def test_a_file_changed_while_the_kernel_sends_it_fails(tmp_path: Path, change: str,
                                                        after: int, kind: str) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 200_000)
    listed = Stamp.of(os.stat(path))
    mtime = listed.mtime_ns
    body: MultipartBody | SizedFileBody = (
        MultipartBody([path], listed=[listed]) if kind == "multipart"
        else SizedFileBody(path, listed))
    if kind == "multipart":
        assert isinstance(body.read_or_slice(1 << 20), bytes)  # the part's head
    piece = body.read_or_slice(1 << 20)
    length = 200_000 - (kind == "single part")  # its last byte is read after a check
    assert isinstance(piece, FileSlice) and (piece.offset, piece.length) == (0, length)
    if change == "shrink":
        os.truncate(path, after)
    elif change == "grow":
        with path.open("ab") as handle:
            handle.write(b"y" * (after - 200_000))
    else:  # written in place, the size kept (a preallocated copy): only the mtime moves
        os.utime(path, ns=(mtime, mtime + 1_000_000))
    connection, received, thread = drained()
    changed = (r"changed while being sent \(modified since it was listed\)"
               if change == "rewrite" else
               rf"changed size while being sent \(200000 -> {after}\)")
    with pytest.raises(MultipartError, match=changed):
        connection.send(piece)
        body.read_or_slice(1 << 20)  # the single part's last byte
    connection.close()
    thread.join(10)
    body.close()
    assert len(b"".join(received)) < len(body)  # the server never has the whole body


@pytest.mark.parametrize("single_part", [False, True])
def test_a_large_file_changed_after_listing_is_not_stored(
        local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path,
        sendfile_calls: list[int], single_part: bool) -> None:
    (path,) = pick(pydicom_files, LARGE[:1], tmp_path)
    head = read_part10_head(path)
    assert head is not None
    with path.open("ab") as handle:
        handle.write(b"\0" * 1000)
    with Client(local_server.url, backoff=0.01) as client:
        uploader = Uploader(client.http, client.base_url, StoreOptions(single_part=single_part))
        results = uploader.send([Part10File(path, head)])
    assert [(r.status, r.message) for r in results] == [("failed", CHANGED_WHILE_SENT)]
    assert local_server.store.query("SELECT sop_uid FROM instances") == []
    assert sendfile_calls == []  # refused before the kernel sent a byte


def test_tls_bodies_are_read_not_sent_by_the_kernel(
        pydicom_files: list[Path], tmp_path: Path, sendfile_calls: list[int]) -> None:
    files = pick(pydicom_files, LARGE[:2] + SMALL[:1], tmp_path / "in")
    cert, key = tls_certificate(tmp_path)

    def stow(req: Request) -> None:
        refs = [{"00081155": {"vr": "UI", "Value": [str(pydicom.dcmread(p).SOPInstanceUID)]}}
                for p in files if p.read_bytes() in req.seen.body]
        req.json(200, {"00081199": {"vr": "SQ", "Value": refs}}, "application/dicom+json")

    with Hostile(tls=(cert, key)) as fake:
        fake.route("POST", "/studies", stow)
        result = CliRunner().invoke(cli, ["--ca-bundle", str(cert), fake.url, "store",
                                          str(tmp_path / "in")])
        bodies = [seen.body for seen in fake.seen("POST", "/studies")]
    assert result.exit_code == 0, result.stderr
    assert len(bodies) == 1 and all(p.read_bytes() in bodies[0] for p in files)
    assert sendfile_calls == []


def test_a_large_tls_body_to_a_slow_reader_arrives_whole(local_server: LocalServer,
                                                         tmp_path: Path) -> None:
    """TLS sends from Python without blocking: a full socket says so its own way
    (SSLWantWriteError), and the send waits and goes on where it stopped."""
    big = corpus.large_instance(tmp_path / "in" / "big.dcm", 2048)  # 8 MiB: about 2 s
    cert, key = tls_certificate(tmp_path)
    with Hostile(tls=(cert, key), read_rate=4e6) as slow:  # the sender waits
        slow.fallback = forward(local_server.root_url)
        result = CliRunner().invoke(cli, ["--ca-bundle", str(cert), slow.root_url
                                          + urlsplit(local_server.url).path, "store", str(big)])
    assert result.exit_code == 0, result.stderr
    with Client(local_server.url) as client:
        assert client.retrieve_instance(instance_path(big)) == big.read_bytes()
