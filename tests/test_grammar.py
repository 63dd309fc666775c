"""The command-line grammar: help anywhere without HOST, global options before HOST, between
HOST and the command and after the command's arguments, the old tool's order, HOST from the
environment, and shell completion."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pydicom
import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

HOST = "http://127.0.0.1:9/dicom-web"


def dcmweb(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def reorder(*args: str) -> list[str]:
    """The words as click gets them after dcmweb's grammar put them in order."""
    assert isinstance(cli, click.Group)
    with click.Context(cli, info_name="dcmweb") as ctx:
        return cli._reorder(ctx, list(args))  # type: ignore[attr-defined]


# -- help without HOST ----------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("store", "--help"), ("store", "-h"), ("-h", "store"), ("--help", "store"),
    ("help", "store"), ("-q", "--help", "store"), (HOST, "store", "--help"),
])
def test_command_help_needs_no_host(args: tuple[str, ...]) -> None:
    result = dcmweb(*args)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: dcmweb store [OPTIONS] ")
    assert ("[env var: DCMWEB_STORE_BATCH_SIZE; default: 20; 1<=x<=1000]"
            in " ".join(result.stdout.split()))


@pytest.mark.parametrize("group", [(), ("operations",), ("config",)])
def test_no_command_summary_is_cut_short(group: tuple[str, ...]) -> None:
    """Old dcmweb: 'retrieve  Download a study, ... bulk data or...' (click cuts a summary
    that does not fit 80 columns)."""
    result = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80)
    assert result.exit_code == 0
    commands = result.stdout.split("\nCommands:\n", 1)[1].splitlines()
    assert commands and [line for line in commands if line.endswith("...")] == []


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("help",)])
def test_group_help(args: tuple[str, ...]) -> None:
    result = dcmweb(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: dcmweb [OPTIONS] [HOST] COMMAND [ARGS]...\n")
    for command in ("store", "search", "retrieve", "delete", "help", "config", "completion"):
        assert f"\n  {command} " in result.stdout


@pytest.mark.parametrize(("args", "where", "commands"), [
    ((), "dcmweb", "completion, config, delete, help, operations, retrieve, search, store"),
    (("config",), "dcmweb config", "show"),
    ((HOST, "operations"), "dcmweb operations", "get, wait"),
    # With HOST or an option and no command, click had said only "Missing command".
    ((HOST,), "dcmweb", "completion, config, delete, help, operations, retrieve, search, store"),
    (("-v",), "dcmweb", "completion, config, delete, help, operations, retrieve, search, store"),
])
def test_a_bare_group_is_one_line_naming_its_commands(args: tuple[str, ...], where: str,
                                                      commands: str) -> None:
    result = dcmweb(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        f"dcmweb: error: missing command (commands: {commands}; see '{where} --help')"]


def test_a_missing_choice_is_one_readable_line() -> None:
    """Old dcmweb: 'Choose from:\\n\\tbash,\\n\\tzsh,\\n\\tfish', click's layout escaped."""
    result = dcmweb("completion")
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        "dcmweb: error: Missing argument '{bash|zsh|fish}'. Choose from: bash, zsh, fish"
        " (see 'dcmweb completion --help')"]


@pytest.mark.parametrize("words", [("operations", "wait"), ("config", "show")])
def test_help_shows_a_subcommand_s_help(words: tuple[str, ...]) -> None:
    """Old dcmweb: 'Got unexpected extra argument (wait)', exit 2, for the help that
    'dcmweb operations wait --help' shows."""
    result = dcmweb("help", *words)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == dcmweb(*words, "--help").stdout
    assert result.stdout.startswith(f"Usage: dcmweb {' '.join(words)} [OPTIONS]")


@pytest.mark.parametrize(("words", "hint"), [
    (("operations", "wiat"), "commands: get, wait"),
    (("store", "x"), "dcmweb store has no subcommands"),
])
def test_help_of_an_unknown_subcommand_is_exit_2(words: tuple[str, ...], hint: str) -> None:
    result = dcmweb("help", *words)
    assert result.exit_code == 2
    assert lines(result.stderr) == [f"dcmweb: error: no command {' '.join(words)!r} ({hint})"]


def test_help_of_an_unknown_command_is_exit_2() -> None:
    result = dcmweb("help", "stor")
    assert result.exit_code == 2
    assert isinstance(cli, click.Group)
    assert lines(result.stderr) == [
        f"dcmweb: error: no command 'stor' (commands: {', '.join(sorted(cli.commands))})"]


def test_a_mistyped_command_is_named() -> None:
    result = dcmweb("stor", "x.dcm")
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        "dcmweb: error: No such command 'stor'. Did you mean 'store'? (see 'dcmweb --help')"]


def test_missing_host_is_exit_2_with_the_ways_to_give_it() -> None:
    result = dcmweb("search", "instances")
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        "dcmweb: error: HOST is missing (give it before the command, set DCMWEB_HOST, or "
        "choose a profile with a host: dcmweb -p NAME COMMAND)"]


def test_two_hosts_are_a_usage_error() -> None:
    result = dcmweb(HOST, "extra", "search")
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: unexpected 'extra' before the command (HOST is '{HOST}') "
        "(see 'dcmweb --help')"]


@pytest.mark.parametrize("args", [
    ("--host", "http://127.0.0.1:9/other", HOST, "search"),
    (HOST, "--host=http://127.0.0.1:9/other", "search"),
    (HOST, "search", "--host", "http://127.0.0.1:9/other"),
])
def test_a_host_word_and_another_host_option_are_a_usage_error(args: tuple[str, ...]) -> None:
    """click had kept one of the two without a word (the HOST word): a delete could have
    gone to the store the user did not mean."""
    result = dcmweb(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        f"dcmweb: error: two HOSTs: '{HOST}' and --host 'http://127.0.0.1:9/other' "
        "(see 'dcmweb --help')"]


def test_the_same_host_twice_is_fine(local_server: LocalServer) -> None:
    result = dcmweb("--host", local_server.url, local_server.url, "search")
    assert result.exit_code == 0, result.stderr


def test_the_old_tools_named_arguments(local_server: LocalServer, pydicom_files: list[Path],
                                       tmp_path: Path) -> None:
    """Google's old tool (python-fire) also took --path, --parameters and --masks."""
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    stored = dcmweb(local_server.url, "store", "--masks", str(ct))
    assert stored.exit_code == 0, stored.stderr
    study = pydicom.dcmread(ct, stop_before_pixels=True).StudyInstanceUID
    found = dcmweb(local_server.url, "search", "--parameters", f"StudyInstanceUID={study}",
                   "--path", "instances", "--format", "uids")
    assert found.exit_code == 0, found.stderr
    assert found.stdout.split() == [pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID]
    none = dcmweb(local_server.url, "search", "--path=studies", "--parameters=PatientID=nobody",
                  "--format", "uids")
    assert (none.exit_code, none.stdout) == (0, "")
    saved = dcmweb(local_server.url, "retrieve", "--path", f"studies/{study}", "--output",
                   str(tmp_path / "out"))
    assert saved.exit_code == 0, saved.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1
    deleted = dcmweb(local_server.url, "delete", "--path", f"studies/{study}")
    assert deleted.exit_code == 0, deleted.stderr
    assert dcmweb(local_server.url, "search", "--format", "uids").stdout == ""


def test_the_old_tools_named_arguments_with_one_dash(local_server: LocalServer,
                                                     pydicom_files: list[Path],
                                                     tmp_path: Path) -> None:
    """python-fire took `-output=DIR` as `--output=DIR`: read as `-o utput=DIR`, it saved
    into a folder named `utput=DIR` with exit 0."""
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    assert dcmweb(local_server.url, "store", "-masks", str(ct)).exit_code == 0
    study = pydicom.dcmread(ct, stop_before_pixels=True).StudyInstanceUID
    found = dcmweb(local_server.url, "search", "-path", "instances", "-parameters",
                   f"StudyInstanceUID={study}", "--format", "uids")
    assert (found.exit_code, len(found.stdout.split())) == (0, 1), found.stderr
    out = tmp_path / "out"
    for words in ([f"studies/{study}", f"-output={out}"], [f"studies/{study}", "-output",
                                                           str(out)],
                  [f"-path=studies/{study}", f"-output={out}", "-type", "application/dicom"]):
        saved = dcmweb(local_server.url, "retrieve", *words)
        assert saved.exit_code == 0, saved.stderr
        assert len(list(out.rglob("*.dcm"))) == 1
        assert not Path(f"utput={out}").exists()


def test_usage_errors_are_one_log_line() -> None:
    result = dcmweb(HOST, "search", "--format", "yaml")
    assert result.exit_code == 2
    [line] = lines(result.stderr)
    assert line.startswith("dcmweb: error: Invalid value for '--format': 'yaml' is not one"
                           " of 'pretty', ")
    assert line.endswith(" (see 'dcmweb search --help')")


@pytest.mark.parametrize("option", ["--read-timeout", "-H", "--workers"])
def test_a_global_option_without_its_value_at_the_end_says_so(option: str) -> None:
    """Moved before HOST, it took '--host' for its value: "'--host' is not a valid float
    range"."""
    result = dcmweb(HOST, "store", "a.dcm", option)
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: Option '{option}' requires an argument (see 'dcmweb --help')"]


@pytest.mark.parametrize(("args", "where"), [
    (("retrieve", "--output"), "dcmweb retrieve"),
    (("search", "--limit"), "dcmweb search"),
    (("store", "a.dcm", "--batch-size"), "dcmweb store"),
    (("delete", "studies/1", "--timeout"), "dcmweb delete"),
    (("operations", "wait", "1", "--timeout"), "dcmweb operations wait"),
])
def test_a_command_option_without_its_value_points_to_the_command_help(
        args: tuple[str, ...], where: str) -> None:
    """click's parser raises this error without its command: it sent the user to
    'dcmweb --help', which does not list the option."""
    result = dcmweb(HOST, *args)
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: Option '{args[-1]}' requires an argument (see '{where} --help')"]


# -- where options go -----------------------------------------------------------------------
@pytest.mark.parametrize(("args", "expected"), [
    # the old tool's order
    (["-m", HOST, "store", "a.dcm"], ["-m", "--host", HOST, "store", "a.dcm"]),
    # between HOST and the command
    ([HOST, "-q", "--workers", "2", "search"],
     ["-q", "--workers", "2", "--host", HOST, "search"]),
    # after the command's arguments, mixed with the command's own options
    ([HOST, "store", "dir", "-m", "--batch-size", "5", "--workers=3"],
     ["-m", "--workers=3", "--host", HOST, "store", "dir", "--batch-size", "5"]),
    ([HOST, "search", "-q"], ["-q", "--host", HOST, "search"]),
    # the value of a command's option is never taken for a global option
    ([HOST, "store", "--report", "-q", "x"], ["--host", HOST, "store", "--report", "-q", "x"]),
    # no HOST (DCMWEB_HOST or a profile), profile options anywhere
    (["search", "-p", "prod"], ["-p", "prod", "search"]),
    # after --, nothing moves
    ([HOST, "search", "--", "-q"], ["--host", HOST, "search", "--", "-q"]),
])
def test_options_are_put_in_order(args: list[str], expected: list[str]) -> None:
    assert reorder(*args) == expected


def test_options_after_the_command_take_effect(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 3)
    stored = dcmweb(local_server.url, "store", str(tmp_path / "f"), "-m", "--workers", "2", "-q")
    assert (stored.exit_code, stored.stderr) == (0, "")
    found = dcmweb(local_server.url, "search", "instances", "--format", "jsonl", "-q")
    assert found.exit_code == 0
    assert len(found.stdout.splitlines()) == len(files)


def test_host_from_the_environment_with_options_anywhere(local_server: LocalServer,
                                                          tmp_path: Path) -> None:
    with Client(local_server.url) as client:
        client.store(corpus.synthetic_files(tmp_path / "f", 2))
    env = {"DCMWEB_HOST": local_server.url}
    for args in (("search", "instances", "-q"), ("-q", "search", "instances"),
                 ("--retries", "1", "search", "instances", "--format", "compact")):
        result = dcmweb(*args, env=env)
        assert result.exit_code == 0, result.stderr
        assert len(json.loads(result.stdout)) == 2


# -- completion -----------------------------------------------------------------------------
@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _dcmweb_completion dcmweb"),
    ("zsh", "#compdef dcmweb"),
    ("fish", "complete --no-files --command dcmweb"),
])
def test_completion_script(shell: str, marker: str) -> None:
    result = dcmweb("completion", shell)
    assert (result.exit_code, result.stderr) == (0, "")
    assert marker in result.stdout
    assert "_DCMWEB_COMPLETE" in result.stdout


@pytest.mark.parametrize(("words", "expected"), [
    ("dcmweb st", ["store"]),
    (f"dcmweb {HOST} st", ["store"]),
    (f"dcmweb -m {HOST} store --batch", ["--batch-size"]),
    ("dcmweb --work", ["--workers"]),
    ("dcmweb completion ", ["bash", "zsh", "fish"]),
])
def test_completion_answers(words: str, expected: list[str]) -> None:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = CliRunner().invoke(cli, [], prog_name="dcmweb", env={
        "_DCMWEB_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert result.exit_code == 0
    assert [line.split(",", 1)[1] for line in result.stdout.splitlines()] == expected


def complete_in_bash(words: list[str], line: str) -> subprocess.CompletedProcess[str]:
    """Run the `completion bash` script's function as bash would on TAB: COMP_WORDS split
    at ':' as COMP_WORDBREAKS splits them, COMP_LINE and COMP_POINT as typed."""
    script = Path(sys.executable).with_name("dcmweb")
    if not script.exists() or not shutil.which("bash"):
        pytest.skip("needs bash and the dcmweb console script")
    source = dcmweb("completion", "bash").stdout
    call = (f"COMP_WORDS=({' '.join(shlex.quote(word) for word in words)}); "
            f"COMP_CWORD={len(words) - 1}; COMP_LINE={shlex.quote(line)}; "
            f"COMP_POINT={len(line)}; _dcmweb_completion dcmweb; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", f"{source}\n{call}"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_bash_completion_after_a_url_host() -> None:
    # bash splits http://127.0.0.1:9/dicom-web at each ':' (COMP_WORDBREAKS).
    words = ["dcmweb", "http", ":", "//127.0.0.1", ":", "9/dicom-web", "search", "--format", ""]
    done = complete_in_bash(words, f"dcmweb {HOST} search --format ")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["pretty", "compact", "jsonl", "csv", "tsv", "uids", "paths"]


@pytest.mark.parametrize("words", [
    "dcmweb http : //127.0.0.1 : 9/dicom-web search --format ",  # an older script's words
    "dcmweb --config /nonexistent.toml sea",
    "dcmweb --workers 0 sea",
])
def test_completion_never_prints_errors(words: str) -> None:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = CliRunner().invoke(cli, [], prog_name="dcmweb", env={
        "_DCMWEB_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert (result.exit_code, result.stderr) == (0, "")
    assert "error" not in result.stdout


def test_store_masks_complete_file_names() -> None:
    result = CliRunner().invoke(cli, [], prog_name="dcmweb", env={
        "_DCMWEB_COMPLETE": "bash_complete", "COMP_WORDS": f"dcmweb {HOST} store sc",
        "COMP_CWORD": "3"})
    assert result.stdout.splitlines() == ["file,sc"]


def test_completion_of_an_unknown_shell_is_exit_2() -> None:
    result = dcmweb("completion", "tcsh")
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        "dcmweb: error: Invalid value for '{bash|zsh|fish}': 'tcsh' is not one of 'bash', "
        "'zsh', 'fish' (see 'dcmweb completion --help')"]


# -- HOST mistakes ----------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "hint"), [
    ("localhost:8042/dicom-web", "did you mean http://localhost:8042/dicom-web?"),
    ("127.0.0.1:8042/dicom-web", "did you mean http://127.0.0.1:8042/dicom-web?"),
    ("pacs.example.org/dicom-web", "did you mean https://pacs.example.org/dicom-web?"),
    ("ftp://127.0.0.1/x", "HOST is a DICOMweb base URL such as http://127.0.0.1:8042/dicom-web, "
                          "or a store name projects/P/locations/L/datasets/D/dicomStores/S"),
])
def test_a_host_without_its_scheme_gets_the_url_suggested(host: str, hint: str) -> None:
    result = dcmweb(host, "search")
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [f"dcmweb: error: invalid HOST '{host}' ({hint})"]


# -- numbers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("option", [
    "--connect-timeout", "--read-timeout", "--request-deadline", "--low-speed-limit",
    "--low-speed-time", "--outage-limit"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", "1e12"])
def test_timing_options_refuse_nan_infinity_and_absurd_sizes(option: str, value: str) -> None:
    # NaN passes every range check (all its comparisons are false): an outage limit of nan
    # never ends, a read timeout of nan or 1e12 fails deep in the socket layer.
    result = dcmweb(option, value, HOST, "search")
    assert (result.exit_code, result.stdout) == (2, "")
    [line] = lines(result.stderr)
    assert line.startswith(f"dcmweb: error: Invalid value for '{option}'")
    assert any(why in line for why in ("not a finite number", "too large", "not in the range"))


@pytest.mark.parametrize(("args", "env"), [
    ((HOST, "store", "x.dcm", "--progress-every", "nan"), {}),
    ((HOST, "delete", "studies/1", "--timeout", "inf"), {}),
    ((HOST, "operations", "wait", "1", "--timeout", "nan"), {}),
    ((HOST, "search"), {"DCMWEB_READ_TIMEOUT": "nan"}),
])
def test_every_float_option_refuses_nan(args: tuple[str, ...], env: dict[str, str]) -> None:
    result = dcmweb(*args, env=env)
    assert (result.exit_code, result.stdout) == (2, "")
    [line] = lines(result.stderr)
    assert "is not a finite number" in line


def test_config_file_nan_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[profiles.a]\noutage-limit = nan\n")
    result = dcmweb("--config", str(config), "-p", "a", HOST, "search")
    assert (result.exit_code, result.stdout) == (2, "")
    assert "is not a finite number" in lines(result.stderr)[0]
