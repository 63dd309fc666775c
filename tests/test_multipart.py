"""Tests for dcmweb.multipart: the rewindable encoder and the incremental parser.

Speed measured on the dev machine (Python 3.11): iter_parts parses a 200 MiB body (two
100 MiB parts) fed in 64 KiB chunks at about 4.5 GB/s; MultipartBody.read() streams files
at about 5 GB/s with read(16384) (urllib3's block size) and 9 GB/s with read(65536).
test_parse_speed only guards against a regression to per-byte Python loops (loose floor).
"""

from __future__ import annotations

import http.server
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import ClassVar

import pydicom.data
import pytest
import requests

from dcmweb.filebody import SizedFileBody
from dcmweb.files import Stamp
from dcmweb.multipart import (
    MAX_HEADER_BYTES,
    BoundaryNotFound,
    FileChanged,
    MultipartBody,
    MultipartError,
    iter_parts,
    new_boundary,
    parse_content_type,
)

B = "b0undary"
BB = B.encode()


def _dicom_files() -> list[str]:
    """Real DICOM files shipped with pydicom: a spread of sizes up to about 1 MB."""
    found = []
    for f in pydicom.data.get_testdata_files():
        if os.path.isfile(f) and os.path.getsize(f) <= 1_000_000:
            with open(f, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    found.append((os.path.getsize(f), f))
    found.sort()
    assert len(found) >= 20
    picked = [f for _, f in found[:: max(1, len(found) // 12)]]
    return [*picked, found[-1][1]]


DICOM = _dicom_files()


def chunked(data: bytes, rng: random.Random, hi: int = 65536, lo: int = 1) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        n = rng.randint(lo, hi)
        yield data[i : i + n]
        i += n


def parse(chunks, boundary: str = B) -> list[tuple[dict[str, str], bytes]]:
    return [(p.headers, b"".join(p.iter_content())) for p in iter_parts(chunks, boundary)]


def build(*bodies: bytes, headers: bytes = b"Content-Type: application/dicom\r\n") -> bytes:
    out = b"".join(b"--" + BB + b"\r\n" + headers + b"\r\n" + body + b"\r\n" for body in bodies)
    return out + b"--" + BB + b"--\r\n"


# ---------------------------------------------------------------- parse_content_type


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'multipart/related; type="application/dicom"; boundary="a b"',
            ("multipart/related", {"type": "application/dicom", "boundary": "a b"}),
        ),
        ("Multipart/Related;BOUNDARY=xyz", ("multipart/related", {"boundary": "xyz"})),
        ("multipart/related ; boundary = xyz ; x", ("multipart/related", {"boundary": "xyz"})),
        ('a/b; boundary="x;y=z"; q=1', ("a/b", {"boundary": "x;y=z", "q": "1"})),
        (r'a/b; boundary="say \"hi\" \\ ok"', ("a/b", {"boundary": 'say "hi" \\ ok'})),
        ("application/dicom", ("application/dicom", {})),
        ("a/b; k=v;", ("a/b", {"k": "v"})),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


def test_new_boundary_is_random_and_safe() -> None:
    a, b = new_boundary(), new_boundary()
    assert a != b
    assert len(a) == 32 and int(a, 16) >= 0


# ---------------------------------------------------------------- encoder


def test_wire_format_is_exact(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"AAA")
    (tmp_path / "b").write_bytes(b"")
    body = MultipartBody([tmp_path / "a", str(tmp_path / "b")], boundary="XyZ")
    expected = (
        b"--XyZ\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n"
        b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n\r\n"
        b"--XyZ--\r\n"
    )
    assert body.content_type == 'multipart/related; type="application/dicom"; boundary=XyZ'
    assert len(body) == len(expected)
    assert body.read() == expected
    assert body.read() == b""


def test_boundary_needing_quotes_round_trips(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"data")
    body = MultipartBody([tmp_path / "a"], part_type="application/octet-stream", boundary="a b:?")
    mime, params = parse_content_type(body.content_type)
    assert (mime, params["boundary"], params["type"]) == (
        "multipart/related", "a b:?", "application/octet-stream"
    )
    parts = parse(chunked(body.read(), random.Random(1), hi=3), params["boundary"])
    assert parts == [({"content-type": "application/octet-stream"}, b"data")]


def test_invalid_arguments(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(ValueError):
        MultipartBody([])
    with pytest.raises(ValueError):
        MultipartBody([tmp_path / "a"], boundary="bad\r\nboundary")
    with pytest.raises(ValueError):
        MultipartBody([tmp_path / "a"], part_type="a/b\r\nX-Evil: 1")
    with pytest.raises(MultipartError):
        MultipartBody([tmp_path])  # a directory
    with pytest.raises(FileNotFoundError):
        MultipartBody([tmp_path / "missing"])


def test_seek_tell_len_and_odd_reads() -> None:
    with MultipartBody(DICOM) as body:
        full = body.read()
        assert len(full) == len(body) == body.tell()
        assert full.count(b"DICM") >= len(DICOM)
        for size, limit in ((1, 30_000), (7, 100_000), (13, len(full)), (4093, len(full))):
            # Tiny reads only over a prefix (it still spans several small files): 1 syscall each.
            body.seek(0)
            pieces = []
            while (before := body.tell()) < limit and (piece := body.read(size)):
                assert len(piece) == min(size, len(full) - before)
                pieces.append(piece)
            assert b"".join(pieces) == full[: len(b"".join(pieces))]
            assert len(b"".join(pieces)) >= limit
        rng = random.Random(5)
        for _ in range(300):  # random access, including reads that span several segments
            off, n = rng.randrange(len(full)), rng.choice([0, 1, 2, 50, 3000, 200_000])
            assert body.seek(off) == off
            assert body.read(n) == full[off : off + n]
            assert body.tell() == min(off + n, len(full))
        assert body.seek(-10, os.SEEK_END) == len(full) - 10
        assert body.seek(4, os.SEEK_CUR) == len(full) - 6
        assert body.read(None) == full[-6:]
        assert body.seek(len(full) + 100) == len(full) + 100
        assert body.read(10) == b""
        with pytest.raises(ValueError):
            body.seek(-1)
        with pytest.raises(ValueError):
            body.seek(0, 7)
    assert body.closed
    with pytest.raises(ValueError):
        body.read(1)


def test_at_most_one_file_open(tmp_path: Path) -> None:
    paths = []
    for i in range(200):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(bytes([i % 256]) * (i * 37))
    before = len(os.listdir("/proc/self/fd"))
    most = 0
    with MultipartBody(paths) as body:
        while body.read(1000):
            most = max(most, len(os.listdir("/proc/self/fd")) - before)
        assert len(os.listdir("/proc/self/fd")) == before  # the last file was closed at its end
    assert most == 1


@pytest.mark.parametrize("change", ["grow", "shrink", "grow_empty"])
def test_file_changed_after_construction(tmp_path: Path, change: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"" if change == "grow_empty" else b"x" * 1000)
    body = MultipartBody([path])
    path.write_bytes(b"x" * (500 if change == "shrink" else 1500))
    with pytest.raises(MultipartError, match="changed size"):
        while body.read(100):
            pass


def test_file_grew_while_being_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    body = MultipartBody([path])
    body.read(1000)  # the file is open now
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(MultipartError, match="changed size"):
        body.read()


@pytest.mark.parametrize("single_part", [False, True], ids=["multipart", "single part"])
def test_a_file_written_in_place_while_being_read_fails_before_the_body_ends(
        tmp_path: Path, single_part: bool) -> None:
    """A copy that sets the size first and fills the file in (rsync --preallocate, SMB):
    the size stays, the mtime moves. The body must fail before its last bytes, so the
    server never gets a whole body of a half-written file."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000 + b"\0" * 99_000)
    listed = os.stat(path)
    body: MultipartBody | SizedFileBody = (
        SizedFileBody(path, Stamp.of(listed)) if single_part else
        MultipartBody([path], listed=[Stamp.of(listed)]))
    sent = body.read(2000)  # the file is open now
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"y" * 1000)  # the copy goes on
    os.utime(path, ns=(listed.st_atime_ns, listed.st_mtime_ns + 1_000_000))
    with pytest.raises(FileChanged, match="changed while being sent") as raised:
        while data := body.read(1000):
            sent += data
    assert raised.value.path == str(path)
    assert len(sent) < len(body)  # the server gets a cut body: it stores nothing


@pytest.mark.parametrize(("single_part", "when"), [(False, "listed"), (False, "built"),
                                                   (True, "listed")],
                         ids=["multipart", "multipart, built", "single part"])
def test_a_file_replaced_with_the_same_size_and_mtime_fails(tmp_path: Path, when: str,
                                                            single_part: bool) -> None:
    """Another file renamed over a listed one with its size and mtime (``rsync -a``): its
    UIDs are not those the answer is matched by, so the body must not carry it, whether
    it came before the body was built or before its file was opened (a single part's is
    opened as the body is built)."""
    first, path, other = tmp_path / "a", tmp_path / "f", tmp_path / "g"
    first.write_bytes(b"a" * 1000)
    path.write_bytes(b"x" * 1000)
    listed = [Stamp.of(first.stat()), Stamp.of(path.stat())]
    other.write_bytes(b"y" * 1000)
    os.utime(other, ns=(listed[1].mtime_ns, listed[1].mtime_ns))

    def build() -> MultipartBody | SizedFileBody:
        return (SizedFileBody(path, listed[1]) if single_part else
                MultipartBody([first, path], listed=listed))

    body = build() if when == "built" else None
    other.rename(path)
    with pytest.raises(FileChanged, match=r"^.*/f changed while being sent \(replaced or "
                                          r"rewritten since it was listed"):
        body = body or build()
        while body.read(100):
            pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("single_part", [False, True], ids=["multipart", "single part"])
def test_a_listed_file_replaced_by_a_fifo_fails_without_waiting_for_a_writer(
        tmp_path: Path, single_part: bool) -> None:
    """A FIFO put where a listed file was: opening it for reading would wait for a writer
    for ever (a cron run hung, holding its journal), so it is opened without waiting and
    fails as a file that changed since it was listed."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    listed = Stamp.of(path.stat())
    # A multipart body opens its files as it reaches them; a single part's as it is built.
    built = None if single_part else MultipartBody([path], listed=[listed])
    path.unlink()
    os.mkfifo(path)
    failed: list[BaseException] = []

    def send() -> None:
        try:
            body = built or SizedFileBody(path, listed)
            while body.read(100):
                pass
        except FileChanged as error:
            failed.append(error)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(10)
    if sender.is_alive():  # unblock the open, so the test process can end
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert not sender.is_alive()
    assert [str(error.path) for error in failed] == [str(path)]


def peak_of(setup: str, measured: str) -> int:
    """The peak of Python's allocations (tracemalloc) while ``measured`` runs, after
    ``setup``, in a process of their own: in the test process another test's threads (a
    server still closing) allocate meanwhile, and a busy machine's full run counted 1.7 MB
    of theirs against a parser that held 64 KiB."""
    program = "\n".join(["import tracemalloc", setup, "tracemalloc.start()", measured,
                          "print(tracemalloc.get_traced_memory()[1])"])
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_encoder_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(40 * 1024 * 1024)  # sparse: a large file costs no disk
    length = len(MultipartBody([path, path]))
    assert length > 80 * 1024 * 1024
    peak = peak_of(f"""
from dcmweb.multipart import MultipartBody
body = MultipartBody([{str(path)!r}, {str(path)!r}])
""", f"""
total = 0
while chunk := body.read(16384):
    total += len(chunk)
assert total == {length}, total
""")
    assert peak < 1024 * 1024


# ---------------------------------------------------------------- encoder through requests


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        if self.path == "/redirect":
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", "/store")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "Content-Length" in self.headers:
            data = self.rfile.read(int(self.headers["Content-Length"]))
        else:  # chunked: read it anyway so a failing test fails instead of hanging
            data = b""
            while size := int(self.rfile.readline(), 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        self.received.append((self.path, dict(self.headers), data))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.received = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_requests_sends_content_length_and_resends_identically(server: str) -> None:
    class Recording(MultipartBody):
        sizes: ClassVar[list[int | None]] = []

        def read(self, size: int | None = -1) -> bytes:
            self.sizes.append(size)
            return super().read(size)

    with Recording(DICOM) as body:
        expected = body.read()
        body.seek(0)
        for _ in range(2):
            body.seek(0)  # what a retry loop does before re-sending the same object
            r = requests.post(
                f"{server}/store", data=body, headers={"Content-Type": body.content_type},
                timeout=10,
            )
            assert r.status_code == 200
        # A 307 makes requests resend: it must rewind the body itself.
        body.seek(0)
        r = requests.post(
            f"{server}/redirect", data=body, headers={"Content-Type": body.content_type},
            timeout=10,
        )
        assert r.status_code == 200 and len(r.history) == 1
    assert len(_Recorder.received) == 3
    for path, headers, data in _Recorder.received:
        assert path == "/store"
        assert headers["Content-Length"] == str(len(expected))
        assert "Transfer-Encoding" not in headers
        assert headers["Content-Type"] == body.content_type
        assert data == expected
    # requests streamed it in blocks: never a read() of everything at once.
    sent_sizes = Recording.sizes[1:]
    assert sent_sizes and all(s is not None and 0 < s <= 65536 for s in sent_sizes)
    got = parse([_Recorder.received[0][2]], body.boundary)
    assert [data for _, data in got] == [Path(p).read_bytes() for p in DICOM]


# ---------------------------------------------------------------- parser


@pytest.mark.parametrize("seed", range(40))
def test_round_trip_real_dicom_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    paths = rng.sample(DICOM, rng.randint(1, len(DICOM)))
    with MultipartBody(paths) as body:
        data = body.read()
        boundary = parse_content_type(body.content_type)[1]["boundary"]
    # Mostly large chunks; every fourth seed uses tiny ones so splits land everywhere.
    hi = 17 if seed % 4 == 0 else 65536
    parts = parse(chunked(data, rng, hi), boundary)
    assert [h for h, _ in parts] == [{"content-type": "application/dicom"}] * len(paths)
    files = [payload for _, payload in parts]
    assert files == [Path(p).read_bytes() for p in paths]
    assert all(f[128:132] == b"DICM" for f in files)


def test_one_byte_chunks() -> None:
    data = build(b"first", b"", b"\r\n--" + BB + b"x", headers=b"A: 1\r\nB-Long: two words\r\n")
    parts = parse([data[i : i + 1] for i in range(len(data))])
    assert [p for _, p in parts] == [b"first", b"", b"\r\n--" + BB + b"x"]
    assert parts[0][0] == {"a": "1", "b-long": "two words"}


NEAR_MISSES = [
    b"--" + BB,
    b"x--" + BB + b"\r\n",
    b"\r\n--" + BB + b"x\r\n",
    b"\r\n--" + BB + b"-x",
    b"\r\n--" + BB + b"  x\r\n",
    b"\r\n--" + BB + b" \r",
    b"\r\n--" + BB[:-1] + b"\r\n",
    b"\r\n-" + BB + b"\r\n",
    b"\r--" + BB + b"\r\n",
    b"\n--" + BB + b"\r\n",
    b"\r\n--",
    b"\r\n",
    b"\r",
    b"-",
]


@pytest.mark.parametrize("seed", range(10))
def test_near_misses_stay_in_the_body(seed: int) -> None:
    rng = random.Random(seed)
    # "#" between pieces: two near-misses side by side could form a real delimiter.
    bodies = [b"#".join(rng.choice(NEAR_MISSES) + b"#" + rng.randbytes(rng.randint(0, 5))
                        for _ in range(20)) for _ in range(3)]
    bodies += NEAR_MISSES  # each alone too, so it sits right before the real delimiter
    parts = parse(chunked(build(*bodies), rng, hi=rng.choice([1, 3, 50])))
    assert [p for _, p in parts] == bodies


def test_preamble_is_ignored() -> None:
    preamble = b"This is a preamble. x--" + BB + b"\r\n\r\n--" + BB + b"x\r\n--" + BB[:-1] + b"\r\n"
    data = preamble + b"\r\n" + build(b"one", b"two")
    for hi in (1, 5, 1000):
        parts = parse(chunked(data, random.Random(hi), hi))
        assert [p for _, p in parts] == [b"one", b"two"]


def test_transport_padding_after_boundaries() -> None:
    data = (
        b"--" + BB + b" \t \r\nContent-Type: a/b\r\n\r\none\r\n"
        b"--" + BB + b"\t\r\n\r\ntwo\r\n"
        b"--" + BB + b"--  \r\n"
    )
    for hi in (1, 2, 7, 100):
        parts = parse(chunked(data, random.Random(hi), hi))
        assert parts == [({"content-type": "a/b"}, b"one"), ({}, b"two")]


def test_epilogue_is_ignored() -> None:
    data = build(b"one") + b"epilogue\r\n--" + BB + b"\r\nContent-Type: x\r\n\r\nnot a part\r\n"
    assert [p for _, p in parse(chunked(data, random.Random(0), 4))] == [b"one"]
    # Close delimiter right at the end of the stream, without its CRLF.
    assert [p for _, p in parse([build(b"one")[:-2]])] == [b"one"]


def test_empty_parts_and_no_headers() -> None:
    data = b"--" + BB + b"\r\n\r\n\r\n--" + BB + b"\r\n\r\n\r\nx\r\n--" + BB + b"--"
    for hi in (1, 3, 100):
        assert parse(chunked(data, random.Random(hi), hi)) == [({}, b""), ({}, b"\r\nx")]
    assert parse([b"--" + BB + b"--\r\n"]) == []  # zero parts


@pytest.mark.parametrize(
    "data",
    [b"", b"no boundary at all", b"--other\r\n\r\nx\r\n--other--", b"x--" + BB + b"\r\n\r\n"],
)
def test_no_boundary(data: bytes) -> None:
    with pytest.raises(BoundaryNotFound, match=f"the body does not contain the boundary '{B}' "
                       "its Content-Type names"):
        parse([data])


def test_truncation_anywhere_raises() -> None:
    data = b"pre\r\n" + build(b"first body", b"", b"x\r\n--" + BB + b"y", headers=b"H: v\r\n")
    complete = data.index(b"--" + BB + b"--") + len(BB) + 4  # after the close "--B--"
    messages = set()
    for cut in range(len(data) + 1):
        for chunks in ([data[:cut]], [data[i : i + 1] for i in range(cut)]):
            if cut >= complete:
                assert len(parse(chunks)) == 3
            else:
                with pytest.raises(MultipartError) as err:
                    parse(chunks)
                messages.add(str(err.value))
    assert messages == {  # every position class was hit
        f"the body does not contain the boundary '{B}' its Content-Type names",
        "multipart stream truncated in part headers",
        "multipart stream truncated in a part body",
    }


def test_truncation_in_body_raises_from_iter_content() -> None:
    data = build(b"complete", b"A" * 100_000)[:-5000]
    parts = iter_parts(chunked(data, random.Random(3), 4096), B)
    first = next(parts)
    assert b"".join(first.iter_content()) == b"complete"
    second = next(parts)
    received = []
    with pytest.raises(MultipartError, match="truncated in a part body"):
        for chunk in second.iter_content():
            received.append(chunk)
    assert 0 < len(b"".join(received)) < 100_000
    with pytest.raises(MultipartError):  # the outer iterator will not carry on either
        next(parts)


def test_unread_parts_are_skipped() -> None:
    rng = random.Random(9)
    bodies = [rng.randbytes(n) for n in (200_000, 5, 70_000, 0, 10)]
    parts = iter_parts(chunked(build(*bodies), rng, 1000), B)
    got = []
    for i, part in enumerate(parts):
        it = part.iter_content()
        if i % 2 == 0 and bodies[i]:
            got.append(next(it))  # read a little, leave the rest
        else:
            got.append(b"".join(it))
    assert len(got) == 5
    assert got[1::2] == bodies[1::2]
    assert all(bodies[i].startswith(got[i]) for i in range(5))


def test_header_size_limit() -> None:
    big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n"
    with pytest.raises(MultipartError, match="headers larger"):
        parse(chunked(build(b"x", headers=big), random.Random(0), 8192))
    with pytest.raises(MultipartError, match="headers larger"):
        parse([build(b"x", headers=big)])
    ok = b"X-Big: " + b"a" * (MAX_HEADER_BYTES - 100) + b"\r\n"
    assert parse(chunked(build(b"x", headers=ok), random.Random(0), 8192))[0][1] == b"x"


def test_padding_limit() -> None:
    data = b"--" + BB + b" " * 5000 + b"\r\n\r\nx\r\n--" + BB + b"--"
    with pytest.raises(MultipartError, match="padding"):
        parse(chunked(data, random.Random(0), 1000))
    assert parse([data.replace(b" " * 5000, b" " * 4000)]) == [({}, b"x")]


def test_malformed_header_line() -> None:
    with pytest.raises(MultipartError, match="malformed part header"):
        parse([build(b"x", headers=b"no colon here\r\n")])


def test_bad_boundary_argument() -> None:
    for bad in ("", "b\u00e9"):
        with pytest.raises(MultipartError):
            iter_parts([b"x"], bad)


def test_parser_memory_is_bounded() -> None:
    peak = peak_of(f"""
import random
from dcmweb.multipart import iter_parts
block = random.Random(0).randbytes(65536)

def stream():  # a 64 MiB part produced on the fly, never held whole
    yield b"--{B}\\r\\n\\r\\n"
    for _ in range(1024):
        yield block
    yield b"\\r\\n--{B}--\\r\\n"
""", f"""
total = 0
for part in iter_parts(stream(), {B!r}):
    for chunk in part.iter_content():
        total += len(chunk)
assert total == 1024 * 65536, total
""")
    assert peak < 512 * 1024


def test_parse_passes_large_chunks_through_whole() -> None:
    """Payload bytes leave in about the chunks they arrived in, never byte by byte.

    Speed itself is measured in benchmarks/; this pins the property that makes it fast.
    """
    payload = random.Random(0).randbytes(1 << 20) * 32
    data = build(payload, payload)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    sizes = [len(c) for p in iter_parts(chunks, B) for c in p.iter_content()]
    assert sum(sizes) == 2 * len(payload)
    assert len(sizes) <= len(chunks) + 4


def test_part_bodies_are_views_of_the_chunks_that_arrived() -> None:
    """The parser copies no body bytes: each piece is a view of the chunk it came in (a
    500 MB retrieve spent a third of its CPU copying), and a chunk that cannot end in a
    split delimiter is passed on whole, nothing held back to be joined to the next. Only
    the first chunk is joined once, to the CRLF that lets a boundary open the stream."""
    rng = random.Random(5)
    bodies = [rng.randbytes(300_000).replace(b"\r", b"R") for _ in range(3)]
    data = build(*bodies)
    cuts = [0, 200_000, 350_000, 550_000, 700_000, len(data)]
    chunks = [data[a:b] for a, b in pairwise(cuts)]
    pieces = [(index, piece) for index, part in enumerate(iter_parts(chunks, B))
              for piece in part.iter_content()]
    assert [b"".join(p for i, p in pieces if i == n) for n in range(3)] == bodies
    assert all(isinstance(piece, memoryview) for _, piece in pieces)
    joined = pieces[0][1].obj  # the first chunk, after the CRLF
    later = [piece for _, piece in pieces if piece.obj is not joined]
    assert len(later) >= 5 and all(any(piece.obj is chunk for chunk in chunks[1:])
                                   for piece in later)
    # chunks[2] holds only body bytes: it leaves as one piece, all of it.
    assert any(piece.obj is chunks[2] and len(piece) == len(chunks[2]) for _, piece in pieces)
