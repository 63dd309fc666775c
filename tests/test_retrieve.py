"""dcmweb retrieve: levels, multipart parsing, files never half-written, hostile UIDs, memory."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, multipart
from test_journal import as_job

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.errors import UsageError
from dcmweb.output import human_size, plural
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.tinypacs import TinyPacs

ANY_TS = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def uids_of(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def study_of(source: Path) -> str:
    """The study path an answer holding ``source`` must be for (other studies are refused)."""
    return f"studies/{uids_of(source)[0]}"


def where(output: Path, source: Path) -> Path:
    study, series, sop = uids_of(source)
    return output / study / series / f"{sop}.dcm"


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def temp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".dcmweb-")]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """8 instances: 2 studies x 2 series x 2 instances."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 8, studies=2,
                                  series_per_study=2)


@pytest.fixture(scope="module")
def one_study(synth: list[Path]) -> list[Path]:
    """The 4 instances of the first study (2 series): what an answer for it may hold."""
    return [p for p in synth if uids_of(p)[0] == uids_of(synth[0])[0]]


@pytest.fixture
def filled(local_server: LocalServer, synth: list[Path]) -> LocalServer:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    local_server.clear_requests()
    return local_server


# -- levels -----------------------------------------------------------------------------------
def test_study_series_and_instance_levels(filled: LocalServer, synth: list[Path],
                                          tmp_path: Path) -> None:
    study, series, sop = uids_of(synth[0])
    in_study = [p for p in synth if uids_of(p)[0] == study]
    in_series = [p for p in synth if uids_of(p)[1] == series]
    assert (len(in_study), len(in_series)) == (4, 2)
    cases = [
        (f"studies/{study}", in_study),
        (f"studies/{study}/series/{series}", in_series),
        (f"studies/{study}/series/{series}/instances/{sop}", [synth[0]]),
    ]
    for index, (path, expected) in enumerate(cases):
        out = tmp_path / f"out{index}"
        result = dcmweb(filled.url, "retrieve", path, "--output", str(out))
        assert result.exit_code == 0, result.stderr
        assert files_under(out) == {where(out, p) for p in expected}
        assert all(sha(where(out, p)) == sha(p) for p in expected)
        assert lines(result.stderr)[-1].startswith(
            f"dcmweb: info: Transferred {human_size(sum(p.stat().st_size for p in expected))} "
            f"in {plural(len(expected), 'file')}")
        assert result.stdout == ""
    sent = [r for r in filled.requests if r.method == "GET"]
    assert [r.headers.get("Accept") for r in sent] == [ANY_TS] * 3


def test_whole_store_is_retrieved_study_by_study(filled: LocalServer, synth: list[Path],
                                                 tmp_path: Path) -> None:
    result = dcmweb("-m", filled.url, "retrieve", "--output", str(tmp_path / "all"))
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "all") == {where(tmp_path / "all", p) for p in synth}
    assert all(sha(where(tmp_path / "all", p)) == sha(p) for p in synth)
    wado = sorted(r.path.rsplit("/", 1)[1] for r in filled.requests
                  if "/studies/" in r.path and "?" not in r.path)
    assert wado == sorted({uids_of(p)[0] for p in synth})


def test_not_found_is_exit_4(filled: LocalServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = dcmweb(filled.url, "retrieve", "studies/1.2.3.404", "--output", str(out))
    assert result.exit_code == 4
    assert "HTTP 404" in result.stderr
    assert files_under(out) == set()


@pytest.mark.parametrize("path", ["studies", "studies/1.2/instances/3", "studies/../etc",
                                  "studies/1.2/series/3/instances/4/frames/x"])
def test_invalid_path_is_exit_2(filled: LocalServer, path: str, tmp_path: Path) -> None:
    result = dcmweb(filled.url, "retrieve", path, "--output", str(tmp_path))
    assert result.exit_code == 2
    assert "invalid path" in result.stderr
    assert filled.requests == []


@pytest.mark.parametrize("path", ["", " ", "/", " / "])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_path_that_names_nothing_is_not_the_whole_store(
        filled: LocalServer, path: str, dry_run: list[str], tmp_path: Path) -> None:
    """`retrieve "$P"` with an empty $P: refused, not a download of everything."""
    result = dcmweb(filled.url, "retrieve", path, "--output", str(tmp_path / "out"), *dry_run)
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr) == [
        f"dcmweb: error: invalid path {path!r}: it names no study (leave PATH out to "
        "retrieve the whole store)"]
    assert filled.requests == []
    assert not (tmp_path / "out").exists()


def test_a_blank_path_is_refused_by_the_library_too(filled: LocalServer, tmp_path: Path) -> None:
    with Client(filled.url) as client, pytest.raises(UsageError, match="names no study"):
        client.retrieve(" ", tmp_path)
    assert filled.requests == []


@pytest.mark.parametrize("path", ["foo/bar", "foo/metadata", "studies/1.2/instances/3/rendered"])
def test_an_invalid_path_names_every_shape_retrieve_takes(path: str) -> None:
    """Old dcmweb: 'expected studies/UID[/series/UID[/instances/UID]]]', three ']' to two
    '[', and neither metadata, rendered, frames nor bulk data."""
    result = dcmweb("http://127.0.0.1:9/dicom-web", "retrieve", path)
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: invalid path {path!r} (expected studies/UID[/series/UID"
        "[/instances/UID]], optionally ending in /metadata or /rendered; an instance's"
        " /frames/N[/rendered] or /bulkdata/TAG)"]


# -- --type and Accept ------------------------------------------------------------------------
@pytest.mark.parametrize(("part_type", "accept"), [
    (None, ANY_TS),
    ("application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
     'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'),
    ("image/jpeg", 'multipart/related; type="image/jpeg"'),
])
def test_type_builds_the_accept_header(part_type: str | None, accept: str,
                                       tmp_path: Path) -> None:
    with Hostile() as fake:
        jpeg = multipart([b"\xff\xd8jpeg\xff\xd9"], "b1", "image/jpeg")
        fake.route("GET", "/studies/1.2/series/3.4/instances/5.6",
                   lambda req: req.reply(200, jpeg, "multipart/related; boundary=b1"))
        extra = ["--type", part_type] if part_type else []
        result = dcmweb(fake.url, "retrieve", "studies/1.2/series/3.4/instances/5.6",
                        "--output", str(tmp_path), *extra)
        [seen] = fake.requests
    assert seen.headers["Accept"] == accept
    if part_type != "image/jpeg":  # a JPEG where DICOM was asked for is not kept
        assert result.exit_code == 1
        assert files_under(tmp_path) == set()
        return
    assert result.exit_code == 0, result.stderr
    # A non-DICOM part is named after the path asked for and its own type.
    saved = tmp_path / "1.2" / "3.4" / "5.6_frame_1.jpg"
    assert files_under(tmp_path) == {saved}
    assert saved.read_bytes() == b"\xff\xd8jpeg\xff\xd9"


@pytest.mark.parametrize(("part_type", "extension"), [
    ("image/jpx", ".jpx"),
    ("image/dicom-rle", ".rle"),
    ("application/octet-stream", ".raw"),
    ("image/x-unheard-of", ".bin"),
])
def test_an_image_part_is_named_after_its_type(part_type: str, extension: str,
                                               tmp_path: Path) -> None:
    """The same names as the frames a `.../frames/N` retrieve saves (one table of types)."""
    with Hostile() as fake:
        body = multipart([b"pixels"], "b1", part_type)
        fake.route("GET", "/studies/1.2/series/3.4/instances/5.6",
                   lambda req: req.reply(200, body, "multipart/related; boundary=b1"))
        result = dcmweb(fake.url, "retrieve", "studies/1.2/series/3.4/instances/5.6",
                        "--output", str(tmp_path), "--type", part_type)
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / "1.2" / "3.4" / f"5.6_frame_1{extension}"
    assert files_under(tmp_path) == {saved}
    assert saved.read_bytes() == b"pixels"


@pytest.mark.parametrize("args", [
    ["studies/1.2/series/3.4/instances/5.6/rendered", "--viewport", "0,0"],
    ["studies/1.2/series/3.4/instances/5.6/rendered", "--window", "1,2,nope"],
    ["studies/1.2", "--single-part"],
    ["studies/1.2/series/3.4/instances/5.6/frames/1", "--transfer-syntax", "1.2",
     "--type", "image/png"],
], ids=["viewport", "window", "single-part", "type-and-syntax"])
def test_bad_input_found_as_the_run_begins_is_the_error_alone(args: list[str],
                                                               tmp_path: Path) -> None:
    """Old dcmweb printed "Transferred 0 B in 0 files" before these usage errors."""
    result = dcmweb("http://127.0.0.1:9/dicom-web", "retrieve", *args, "--output",
                    str(tmp_path))
    assert result.exit_code == 2
    [line] = lines(result.stderr)
    assert line.startswith("dcmweb: error: ")


def test_invalid_type_is_exit_2(tmp_path: Path) -> None:
    result = dcmweb("http://127.0.0.1:9/dicom-web", "retrieve", "studies/1", "--type", "jpeg",
                    "--output", str(tmp_path))
    assert result.exit_code == 2
    assert "invalid --type" in result.stderr


# -- multipart forms --------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", [
    "multipart/related; type=\"application/dicom\"; boundary=plain-1",
    "multipart/related; boundary=\"quoted:=,? boundary\"; type=\"application/dicom\"",
    "Multipart/Related; Boundary=\"plain-1\"",
])
def test_boundary_from_the_answer_header(content_type: str, one_study: list[Path],
                                         tmp_path: Path) -> None:
    study = study_of(one_study[0])
    boundary = re.search(r'boundary="?([^";]+)', content_type, re.I).group(1)
    body = multipart([p.read_bytes() for p in one_study[:3]], boundary)
    with Hostile() as fake:
        fake.route("GET", f"/{study}", lambda req: req.reply(200, body, content_type))
        result = dcmweb(fake.url, "retrieve", study, "--output", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, p) for p in one_study[:3]}
    assert all(sha(where(tmp_path, p)) == sha(p) for p in one_study[:3])


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_content_encoded_answer_is_decoded(encoding: str, one_study: list[Path],
                                           tmp_path: Path) -> None:
    """Chunks are handed on as read only when the body has no content coding: a gzipped
    answer (a proxy may send one, since requests offers gzip) is still decoded."""
    study = study_of(one_study[0])
    import gzip

    body = multipart([p.read_bytes() for p in one_study[:3]], "plain-1")
    sent = gzip.compress(body) if encoding == "gzip" else body
    content_type = 'multipart/related; type="application/dicom"; boundary=plain-1'
    with Hostile() as fake:
        fake.route("GET", f"/{study}", lambda req: req.reply(
            200, sent, content_type, headers={"Content-Encoding": encoding}))
        result = dcmweb(fake.url, "retrieve", study, "--output", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, p) for p in one_study[:3]}
    assert all(sha(where(tmp_path, p)) == sha(p) for p in one_study[:3])


def test_single_part_answer(synth: list[Path], tmp_path: Path) -> None:
    study, series, sop = uids_of(synth[0])
    path = f"/studies/{study}/series/{series}/instances/{sop}"
    with Hostile() as fake:
        fake.route("GET", path, lambda req: req.reply(200, synth[0].read_bytes(),
                                                      "application/dicom; transfer-syntax=1.2"))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, synth[0])}
    assert sha(where(tmp_path, synth[0])) == sha(synth[0])


def test_tinypacs_quoted_boundary_and_single_part_instance(
        tinypacs: TinyPacs, synth: list[Path], tmp_path: Path) -> None:
    with Client(tinypacs.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    study, series, sop = uids_of(synth[0])
    in_study = [p for p in synth if uids_of(p)[0] == study]
    whole = dcmweb(tinypacs.url, "retrieve", f"studies/{study}", "--output",
                   str(tmp_path / "study"))  # multipart with boundary="..."
    one = dcmweb(tinypacs.url, "retrieve", f"studies/{study}/series/{series}/instances/{sop}",
                 "--output", str(tmp_path / "one"))  # single-part application/dicom
    assert (whole.exit_code, one.exit_code) == (0, 0), whole.stderr + one.stderr
    assert files_under(tmp_path / "study") == {where(tmp_path / "study", p) for p in in_study}
    assert files_under(tmp_path / "one") == {where(tmp_path / "one", synth[0])}
    # tiny-pacs rewrites the File Meta group; the data set after it comes back as sent.
    assert pydicom.dcmread(where(tmp_path / "one", synth[0])) == pydicom.dcmread(synth[0])


def test_orthanc_instance_level(orthanc: Orthanc, synth: list[Path], tmp_path: Path) -> None:
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(synth[:2])} == {"stored"}
    study, series, sop = uids_of(synth[1])
    out = tmp_path / "out"
    result = dcmweb(orthanc.url, "retrieve", f"studies/{study}/series/{series}/instances/{sop}",
                    "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {where(out, synth[1])}
    assert sha(where(out, synth[1])) == sha(synth[1])
    missing = dcmweb(orthanc.url, "retrieve", "studies/1.2.3.404", "--output", str(out))
    assert missing.exit_code == 4


# -- cut streams ------------------------------------------------------------------------------
def cut_after(body: bytes, part_bytes: bytes) -> bytes:
    """The body up to the middle of the part holding part_bytes."""
    start = body.index(part_bytes)
    return body[: start + len(part_bytes) // 2]


@pytest.mark.parametrize("length_lie", [True, False], ids=["content-length", "connection-close"])
def test_cut_stream_leaves_no_half_file_and_is_reported(one_study: list[Path], tmp_path: Path,
                                                        length_lie: bool) -> None:
    study = study_of(one_study[0])
    first, second = one_study[0].read_bytes(), one_study[1].read_bytes()
    body = multipart([first, second], "cut")
    partial = cut_after(body, second)

    def cut(req: Request) -> None:
        req.stream(200, "multipart/related; boundary=cut", [partial],
                   claimed_length=len(body) if length_lie else None)

    out = tmp_path / "out"
    with Hostile() as fake:
        fake.route("GET", f"/{study}", cut)
        result = dcmweb("--retries", "0", fake.url, "retrieve", study, "--output", str(out))
        asked = len(fake.requests)
    # 6 when the complete first part was saved, 1 when nothing was
    assert result.exit_code == (6 if files_under(out) else 1)
    assert "cut off" in result.stderr
    assert asked == 3  # asked again twice, then reported
    assert not where(out, one_study[1]).exists()
    if length_lie:
        # The cut is raised at the early end, which may come before the complete first
        # part was handed on; if it was saved, it is whole.
        assert files_under(out) <= {where(out, one_study[0])}
    else:
        assert files_under(out) == {where(out, one_study[0])}  # the complete part only
    for saved in files_under(out):
        assert sha(saved) == sha(one_study[0])
    assert temp_leftovers(out) == []


def test_cut_once_then_complete_succeeds(one_study: list[Path], tmp_path: Path) -> None:
    study = study_of(one_study[0])
    body = multipart([p.read_bytes() for p in one_study[:3]], "once")
    partial = cut_after(body, one_study[2].read_bytes())
    answers = iter([partial])

    def flaky(req: Request) -> None:
        chunk = next(answers, None)
        if chunk is not None:
            req.stream(200, "multipart/related; boundary=once", [chunk], claimed_length=len(body))
        else:
            req.reply(200, body, "multipart/related; boundary=once")

    with Hostile() as fake:
        fake.route("GET", f"/{study}", flaky)
        result = dcmweb(fake.url, "retrieve", study, "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 0, result.stderr
    assert asked == 2
    assert files_under(tmp_path) == {where(tmp_path, p) for p in one_study[:3]}
    assert all(sha(where(tmp_path, p)) == sha(p) for p in one_study[:3])
    assert temp_leftovers(tmp_path) == []


# -- hostile UIDs -----------------------------------------------------------------------------
def with_uids(source: Path, study: str, series: str, sop: str) -> bytes:
    """The file's bytes with its three UIDs replaced (NUL-padded to the same length)."""
    data = source.read_bytes()
    for old, new in zip(uids_of(source), (study, series, sop), strict=True):
        assert len(new) <= len(old)
        data = data.replace(old.encode(), new.encode().ljust(len(old), b"\0"))
    return data


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("evil", [
    ("../../evil", None, None),
    (None, "1.2/../../../evil", None),
    (None, None, "../../../../evil"),
    (None, None, ".."),
    ("/tmp", None, None),
])
def test_unsafe_uids_never_leave_the_output_folder(one_study: list[Path], tmp_path: Path,
                                                   evil: tuple[str | None, ...]) -> None:
    study = study_of(one_study[0])
    good, bad = one_study[0], one_study[1]
    values = [e or u for e, u in zip(evil, uids_of(bad), strict=True)]
    hostile_part = with_uids(bad, *values)
    assert pydicom.dcmread(io.BytesIO(hostile_part)).SOPInstanceUID == values[2]
    body = multipart([good.read_bytes(), hostile_part], "evil")
    out = tmp_path / "a" / "b" / "c" / "out"
    before = files_under(tmp_path)
    with Hostile() as fake:
        fake.route("GET", f"/{study}",
                   lambda req: req.reply(200, body, "multipart/related; boundary=evil"))
        result = dcmweb(fake.url, "retrieve", study, "--output", str(out))
    assert result.exit_code == 6
    assert "refused unsafe UIDs" in result.stderr
    assert files_under(tmp_path) - before == {where(out, good)}  # nothing anywhere else
    assert not Path("/tmp/evil").exists() and not (tmp_path / "evil").exists()
    assert temp_leftovers(out) == []


def test_unsafe_study_uid_in_a_store_listing_is_refused(synth: list[Path],
                                                        tmp_path: Path) -> None:
    rows = [{"0020000D": {"vr": "UI", "Value": ["../../evil"]}}]

    def studies(req: Request) -> None:
        req.json(200, rows if req.params.get("offset") == "0" else [], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/studies", studies)
        result = dcmweb(fake.url, "retrieve", "--output", str(tmp_path))
        paths = {r.path for r in fake.requests}
    assert result.exit_code == 1  # nothing was retrieved
    assert "refused unsafe study UID" in result.stderr
    assert paths == {"/studies"}  # never asked for the evil path
    assert files_under(tmp_path) == set()


def test_part_that_is_not_dicom_is_reported(tmp_path: Path) -> None:
    body = multipart([b"this is not DICOM"], "junk")
    with Hostile() as fake:
        fake.route("GET", "/studies/1.2",
                   lambda req: req.reply(200, body, "multipart/related; boundary=junk"))
        result = dcmweb(fake.url, "retrieve", "studies/1.2", "--output", str(tmp_path))
    assert result.exit_code == 1
    assert "not a readable DICOM file" in result.stderr
    assert lines(result.stderr)[-1] == \
        "dcmweb: error: nothing was retrieved (1 item failed)"
    assert files_under(tmp_path) == set()


# -- memory -----------------------------------------------------------------------------------
PEAK_SCRIPT = """
import sys
sys.argv[0] = 'dcmweb'
from dcmweb.cli import cli
try:
    cli.main(prog_name='dcmweb')  # main() would end the process without the finally
finally:
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')
"""


def big_study(directory: Path, count: int) -> tuple[str, list[Path]]:
    """`count` instances of 512 x 512 x 16 bit (525 KB each) in one study, plus a lone one."""
    ds = pydicom.dcmread(corpus.pydicom_test_files_dir() / "CT_small.dcm")
    ds.Rows = ds.Columns = 512
    ds.PixelData = os.urandom(512 * 512 * 2)
    root = pydicom.uid.generate_uid()[:30] + "."
    ds.StudyInstanceUID, ds.SeriesInstanceUID = root + "1.1", root + "2.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = root + "3.1000"
    directory.mkdir()
    ds.save_as(directory / "template.dcm", enforce_file_format=True)
    template = (directory / "template.dcm").read_bytes()
    paths = []
    for i in range(count + 1):
        data = template.replace(f"{root}3.1000".encode(), f"{root}3.{1000 + i}".encode())
        if i == count:  # the lone instance, for the baseline
            data = data.replace(f"{root}1.1".encode(), f"{root}1.2".encode())
        paths.append(directory / f"{i}.dcm")
        paths[-1].write_bytes(data)
    (directory / "template.dcm").unlink()
    return root, paths


def peak_kib(url: str, path: str, output: Path) -> int:
    """Peak resident memory of a `dcmweb retrieve` process (VmHWM, read as it exits)."""
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, "-q", url, "retrieve", path,
                           "--output", str(output)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(re.search(r"^PEAK (\d+)$", done.stderr, re.M).group(1))


def test_memory_stays_flat_on_a_large_study(local_server: LocalServer, tmp_path: Path) -> None:
    root, paths = big_study(tmp_path / "big", 100)
    with Client(local_server.url, workers=4) as client:
        assert {r.status for r in client.store(paths)} == {"stored"}
    study_bytes = sum(p.stat().st_size for p in paths[:-1])
    assert study_bytes > 50_000_000
    baseline = peak_kib(local_server.url, f"studies/{root}1.2", tmp_path / "small")
    peak = peak_kib(local_server.url, f"studies/{root}1.1", tmp_path / "out")
    saved = files_under(tmp_path / "out")
    assert len(saved) == 100
    assert sum(p.stat().st_size for p in saved) == study_bytes
    # The whole study is 52 MB; streaming keeps the process where a one-file retrieve is.
    assert peak < 80 * 1024, f"peak {peak} KiB"
    assert peak - baseline < 16 * 1024, f"peak {peak} KiB vs {baseline} KiB for one file"



def test_whole_store_goes_on_past_a_study_that_fails(synth: list[Path], tmp_path: Path) -> None:
    """A study deleted since the listing (404), or answered without a boundary, fails
    alone: the other studies are still saved, and the run ends with exit 6."""
    good = synth[0]
    study = uids_of(good)[0]
    rows = [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in ("9.9.1", study, "9.9.2")]

    def studies(req: Request) -> None:
        req.json(200, rows if req.params.get("offset") == "0" else [], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/studies", studies)
        fake.route("GET", "/studies/9.9.1", lambda req: req.json(404, {"error": {
            "code": 404, "message": "no such study", "status": "NOT_FOUND"}}))
        fake.route("GET", f"/studies/{study}", lambda req: req.reply(
            200, multipart([good.read_bytes()], "b1"), "multipart/related; boundary=b1"))
        fake.route("GET", "/studies/9.9.2", lambda req: req.reply(
            200, b"--x\r\n\r\n", "multipart/related"))
        result = dcmweb(fake.url, "retrieve", "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, good)}
    assert "dcmweb: error: studies/9.9.1: HTTP 404" in result.stderr
    assert "no such study" in result.stderr
    assert "studies/9.9.2: multipart answer without a boundary" in result.stderr


def test_a_file_where_the_study_folder_goes_is_one_clear_error(synth: list[Path],
                                                               tmp_path: Path) -> None:
    study = uids_of(synth[0])[0]
    (tmp_path / study).write_text("a file where the study folder should go")
    body = multipart([synth[0].read_bytes()], "b1")
    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}",
                   lambda req: req.reply(200, body, "multipart/related; boundary=b1"))
        result = dcmweb(fake.url, "retrieve", f"studies/{study}", "--output", str(tmp_path))
    assert result.exit_code == 1
    series_folder = where(tmp_path, synth[0]).parent
    assert lines(result.stderr) == [
        f"dcmweb: error: studies/{study}: cannot make the folder {series_folder}: "
        f"{tmp_path / study} is a file (move or rename it)",
        "dcmweb: info: Transferred 0 B in 0 files; 1 failed",
        "dcmweb: error: nothing was retrieved (1 item failed)"]
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("locked", ["out", "out/{study}"])
def test_a_folder_the_job_cannot_write_is_the_one_named(filled: LocalServer, synth: list[Path],
                                                        tmp_path: Path, locked: str) -> None:
    """Old dcmweb named the series folder it meant to make (never made): "cannot write in
    out/STUDY/SERIES", whichever folder refused."""
    study, series, _ = uids_of(synth[0])
    folder = tmp_path / locked.format(study=study)
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    result = as_job(filled.url, "retrieve", f"studies/{study}/series/{series}", "-o",
                    str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: cannot write in {folder}: Permission denied (check the output "
        "folder: its permissions and free space)")
    assert files_under(tmp_path / "out") == set()


@pytest.mark.parametrize("below", ["", "/sub"])
@pytest.mark.parametrize("options", [[], ["--dry-run"], ["-m"]])
def test_an_output_that_is_a_file_is_a_usage_error(filled: LocalServer, synth: list[Path],
                                                   tmp_path: Path, below: str,
                                                   options: list[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("notes")
    output = f"{afile}{below}"
    result = dcmweb(filled.url, "retrieve", study_of(synth[0]), "-o", output, *options)
    assert result.exit_code == 2, result.stderr
    hint = f"{afile} is a file: choose a folder" if below else "choose a folder"
    assert lines(result.stderr) == [f"dcmweb: error: --output {output} is not a folder ({hint})"]
    assert filled.requests == []
    assert afile.read_text() == "notes"


def test_parallel_study_retrieve_goes_series_by_series(local_server: LocalServer,
                                                       tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 12, studies=1, series_per_study=3)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    study = uids_of(files[0])[0]
    local_server.clear_requests()
    result = dcmweb("-m", "--workers", "3", local_server.url, "retrieve", f"studies/{study}",
                    "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    wado = [r.path for r in local_server.requests if r.method == "GET" and "/series/" in r.path
            and not r.path.endswith(("/series", "/metadata")) and "?" not in r.path]
    assert len(wado) == 3  # one request per series, none for the whole study
    assert files_under(tmp_path / "out") == {where(tmp_path / "out", p) for p in files}
    assert all(sha(where(tmp_path / "out", p)) == sha(p) for p in files)
    # Without -m the study is one request.
    local_server.clear_requests()
    result = dcmweb(local_server.url, "retrieve", f"studies/{study}", "--output",
                    str(tmp_path / "one"))
    assert result.exit_code == 0, result.stderr
    assert [r.path.split("?")[0].rsplit("/dicomWeb", 1)[1] for r in local_server.requests] \
        == [f"/studies/{study}"]


def test_parallel_study_retrieve_goes_series_by_series_on_orthanc(orthanc: Orthanc,
                                                                  tmp_path: Path) -> None:
    """Orthanc's instance counts add up: the split into series is kept (a count that
    does not add up would fetch the whole study)."""
    files = corpus.synthetic_files(tmp_path / "in", 6, series_per_study=3)
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    study = uids_of(files[0])[0]
    result = dcmweb("-v", "-m", orthanc.url, "retrieve", f"studies/{study}", "--output",
                    str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    wado = re.findall(rf"GET \S+/studies/{re.escape(study)}(/series/[0-9.]+)? -> 200",
                      result.stderr)
    # Its series only: never the whole study (Orthanc would start sending all of it)...
    assert sorted(wado) == sorted(f"/series/{uids_of(f)[1]}" for f in files[:3])
    # ...whose listing is checked by one instance's metadata (it may lag behind a delete).
    assert len(re.findall(rf"GET \S+/studies/{re.escape(study)}/series/[0-9.]+/instances/"
                          r"[0-9.]+/metadata -> 200", result.stderr)) == 1
    assert files_under(tmp_path / "out") == {where(tmp_path / "out", p) for p in files}


def test_leaving_the_loop_stops_the_retrieve(tmp_path: Path) -> None:
    """Old dcmweb went on fetching the studies queued for its threads after the caller
    left the loop, and left the half-written file of the one in flight."""
    root, (slow_file, fast_file) = big_study(tmp_path / "big", 1)
    fast, slow = f"{root}1.2", f"{root}1.1"
    queued = [f"9.9.{n}" for n in range(4)]
    rows = [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in (fast, slow, *queued)]
    body = multipart([slow_file.read_bytes()], "b")
    released = threading.Event()

    def half_then_wait(req: Request) -> None:
        def chunks() -> Iterator[bytes]:
            yield body[:len(body) // 2]
            released.wait(10)
            yield body[len(body) // 2:]
        req.stream(200, "multipart/related; boundary=b", chunks())

    out = tmp_path / "out"
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, rows if req.params.get("offset") == "0" else [], "application/dicom+json"))
        fake.route("GET", f"/studies/{fast}", lambda req: req.reply(
            200, multipart([fast_file.read_bytes()], "b"), "multipart/related; boundary=b"))
        fake.route("GET", f"/studies/{slow}", half_then_wait)
        for uid in queued:  # slow too: a thread that takes one is busy for a while
            fake.route("GET", f"/studies/{uid}", lambda req: (time.sleep(0.3),
                                                              req.json(404, {})))
        with Client(fake.url, workers=2) as client:
            results = client.iter_retrieve(None, out)
            first = next(results)
            deadline = time.monotonic() + 10
            while not temp_leftovers(out) and time.monotonic() < deadline:
                time.sleep(0.01)  # until the slow study's file is half-written
            results.close()
            assert temp_leftovers(out) == []  # removed at once, its answer still coming
            released.set()
            time.sleep(0.5)  # the request in flight ends
        asked = [r.path for r in fake.requests]
    assert first.path == where(out, fast_file)
    assert files_under(out) == {where(out, fast_file)}
    # The thread that saved the first study took the next one before the loop was left
    # (its 404 then checked by a search under it).
    assert len({path.split("/")[2] for path in asked if path.startswith("/studies/9.9.")}
               ) <= 1, asked
