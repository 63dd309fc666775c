"""Run the examples shown in docs/usage.md, so that the documentation cannot rot."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner, Result

USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def run_example(example: str, host: str, replace: dict[str, str] | None = None) -> Result:
    """Check that ``example`` (a ``dcmweb HOST ...`` line) is in docs/usage.md, then run
    it with HOST replaced by ``host`` and each key of ``replace`` (a placeholder such as
    studies/1.2.3, longest first) by its value."""
    from dcmweb.cli import cli

    assert example in USAGE.read_text(), f"not in docs/usage.md: {example}"
    for old in sorted(replace or {}, key=len, reverse=True):
        example = example.replace(old, (replace or {})[old])
    words = shlex.split(example)
    assert words[:2] == ["dcmweb", "HOST"], example
    return CliRunner().invoke(cli, [host, *words[2:]], catch_exceptions=False)
