"""Messages name an option as its keyword argument in Python and as its flag on the
command line (dcmweb.optionnames): one text for both, no flag in a library error."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dcmweb import Client, UsageError
from dcmweb.cli import cli
from dcmweb.optionnames import as_flags, option
from dcmweb.testing import LocalServer
from dcmweb_devtools.logs import lines

SOURCES = Path(__file__).parent.parent / "dcmweb"
CALL = re.compile(r"""\boption\(\s*["'](\w+)["']""")


def every_flag(command: click.Command) -> set[str]:
    flags = {flag for param in command.params if isinstance(param, click.Option)
             for flag in (*param.opts, *param.secondary_opts)}
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            sub = command.get_command(click.Context(command), name)
            if sub is not None:
                flags |= every_flag(sub)
    return flags


def test_every_option_a_message_names_is_a_flag_of_the_cli() -> None:
    named = {keyword for path in SOURCES.rglob("*.py")
             for keyword in CALL.findall(path.read_text(encoding="utf-8"))}
    assert {"part_type", "transfer_syntax", "generate_uids"} <= named
    flags = every_flag(cli)
    with as_flags():
        assert {keyword: option(keyword) for keyword in named
                if option(keyword) not in flags} == {}
        assert option("google_auth", False) in flags


def test_the_two_forms() -> None:
    assert [option("part_type"), option("transfer_syntax", "*"), option("generate_uids", True),
            option("google_auth", False)] == [
        "part_type", "transfer_syntax='*'", "generate_uids=True", "google_auth=False"]
    with as_flags():
        assert [option("part_type"), option("transfer_syntax", "*"),
                option("generate_uids", True), option("google_auth", False)] == [
            "--type", "--transfer-syntax '*'", "--generate-uids", "--no-google-auth"]
    assert option("part_type") == "part_type"  # only inside the block


@pytest.mark.parametrize("call", ["frames", "retrieve"])
def test_a_part_type_and_a_transfer_syntax_name_the_keywords_in_python(
        local_server: LocalServer, tmp_path: Path, call: str) -> None:
    """Old dcmweb: 'give --type or --transfer-syntax, not both' from a Python call."""
    path = "studies/1.2/series/3.4/instances/5.6" + ("/frames/1" if call == "frames" else "")
    asked = {"part_type": "image/jpeg", "transfer_syntax": "1.2.840.10008.1.2.4.50"}
    with Client(local_server.url) as client, pytest.raises(UsageError) as refused:
        if call == "frames":
            client.frames(path, **asked)
        else:
            client.retrieve(path, tmp_path, **asked)
    assert str(refused.value) == "give part_type or transfer_syntax, not both"
    assert local_server.requests == []


def test_the_command_line_names_the_flags(local_server: LocalServer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [local_server.url, "retrieve", "studies/1.2", "--type",
                                      "image/jpeg", "--transfer-syntax", "1.2", "-o",
                                      str(tmp_path)])
    assert result.exit_code == 2
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: give --type or --transfer-syntax, not both")
    assert option("part_type") == "part_type"  # the run's setting ends with it
