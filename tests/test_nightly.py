"""The nightly cron job over many nights: files still being copied in when it runs,
--min-age, a quiet good night, --retry-failed after a folder was fixed; against the local
GCP-like server (it stores whatever it is given, so a half-written file would show)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.store import CHANGED_WHILE_SENT
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rows(report: Path) -> list[dict[str, str]]:
    with report.open(newline="") as handle:
        return list(csv.DictReader(handle))


def held(server: LocalServer) -> int:
    return len(server.store.query("SELECT sop_uid FROM instances"))


def write_in_place(path: Path) -> None:
    """Go on with a copy that set the file's size first (rsync --preallocate, an SMB
    copy): bytes written in place, the size kept, the mtime moved."""
    before = os.stat(path)
    with path.open("r+b") as handle:
        handle.seek(before.st_size - 100)
        handle.write(b"\x01" * 100)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_a_file_written_after_its_listing_is_not_stored_and_its_batch_is(
        local_server: LocalServer, tmp_path: Path) -> None:
    first, second, third = corpus.synthetic_files(tmp_path / "in", 3)

    def listing() -> Iterator[Path]:
        yield first
        write_in_place(first)  # after its head was read, before its batch goes out
        yield second
        yield third

    with Client(local_server.url) as client:
        results = {r.path: r for r in client.iter_store(listing(), batch_size=3)}
    assert (results[first].status, results[first].message) == ("failed", CHANGED_WHILE_SENT)
    assert [results[p].status for p in (second, third)] == ["stored", "stored"]
    assert held(local_server) == 2  # old dcmweb stored the half-written file, "stored"
    # The cut request reached the server as no request at all; the others went in one.
    assert sum(r.method == "POST" for r in local_server.requests) == 1
