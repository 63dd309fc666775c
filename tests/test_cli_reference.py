"""docs/cli-reference.md is the --help of every command, as the code says today."""

from __future__ import annotations

from dcmweb_devtools import clidocs


def test_cli_reference_is_up_to_date() -> None:
    assert clidocs.PATH.read_text() == clidocs.render(), (
        "docs/cli-reference.md is stale: run python -m dcmweb_devtools.clidocs")


def test_every_command_has_a_section() -> None:
    text = clidocs.PATH.read_text()
    for heading in ("## dcmweb\n", "## dcmweb store\n", "## dcmweb config show\n",
                    "## dcmweb completion\n"):
        assert heading in text
