"""Settings: an environment variable for every option, the config file's profiles, the
precedence flag > env > profile > default, and `dcmweb config show`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.cligroup import ENV_PREFIX, give_envvars
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines


def dcmweb(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def shown(result: Result) -> dict[str, str]:
    """`config show` lines as {name: 'value  # source'}."""
    assert result.exit_code == 0, result.stderr
    pairs = [line.split(" = ", 1) for line in result.stdout.splitlines()
             if not line.startswith("#")]
    return {name: value for name, value in pairs}


def all_commands(group: click.Group, path: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{path}{name}", command))
        if isinstance(command, click.Group):
            found += all_commands(command, f"{path}{name} ")
    return found


# -- environment variables ------------------------------------------------------------------
@pytest.mark.parametrize(("path", "command"), [("", cli), *all_commands(cli)])  # type: ignore[arg-type]
def test_every_option_has_an_env_var_shown_in_help(path: str, command: click.Command) -> None:
    result = dcmweb(*path.split(), "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    prefix = "DCMWEB_" + "_".join(path.upper().split()) + ("_" if path else "")
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("help", "version"):
            continue
        assert isinstance(param.envvar, str) and param.envvar.startswith("DCMWEB_")
        if param.envvar not in ("DCMWEB_TOKEN", "DCMWEB_USER"):  # kept from 0.1
            long = next(o for o in param.opts if o.startswith("--"))
            assert param.envvar == prefix + long[2:].replace("-", "_").upper()
        assert f"env var: {param.envvar}" in text


def test_every_env_var_the_docs_name_is_one_dcmweb_reads() -> None:
    """A misspelt name in an example is silently ignored (the systemd unit of
    bulk-upload.md set DCMWEB_JOURNAL: its nightly job ran without a journal)."""
    give_envvars(cli, ENV_PREFIX)  # as a run does
    read = {param.envvar for _, command in [("", cli), *all_commands(cli)]
            for param in command.params if isinstance(param.envvar, str)}
    read |= {"DCMWEB_CONFIG", "DCMWEB_PROFILE", "DCMWEB_HOST",  # read before the options
             "DCMWEB_CHAOS_SEEDS"}  # the chaos test's
    root = Path(__file__).parent.parent
    documents = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    named = {(name, doc.name) for doc in documents
             for name in re.findall(r"DCMWEB_[A-Z_]*[A-Z]\b", doc.read_text())}
    # The pattern the docs use to explain the names.
    unknown = {pair for pair in named if pair[0] not in read | {"DCMWEB_COMMAND_LONG_NAME"}}
    assert unknown == set()


def test_a_command_option_from_its_env_var(local_server: LocalServer, tmp_path: Path) -> None:
    with Client(local_server.url) as client:
        client.store(corpus.synthetic_files(tmp_path / "f", 2))
    result = dcmweb(local_server.url, "search", "instances",
                    env={"DCMWEB_SEARCH_FORMAT": "jsonl"})
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines, not an array
    assert len(result.stdout.splitlines()) == 2


def test_headers_from_the_environment_one_per_line(tmp_path: Path) -> None:
    result = dcmweb("config", "show", env={
        "DCMWEB_HEADER": "X-Trace: a b c\nAuthorization: Bearer secret"})
    assert shown(result)["header"] == (
        '["X-Trace: a b c", "Authorization: ***"]  # env DCMWEB_HEADER')


# -- profiles and precedence ----------------------------------------------------------------
PROFILES = """\
default-profile = "home"

[profiles.home]
workers = 2

[profiles.prod]
host = "http://user:pw@127.0.0.1:9/dicom-web"
workers = 3
read_timeout = 600
token = "s3cret"

[profiles.prod.search]
format = "compact"
"""


@pytest.mark.parametrize(("args", "env", "expected"), [
    ((), {}, "2  # profile"),  # default-profile
    (("-p", "prod"), {}, "3  # profile"),
    ((), {"DCMWEB_PROFILE": "prod"}, "3  # profile"),
    (("-p", "prod"), {"DCMWEB_WORKERS": "4"}, "4  # env DCMWEB_WORKERS"),
    (("-p", "prod", "--workers", "5"), {"DCMWEB_WORKERS": "4"}, "5  # flag"),
    (("--profile=prod", "--workers=5"), {}, "5  # flag"),
])
def test_precedence_flag_env_profile_default(tmp_path: Path, args: tuple[str, ...],
                                             env: dict[str, str], expected: str) -> None:
    config = write_config(tmp_path, PROFILES)
    settings = shown(dcmweb("--config", str(config), *args, "config", "show", env=env))
    assert settings["workers"] == expected


def test_built_in_defaults_without_a_config_file() -> None:
    settings = shown(dcmweb("config", "show"))
    assert settings["workers"] == "(not set)  # default"
    assert settings["read-timeout"] == "300.0  # default"
    assert settings["log-format"] == '"text"  # default'
    assert not [name for name in settings if "." in name]  # no command setting changed


def test_config_show_hides_secrets_and_lists_command_settings(tmp_path: Path) -> None:
    config = write_config(tmp_path, PROFILES)
    result = dcmweb("-p", "prod", "config", "show", "--user", "me:pw",
                    env={"DCMWEB_CONFIG": str(config)})
    settings = shown(result)
    assert settings["host"] == '"http://***@127.0.0.1:9/dicom-web"  # profile'
    assert settings["token"] == '"***"  # profile'
    assert settings["user"] == '"me:***"  # flag'
    assert settings["read-timeout"] == "600.0  # profile"
    assert settings["search.format"] == '"compact"  # profile'
    assert "s3cret" not in result.stdout and "pw" not in result.stdout.replace("pw@", "")
    assert result.stdout.splitlines()[:2] == [f"# config file: {config}", "# profile: prod"]


def test_profile_host_and_command_defaults_are_used(local_server: LocalServer,
                                                    tmp_path: Path) -> None:
    with Client(local_server.url) as client:
        client.store(corpus.synthetic_files(tmp_path / "f", 3))
    config = write_config(tmp_path, f"""
[profiles.local]
host = "{local_server.url}"
quiet = true

[profiles.local.search]
format = "jsonl"
""")
    env = {"DCMWEB_CONFIG": str(config)}
    result = dcmweb("-p", "local", "search", "instances", env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert len(result.stdout.splitlines()) == 3
    # a flag beats the profile
    pretty = dcmweb("search", "instances", "-p", "local", "--format", "pretty", env=env)
    assert len(json.loads(pretty.stdout)) == 3


@pytest.mark.parametrize(("text", "args", "message"), [
    ("[profiles.a]\n", ("-p", "nope"),
     "no profile 'nope' in {config} (profiles: a)"),
    ("[profiles.a]\nworkerz = 3\n", ("-p", "a"),
     "config file {config}: profile 'a': unknown setting workerz (see 'dcmweb --help')"),
    ("[profiles.a.search]\nfromat = 'jsonl'\n", ("-p", "a"),
     "config file {config}: profile 'a': unknown setting search.fromat "
     "(see 'dcmweb search --help')"),
    ("[profiles.a.serch]\nformat = 'jsonl'\n", ("-p", "a"),
     "config file {config}: profile 'a' has a table [serch], but there is no command 'serch'"),
    ("[profiles.a.operations.wiat]\ntimeout = 1\n", ("-p", "a"),
     "config file {config}: profile 'a' has a table [operations.wiat], but there is no "
     "command 'operations wiat'"),
    ("[profiles.a.operations.wait]\ntimeuot = 1\n", ("-p", "a"),
     "config file {config}: profile 'a': unknown setting operations.wait.timeuot "
     "(see 'dcmweb operations wait --help')"),
    ("[profiles.a.operations.wait]\ntimeout = 'long'\n", ("-p", "a"),
     "config file {config}: profile 'a': operations.wait.timeout: 'long' is not a valid "
     "float range"),
    ("workers = 3\n", (),
     "config file {config}: unknown key 'workers' (settings go in [profiles.NAME] tables)"),
    ("[profiles.a\n", (),
     "config file {config} is not valid TOML: Expected ']' at the end of a table declaration "
     "(at line 1, column 12)"),
    ("[profiles]\na = 1\n", ("-p", "a"),
     "config file {config}: profile 'a' is not a table (write its settings under "
     "[profiles.a])"),
    ("[profiles.a]\nworkers = 'many'\n", ("-p", "a"),
     "config file {config}: profile 'a': workers: 'many' is not a valid integer range"),
    ("[profiles.a.search]\nformat = 'xml'\n", ("-p", "a"),
     "config file {config}: profile 'a': search.format: 'xml' is not one of 'pretty', "
     "'compact', 'jsonl', 'csv', 'tsv', 'uids', 'paths'"),
])
def test_config_mistakes_are_usage_errors(tmp_path: Path, text: str, args: tuple[str, ...],
                                          message: str) -> None:
    config = write_config(tmp_path, text)
    result = dcmweb("--config", str(config), *args, "config", "show")
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == ["dcmweb: error: " + message.format(config=config)]


@pytest.mark.parametrize("words", [("--help",), ("-V",), ("help", "store"),
                                   ("store", "--help"), ("completion", "bash")])
def test_help_version_and_completion_work_with_a_broken_config(tmp_path: Path,
                                                               words: tuple[str, ...]) -> None:
    """The user who broke the config file needs --help to fix it; the mistake is still
    named, as a warning."""
    config = write_config(tmp_path, "[profiles.a\n")
    result = dcmweb(*words, env={"DCMWEB_CONFIG": str(config)})
    assert result.exit_code == 0, result.stderr
    assert result.stdout
    [warning] = lines(result.stderr)
    assert warning.startswith(f"dcmweb: warning: config file {config} is not valid TOML: ")
    assert warning.endswith(" (ignored)")


@pytest.mark.parametrize(("value", "expected"), [
    ("yes", "1"), ("true", "1"), ("1", "1"), ("2", "2"), ("no", "0"), ("0", "0")])
def test_count_options_take_flag_words_from_the_environment(value: str, expected: str) -> None:
    # docs/usage.md: flags take 1/true/yes or 0/false/no; -v is a count (-vv) that does too.
    settings = shown(dcmweb("config", "show", env={"DCMWEB_VERBOSE": value}))
    assert settings["verbose"] == f"{expected}  # env DCMWEB_VERBOSE"


def test_missing_config_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = dcmweb("--config", str(missing), "config", "show")
    assert result.exit_code == 2
    assert lines(result.stderr) == [f"dcmweb: error: config file {missing} not found"]
    default = tmp_path / "xdg" / "dcmweb" / "config.toml"
    result = dcmweb("-p", "prod", "search", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: profile 'prod' asked for, but there is no config file {default} "
        "(create it, or give one with --config FILE)"]


def test_config_show_names_the_default_profile_in_use(tmp_path: Path) -> None:
    """Old dcmweb: '# profile: (none)' above values it labelled '# profile'."""
    config = write_config(tmp_path, PROFILES)
    result = dcmweb("--config", str(config), "config", "show")
    assert result.stdout.splitlines()[1] == "# profile: home (default-profile)"
    assert shown(result)["workers"] == "2  # profile"
    chosen = dcmweb("--config", str(config), "config", "show", env={"DCMWEB_PROFILE": "prod"})
    assert chosen.stdout.splitlines()[1] == "# profile: prod"
    assert dcmweb("config", "show").stdout.splitlines()[1] == "# profile: (none)"


NESTED = """\
[profiles.a]
host = "{url}"

[profiles.a.operations.wait]
timeout = 1
"""


def test_a_subcommand_of_a_group_takes_settings_from_the_profile_and_env(
        tmp_path: Path) -> None:
    """Old dcmweb refused [profiles.a.operations.wait] ('unknown setting operations.wait'),
    and config show left out DCMWEB_OPERATIONS_WAIT_TIMEOUT."""
    server = LocalServer(tmp_path / "store", delete_delay=30).start()
    try:
        with Client(server.url) as client:
            client.store(corpus.synthetic_files(tmp_path / "f", 1))
            [study] = client.search("studies")
            operation = client.delete(f"studies/{study['0020000D']['Value'][0]}",
                                      wait=False).operation
        assert operation
        config = write_config(tmp_path, NESTED.format(url=server.url))
        settings = shown(dcmweb("--config", str(config), "-p", "a", "config", "show"))
        assert settings["operations.wait.timeout"] == "1.0  # profile"
        # Used, not only shown: the wait gives up after the profile's 1 s, not 600 s.
        waited = dcmweb("--config", str(config), "-p", "a", "operations", "wait", operation)
        assert waited.exit_code == 5, waited.stderr
    finally:
        server.stop()
    settings = shown(dcmweb("config", "show", env={"DCMWEB_OPERATIONS_WAIT_TIMEOUT": "7"}))
    assert settings["operations.wait.timeout"] == "7.0  # env DCMWEB_OPERATIONS_WAIT_TIMEOUT"


def test_the_xdg_config_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "dcmweb").mkdir()
    (tmp_path / "dcmweb" / "config.toml").write_text(PROFILES)
    settings = shown(dcmweb("config", "show", env={"XDG_CONFIG_HOME": str(tmp_path)}))
    assert settings["workers"] == "2  # profile"


def test_config_show_hides_what_the_logs_hide(tmp_path: Path) -> None:
    headers = "\n".join(["X-Auth: XAuthSecret123", "X-Session-Id: SessSecret456",
                         "X-Amz-Signature: SigSecret789", "Authentication: Bearer AuthnSecret0",
                         "X-Goog-IAP-JWT-Assertion: AssertSecret1",
                         "X-Other: eyJhbGciOiJI.eyJz.c2ln",
                         "X-Trace: visible-value"])
    result = dcmweb("--host", "http://erin:HostPw@Secret444/x@127.0.0.1:9/x", "config", "show",
                    env={"DCMWEB_HEADER": headers, "XDG_CONFIG_HOME": str(tmp_path)})
    settings = shown(result)
    assert settings["host"] == '"http://***@127.0.0.1:9/x"  # flag'
    assert settings["header"] == (
        '["X-Auth: ***", "X-Session-Id: ***", "X-Amz-Signature: ***", "Authentication: ***",'
        ' "X-Goog-IAP-JWT-Assertion: ***", "X-Other: ***", "X-Trace: visible-value"]'
        "  # env DCMWEB_HEADER")
    assert "Secret" not in result.stdout and "eyJ" not in result.stdout
