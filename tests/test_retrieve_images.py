"""retrieve --type image/png (or any type other than DICOM) of a study, a series or the
whole store: asked for instance by instance, each part named STUDY/SERIES/SOP_frame_N.png
as Google's old dcmweb named it. The local server answers 406 to that type, so a fake in
front of it sends the images and relays the searches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, forward, multipart
from test_retrieve import files_under, uids_of

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

PNG = b"\x89PNG\r\n\x1a\n"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """6 instances: 2 studies x 2 series (the first study: two series of 2)."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 6, studies=2,
                                  series_per_study=2)


def image(sop: str, frame: int) -> bytes:
    return PNG + f"{sop} frame {frame}".encode()


@contextmanager
def images(server: LocalServer, frames: dict[str, int], refused: set[str] = frozenset()
           ) -> Iterator[Hostile]:
    """A fake in front of ``server``: an instance asked for as image/png gets one part
    per frame (``frames``, 1 when not named there), or a 406 for a SOP in ``refused``;
    the rest (searches, other types) is relayed."""
    relay = forward(server.root_url)

    def action(req: Request) -> None:
        path = req.seen.path
        if "image/png" not in req.seen.headers.get("Accept", "") or "/instances/" not in path:
            relay(req)
            return
        sop = path.rsplit("/", 1)[1]
        if sop in refused:
            req.json(406, {"error": {"code": 406, "message": "no image of that one"}})
            return
        parts = [image(sop, n) for n in range(1, frames.get(sop, 1) + 1)]
        req.reply(200, multipart(parts, "png", "image/png"),
                  'multipart/related; type="image/png"; boundary=png')

    with Hostile() as fake:
        fake.fallback = action
        yield fake


def through(fake: Hostile, server: LocalServer) -> str:
    return fake.root_url + urlsplit(server.url).path


def expected(output: Path, sources: list[Path], frames: dict[str, int]) -> dict[Path, bytes]:
    files = {}
    for source in sources:
        study, series, sop = uids_of(source)
        for n in range(1, frames.get(sop, 1) + 1):
            files[output / study / series / f"{sop}_frame_{n}.png"] = image(sop, n)
    return files


@pytest.fixture
def filled(local_server: LocalServer, synth: list[Path]) -> LocalServer:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    return local_server


@pytest.mark.parametrize("level", ["store", "study", "series"])
@pytest.mark.parametrize("workers", [[], ["-m", "--workers", "3"]], ids=["1", "m"])
def test_images_of_a_study_series_or_store_are_named_by_instance(
        filled: LocalServer, synth: list[Path], tmp_path: Path, level: str,
        workers: list[str]) -> None:
    study, series, sop = uids_of(synth[0])
    path = {"store": [], "study": [f"studies/{study}"],
            "series": [f"studies/{study}/series/{series}"]}[level]
    under = [p for p in synth if level == "store" or (uids_of(p)[0] == study and (
        level == "study" or uids_of(p)[1] == series))]
    assert len(under) == {"store": 6, "study": 4, "series": 2}[level]
    frames = {sop: 2}  # a multi-frame instance: a part per frame
    out = tmp_path / "out"
    with images(filled, frames) as fake:
        result = dcmweb(*workers, through(fake, filled), "retrieve", *path, "--type",
                        "image/png", "--output", str(out))
        asked = sorted(r.path.rsplit("/", 1)[1] for r in fake.seen()
                       if "image/png" in r.headers.get("Accept", ""))
    assert result.exit_code == 0, result.stderr
    want = expected(out, under, frames)
    assert files_under(out) == set(want)
    assert all(path.read_bytes() == data for path, data in want.items())
    assert asked == sorted(uids_of(p)[2] for p in under)  # one request per instance
    assert f"in {len(want)} files" in lines(result.stderr)[-1]


def test_the_dry_run_lists_the_first_part_of_each_instance(
        filled: LocalServer, synth: list[Path], tmp_path: Path) -> None:
    study = uids_of(synth[0])[0]
    under = [p for p in synth if uids_of(p)[0] == study]
    out = tmp_path / "out"
    result = dcmweb(filled.url, "retrieve", f"studies/{study}", "--type", "image/png",
                    "--output", str(out), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(str(p) for p in expected(out, under, {}))
    assert "each instance is listed as its first part, SOP_frame_1" in result.stderr
    assert f"would write at least 4 files under {out}; nothing written" in result.stderr
    assert not out.exists()
    # What the real run writes for instances of one frame each: the same names.
    with images(filled, {}) as fake:
        real = dcmweb(through(fake, filled), "retrieve", f"studies/{study}", "--type",
                      "image/png", "--output", str(out))
    assert real.exit_code == 0, real.stderr
    assert sorted(str(p) for p in files_under(out)) == sorted(result.stdout.splitlines())


@pytest.mark.parametrize("refuse", ["one", "all"])
def test_an_instance_the_server_cannot_send_fails_alone(
        filled: LocalServer, synth: list[Path], tmp_path: Path, refuse: str) -> None:
    study, series, _ = uids_of(synth[0])
    under = [p for p in synth if uids_of(p)[:2] == (study, series)]
    refused = {uids_of(p)[2] for p in (under[:1] if refuse == "one" else under)}
    out = tmp_path / "out"
    with images(filled, {}, refused) as fake:
        result = dcmweb(through(fake, filled), "retrieve", f"studies/{study}/series/{series}",
                        "--type", "image/png", "--output", str(out))
    kept = [p for p in under if uids_of(p)[2] not in refused]
    assert result.exit_code == (6 if kept else 1), result.stderr
    assert files_under(out) == set(expected(out, kept, {}))
    for sop in refused:
        assert any(line.startswith(f"dcmweb: error: studies/{study}/series/{series}/instances/"
                                   f"{sop}: the server cannot send") for line in
                   lines(result.stderr)), result.stderr


@pytest.mark.parametrize("workers", [[], ["-m"]], ids=["1", "m"])
def test_a_study_with_no_instance_is_not_found_and_nothing_is_left(
        local_server: LocalServer, tmp_path: Path, workers: list[str]) -> None:
    """Its listing found nothing: the summary said 'the rest of the listing not retrieved
    (stopped)' before the error."""
    result = dcmweb(*workers, local_server.url, "retrieve", "studies/9.9", "--type",
                    "image/png", "--output", str(tmp_path / "out"))
    assert result.exit_code == 4, result.stderr
    assert lines(result.stderr) == [
        "dcmweb: info: Transferred 0 B in 0 files",
        "dcmweb: error: retrieve studies/9.9: not found (a search finds no instance under it) "
        "(check the HOST URL and the UIDs in the path)"]


def test_dicom_is_still_asked_for_in_one_request_per_study(
        filled: LocalServer, synth: list[Path], tmp_path: Path) -> None:
    study = uids_of(synth[0])[0]
    with images(filled, {}) as fake:
        result = dcmweb(through(fake, filled), "retrieve", f"studies/{study}", "--output",
                        str(tmp_path))
        asked = [r.path for r in fake.seen() if r.method == "GET"]
    assert result.exit_code == 0, result.stderr
    assert [path.rsplit("/", 2)[1:] for path in asked] == [["studies", study]]


def test_an_instance_listed_with_unsafe_uids_fails_alone(tmp_path: Path) -> None:
    def row(study: str, series: str, sop: str) -> dict[str, object]:
        return {tag: {"vr": "UI", "Value": [uid]} for tag, uid in
                (("0020000D", study), ("0020000E", series), ("00080018", sop))}

    rows = [row("1.2", "3.4", "../../x"), row("1.2", "3.4", "5.6")]
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(
            200, rows if req.params.get("offset") == "0" else [], "application/dicom+json"))
        fake.route("GET", "/studies/1.2/series/3.4/instances/5.6", lambda req: req.reply(
            200, multipart([image("5.6", 1)], "png", "image/png"),
            'multipart/related; type="image/png"; boundary=png'))
        result = dcmweb(fake.url, "retrieve", "--type", "image/png", "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {tmp_path / "1.2" / "3.4" / "5.6_frame_1.png"}
    assert "dcmweb: error: instances: refused unsafe UIDs from the server " \
        "('1.2', '3.4', '../../x')" in lines(result.stderr)


@pytest.mark.parametrize("others", [[], ["studies/1.2.3.404"]], ids=["one-path", "a-list"])
def test_an_instance_listed_then_deleted_is_gone_in_a_list_of_paths_too(
        tmp_path: Path, synth: list[Path], quick_operation_polls: None,
        others: list[str]) -> None:
    """A study's instances asked for one by one (--type image/png) are named by a
    search, not by the user: one deleted moments ago (searches lag behind deletes) is
    `gone since it was listed`, not a failure. Was so for one path; in a list, the same
    study's instance was a failed item (exit 6, or 1)."""
    study = uids_of(synth[0])[0]
    under = sorted((p for p in synth if uids_of(p)[0] == study), key=uids_of)
    with LocalServer(tmp_path / "store", delete_delay=0.1, search_lag=60) as server:
        with Client(server.url) as client:
            assert {r.status for r in client.store(under)} == {"stored"}
            # Not the first instance a search lists: the listing checks that one.
            listed = client.search("instances", f"StudyInstanceUID={study}")
            _, series, sop = next((s, r, i) for s, r, i in map(uids_of, under)
                                  if i != listed[0]["00080018"]["Value"][0])
            client.delete(f"studies/{study}/series/{series}/instances/{sop}")
        with images(server, {}) as fake:
            fake.route("GET", f"{urlsplit(server.url).path}/studies/{study}/series/{series}/"
                       f"instances/{sop}", lambda req: req.json(404, {"error": {
                           "code": 404, "message": "instance not found"}}))
            out = tmp_path / "out"
            result = dcmweb(through(fake, server), "retrieve", f"studies/{study}", *others,
                            "--type", "image/png", "--output", str(out))
    assert result.exit_code == (6 if others else 0), result.stderr
    assert (f"dcmweb: warning: studies/{study}/series/{series}/instances/{sop}: gone since "
            "it was listed") in "\n".join(lines(result.stderr))
    assert len(files_under(out)) == len(under) - 1
    assert lines(result.stderr)[-1 - bool(others)].endswith(
        f" in {len(under) - 1} files; " + ("1 failed, " if others else "")
        + "1 instance gone since it was listed")
