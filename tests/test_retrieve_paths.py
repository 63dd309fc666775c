"""retrieve PATH... and --paths-from FILE: several paths in one run and one pool, against
the local server and Orthanc; search --format paths to feed it."""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_retrieve import files_under, uids_of, where
from ulimits import run_limited

from dcmweb import Client, RenderOptions
from dcmweb.cli import cli
from dcmweb.errors import UsageError
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc

PNG = b"\x89PNG\r\n\x1a\n"


def dcmweb(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def instance(source: Path) -> str:
    study, series, sop = uids_of(source)
    return f"studies/{study}/series/{series}/instances/{sop}"


@pytest.fixture
def stored(local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path
           ) -> list[Path]:
    """pydicom's CT and MR files and 4 synthetic instances (2 studies), on the server."""
    files = [p for p in pydicom_files if p.name in ("CT_small.dcm", "MR_small.dcm")]
    files += corpus.synthetic_files(tmp_path / "synth", 4, studies=2)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    local_server.clear_requests()
    return files


def test_several_paths_are_one_run(local_server: LocalServer, stored: list[Path],
                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct, mr = stored[:2]
    result = dcmweb(local_server.url, "retrieve", instance(ct), instance(mr), "-o", str(out))
    assert (result.exit_code, result.stdout) == (0, ""), result.stderr
    assert files_under(out) == {where(out, ct), where(out, mr)}
    assert where(out, ct).read_bytes() == ct.read_bytes()
    # Each file's line as a retrieve of its path alone writes it, then one summary.
    assert sorted(lines(result.stderr)[:2]) == sorted(
        f"dcmweb: info: {instance(p)} saved as {where(out, p)}" for p in (ct, mr))
    assert lines(result.stderr)[2].startswith("dcmweb: info: Transferred ")
    assert lines(result.stderr)[2].endswith(" in 2 files")


def test_a_list_on_stdin_with_a_bad_line_is_refused_before_any_request(
        local_server: LocalServer, stored: list[Path], tmp_path: Path) -> None:
    listed = f"# from the PACS\n{instance(stored[0])}\n\nstudies/1.2/series\n"
    result = dcmweb(local_server.url, "retrieve", "--paths-from", "-", "-o",
                    str(tmp_path / "out"), stdin=listed)
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        "dcmweb: error: stdin line 4: invalid path 'studies/1.2/series' (expected "
        "studies/UID[/series/UID[/instances/UID]], optionally ending in /metadata or "
        "/rendered; an instance's /frames/N[/rendered] or /bulkdata/TAG)"]
    assert local_server.requests == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("words", "listed", "message"), [
    ((), "studies/1.2/metadata\nstudies/1.3\n",
     "stdin line 1: metadata is retrieved alone, not with other paths"),
    (("studies/1.3",), "studies/1.2/metadata\n",
     "stdin line 1: metadata is retrieved alone, not with other paths"),
    ((), "studies/1.2/metadata\nstudies/1.3/metadata\n",
     "stdin line 1: metadata is retrieved alone, not with other paths"),
    ((), "studies/1.2\nstudies/1/series/2/instances/3/bulkdata/7FE00010\n",
     "stdin line 2: bulk data is retrieved alone, not with other paths"),
    # An empty list is never "no PATH", the whole store.
    ((), "# nothing found\n\n", "no paths to retrieve"),
])
def test_what_cannot_share_a_run_is_refused(local_server: LocalServer, tmp_path: Path,
                                            words: tuple[str, ...], listed: str,
                                            message: str) -> None:
    result = dcmweb(local_server.url, "retrieve", *words, "--paths-from", "-", "-o",
                    str(tmp_path / "out"), stdin=listed)
    assert (result.exit_code, result.stdout) == (2, "")
    [line] = lines(result.stderr)
    assert line.startswith(f"dcmweb: error: {message} (")
    assert local_server.requests == []


@pytest.mark.parametrize("command", ["retrieve", "delete"])
def test_a_path_with_a_byte_that_is_not_utf8_is_shown_as_store_shows_it(command: str) -> None:
    """Old dcmweb wrote repr()'s \\udcff where store's lines and report write \\xff."""
    done = subprocess.run([sys.executable, "-m", "dcmweb", "http://127.0.0.1:9/dicomWeb",
                           command, b"studies/1.2\xff"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert lines(done.stderr)[0].startswith(
        "dcmweb: error: invalid path 'studies/1.2\\xff' (expected studies/UID")


def test_a_list_file_names_its_line(local_server: LocalServer, tmp_path: Path) -> None:
    listed = tmp_path / "paths.txt"
    listed.write_text("studies/1.2\nstudies/1.2/series/3/instances/4/frames/0\n")
    result = dcmweb(local_server.url, "retrieve", "--paths-from", str(listed))
    assert result.exit_code == 2
    assert lines(result.stderr)[0].startswith(
        f"dcmweb: error: {listed} line 2: invalid path 'studies/1.2/series/3/instances/4/"
        "frames/0' (frames are numbered from 1")


def test_a_list_with_a_byte_order_mark_and_crlf_lines(local_server: LocalServer,
                                                      stored: list[Path], tmp_path: Path
                                                      ) -> None:
    """A list saved by Notepad or PowerShell: a UTF-8 byte order mark, CRLF line ends.
    The mark was read as part of the first path: `invalid path 'studies/...'` (exit 2),
    the mark invisible in the message."""
    ct, mr = stored[:2]
    listed = tmp_path / "paths.txt"
    listed.write_bytes(f"\ufeff{instance(ct)}\r\n\r\n# done\r\n{instance(mr)}\r\n"
                       .encode())
    out = tmp_path / "out"
    result = dcmweb(local_server.url, "retrieve", "--paths-from", str(listed), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {where(out, ct), where(out, mr)}
    # A mark alone on the first line is a blank line.
    listed.write_bytes(f"\ufeff\n{instance(ct)}\n{instance(mr)}\n".encode())
    result = dcmweb(local_server.url, "retrieve", "--paths-from", str(listed), "-o", str(out))
    assert result.exit_code == 0, result.stderr


def test_a_path_that_fails_among_good_ones_is_exit_6(local_server: LocalServer,
                                                     stored: list[Path], tmp_path: Path
                                                     ) -> None:
    out = tmp_path / "out"
    ct, mr = stored[:2]
    listed = f"{instance(ct)}\nstudies/1.2.3.404\n{instance(mr)}\n"
    result = dcmweb("-m", local_server.url, "retrieve", "--paths-from", "-", "-o", str(out),
                    stdin=listed)
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, ct), where(out, mr)}
    errors = [line for line in lines(result.stderr) if ": error: " in line]
    assert errors[0].startswith("dcmweb: error: studies/1.2.3.404: ")
    assert errors[-1] == "dcmweb: error: 1 item could not be retrieved"
    assert "in 2 files; 1 failed" in result.stderr


@pytest.mark.parametrize("workers", [[], ["-m", "--workers", "3"]])
def test_a_file_two_paths_hold_is_counted_once(local_server: LocalServer, stored: list[Path],
                                               tmp_path: Path, workers: list[str]) -> None:
    """The same study twice, and one of its instances beside it: each file is on disk
    once, and so in the summary and the library's results (it said 5 files for 2)."""
    out = tmp_path / "out"
    synthetic = stored[2:]
    study = uids_of(synthetic[0])[0]
    in_study = [p for p in synthetic if uids_of(p)[0] == study]
    assert len(in_study) == 2
    listed = f"studies/{study}\n{instance(in_study[1])}\nstudies/{study}\n"
    result = dcmweb(*workers, local_server.url, "retrieve", "--paths-from", "-", "-o",
                    str(out), stdin=listed)
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {where(out, p) for p in in_study}
    saved = [line for line in lines(result.stderr) if " saved as " in line]
    assert sorted(line.split(" saved as ")[1] for line in saved) == sorted(
        str(where(out, p)) for p in in_study)
    assert lines(result.stderr)[-1].endswith(" in 2 files")
    with Client(local_server.url) as client:
        results = client.retrieve(listed.split(), tmp_path / "again")
    assert sorted(r.path for r in results) == sorted(
        where(tmp_path / "again", p) for p in in_study)
    # Its dry run lists each file once too (it said `would write 5 files`).
    result = dcmweb(local_server.url, "retrieve", "--paths-from", "-", "-o", str(out),
                    "--dry-run", stdin=listed)
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(str(where(out, p)) for p in in_study)
    assert lines(result.stderr)[-1].startswith("dcmweb: info: would write 2 files under ")


@pytest.mark.parametrize(("suffix", "in_the_way"), [
    ("/frames/1", "{sop}_frame_1.raw/"), ("/rendered", "{sop}.png/"), ("/frames/1", "")],
    ids=["frame", "rendered", "series-folder"])
def test_a_name_taken_fails_that_frame_or_image_alone(
        local_server: LocalServer, stored: list[Path], tmp_path: Path, suffix: str,
        in_the_way: str) -> None:
    """A folder where a frame or rendered image goes (or a file where its series folder
    goes) fails that path alone, as it does a DICOM file. Was: the run stopped at once,
    `Transferred 0 B in 0 files; 2 paths not retrieved`, exit 1, the other path never
    asked for (and a frame already named left on disk, unreported)."""
    ct, mr = stored[:2]
    study, series, sop = uids_of(ct)
    out = tmp_path / "out"
    if in_the_way:
        (out / study / series / in_the_way.format(sop=sop)).mkdir(parents=True)
    else:
        (out / study).mkdir(parents=True)
        (out / study / series).write_bytes(b"")
    args = ["--format", "png"] if suffix == "/rendered" else []
    result = dcmweb("-m", local_server.url, "retrieve", instance(ct) + suffix, instance(mr),
                    *args, "-o", str(out))
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, mr)} | (set() if in_the_way else {out / study / series})
    errors = [line for line in lines(result.stderr) if ": error: " in line]
    assert errors[0].startswith(f"dcmweb: error: {instance(ct)}{suffix}: cannot ")
    assert lines(result.stderr)[-2].endswith(" in 1 file; 1 failed")


def test_every_path_failing_is_exit_1(local_server: LocalServer, tmp_path: Path) -> None:
    result = dcmweb(local_server.url, "retrieve", "studies/1.2.3.404", "studies/1.2.3.405",
                    "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == ("dcmweb: error: nothing was retrieved (2 items "
                                        "failed)")


def test_search_paths_feeds_rendered_thumbnails(local_server: LocalServer,
                                                stored: list[Path], tmp_path: Path) -> None:
    """search --format paths | retrieve --paths-from - --format png: the listed instances
    rendered, in one run."""
    found = dcmweb(local_server.url, "search", "instances", "--format", "paths")
    assert found.exit_code == 0, found.stderr
    assert sorted(found.stdout.splitlines()) == sorted(instance(p) for p in stored)
    out = tmp_path / "thumbs"
    result = dcmweb("-m", "--workers", "3", local_server.url, "retrieve", "--paths-from", "-",
                    "--format", "png", "--viewport", "64,64", "-o", str(out),
                    stdin=found.stdout)
    assert result.exit_code == 0, result.stderr
    images = {p: p.read_bytes() for p in files_under(out)}
    assert set(images) == {where(out, p).with_suffix(".png") for p in stored}
    for data in images.values():
        assert data.startswith(PNG)
        width, height = struct.unpack(">II", data[16:24])
        assert max(width, height) == 64
    assert f"{instance(stored[0])}/rendered saved as " in result.stderr


@pytest.mark.parametrize("given", ["argument", "one-line list"])
def test_one_study_with_rendering_options_renders_as_a_list_of_one_does(
        local_server: LocalServer, stored: list[Path], tmp_path: Path, given: str) -> None:
    """`retrieve studies/S --format png` was refused (exit 2, '--format png does not
    apply to this path') while the same path as a one-line --paths-from list rendered."""
    study = uids_of(stored[-1])[0]
    in_study = [p for p in stored if uids_of(p)[0] == study]
    out = tmp_path / "thumbs"
    where_paths = (["--paths-from", "-"] if given == "one-line list"
                   else [f"studies/{study}"])
    result = dcmweb(local_server.url, "retrieve", *where_paths, "--format", "png",
                    "--viewport", "32,32", "-o", str(out), stdin=f"studies/{study}\n")
    assert result.exit_code == 0, result.stderr
    assert set(files_under(out)) == {where(out, p).with_suffix(".png") for p in in_study}
    assert all(p.read_bytes().startswith(PNG) for p in files_under(out))
    with Client(local_server.url) as client:  # the library alike
        results = client.retrieve(f"studies/{study}", tmp_path / "lib",
                                  render=RenderOptions(format="png"))
    assert {r.status for r in results} == {"saved"}
    assert set(files_under(tmp_path / "lib")) == {
        where(tmp_path / "lib", p).with_suffix(".png") for p in in_study}


def test_search_paths_at_each_level(local_server: LocalServer, stored: list[Path]) -> None:
    study, series, _ = uids_of(stored[0])
    expected = {
        ("studies",): {f"studies/{uids_of(p)[0]}" for p in stored},
        ("series",): {f"studies/{uids_of(p)[0]}/series/{uids_of(p)[1]}" for p in stored},
        (f"studies/{study}/series",): {f"studies/{study}/series/{series}"},
        (f"studies/{study}/series/{series}/instances",): {instance(stored[0])},
    }
    for words, paths in expected.items():
        found = dcmweb(local_server.url, "search", *words, "--format", "paths")
        assert (found.exit_code, found.stderr) == (0, "")
        assert set(found.stdout.splitlines()) == paths
        assert len(found.stdout.splitlines()) == len(paths)


def test_m_with_a_mix_of_study_and_instance_paths_on_orthanc(orthanc: Orthanc,
                                                             tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 6, studies=3)
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    by_study: dict[str, list[Path]] = {}
    for path in files:
        by_study.setdefault(uids_of(path)[0], []).append(path)
    (first, in_first), (second, in_second), (_, in_third) = by_study.items()
    listed = tmp_path / "list.txt"
    listed.write_text(f"studies/{first}\n{instance(in_third[0])}\n")
    out = tmp_path / "out"
    result = dcmweb("-m", "--workers", "3", orthanc.url, "retrieve", f"studies/{second}",
                    "--paths-from", str(listed), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {where(out, p) for p in (*in_first, *in_second, in_third[0])}
    assert f"in {len(in_first) + len(in_second) + 1} files" in result.stderr


def test_an_image_orthanc_cannot_render_fails_alone(orthanc: Orthanc,
                                                  pydicom_files: list[Path],
                                                  tmp_path: Path) -> None:
    """Orthanc (without its GDCM plugin) answers 400 `Parameter out of range` to the
    rendered image of a JPEG 2000 instance, and renders the others with the same
    options: that image fails alone. Was: the run stopped there with exit 2 (a usage
    error), `1 failed, 2 paths not retrieved`, the paths after it never asked for."""
    by_name = {p.name: p for p in pydicom_files}
    ct, j2k, mr = (by_name[name] for name in ("CT_small.dcm", "GDCMJ2K_TextGBR.dcm",
                                              "MR_small.dcm"))
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store([ct, j2k, mr])} == {"stored"}
    out = tmp_path / "out"
    listed = f"{instance(ct)}/rendered\n{instance(j2k)}/rendered\n{instance(mr)}\n"
    result = dcmweb(orthanc.url, "retrieve", "--paths-from", "-", "-o", str(out),
                    stdin=listed)
    study, series, sop = uids_of(ct)
    rendered = {out / study / series / f"{sop}.jpg", where(out, mr)}
    if result.exit_code == 0:  # an Orthanc with its GDCM plugin renders JPEG 2000 too
        j2k_study, j2k_series, j2k_sop = uids_of(j2k)
        assert files_under(out) == rendered | {out / j2k_study / j2k_series / f"{j2k_sop}.jpg"}
        return
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == rendered
    errors = [line for line in lines(result.stderr) if ": error: " in line]
    assert errors[0].startswith(f"dcmweb: error: {instance(j2k)}/rendered: HTTP 400 Bad "
                                "Request: Parameter out of range")
    assert lines(result.stderr)[-2].endswith(" in 2 files; 1 failed")


def test_a_nul_separated_list_and_frames(orthanc: Orthanc, pydicom_files: list[Path],
                                         tmp_path: Path) -> None:
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    mr = next(p for p in pydicom_files if p.name == "MR_small.dcm")
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store([ct, mr])} == {"stored"}
    out = tmp_path / "out"
    listed = f"{instance(ct)}/frames/1\0{instance(mr)}\0".encode()
    result = dcmweb(orthanc.url, "retrieve", "--paths-from", "-", "-0", "-o", str(out),
                    stdin=listed)
    assert result.exit_code == 0, result.stderr
    study, series, sop = uids_of(ct)
    assert files_under(out) == {out / study / series / f"{sop}_frame_1.raw", where(out, mr)}
    assert (out / study / series / f"{sop}_frame_1.raw").stat().st_size == 128 * 128 * 2


def test_a_long_list_the_temporary_folder_refuses_names_it(tmp_path: Path) -> None:
    """A list over 1 MiB is kept in a file in TMPDIR; a write refused there (a full
    TMPDIR; here ulimit -f, which needs no mount) is named with its folder, exit 1 before
    any request. Old dcmweb: "unexpected error: OSError: [Errno 28] No space left on device
    (rerun with --traceback and report it)"."""
    uid = "1.2." + "3" * 54  # with ".N": valid UIDs, at most 64 characters
    listing = tmp_path / "paths.txt"
    listing.write_text("".join(f"studies/{uid}/series/{uid}.{n}/instances/{uid}.{n}\n"
                               for n in range(10000)))
    assert listing.stat().st_size > 1.5 * 1024 ** 2  # the first MiB is kept in memory
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = run_limited({resource.RLIMIT_FSIZE: 512 * 1024}, "http://127.0.0.1:9/dicom-web",
                       "retrieve", "--paths-from", str(listing), "--dry-run",
                       env={"TMPDIR": str(temp)})
    assert done.returncode == 1, done.stderr
    assert lines(done.stderr) == [
        f"dcmweb: error: cannot keep the list of paths in the temporary folder {temp} "
        "(TMPDIR): File too large (a limit on the size of a file: this process's, set with "
        "ulimit -f, or the largest file the file system holds)"]


def test_a_dry_run_of_several_paths(local_server: LocalServer, stored: list[Path],
                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct, mr = stored[:2]
    result = dcmweb(local_server.url, "retrieve", instance(ct), "studies/1.2.3.404",
                    instance(mr), "-o", str(out), "--dry-run")
    assert result.exit_code == 6
    assert result.stdout.splitlines() == [str(where(out, ct)), str(where(out, mr))]
    assert ("dcmweb: error: studies/1.2.3.404: not found (a search finds no instance under "
            "it)") in lines(result.stderr)
    assert not out.exists()


def test_the_library_takes_a_list(local_server: LocalServer, stored: list[Path],
                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Client(local_server.url, workers=2) as client:
        results = client.retrieve([instance(p) for p in stored[:3]], out)
        assert sorted(r.path for r in results) == sorted(where(out, p) for p in stored[:3])
        thumbs = client.retrieve((instance(p) for p in stored[:2]), tmp_path / "thumbs",
                                 render=RenderOptions(format="png", viewport="32,32"))
        assert {r.status for r in thumbs} == {"saved"}
        assert len(thumbs) == 2
        with pytest.raises(UsageError, match="path 2: invalid path"):
            client.retrieve([instance(stored[0]), "series/1"], out)
