"""curl config files: one block per transfer, so one curl process runs them all.

Within one process curl reuses the keep-alive connection between transfers; with
``--parallel --parallel-max N`` it runs N transfers at once on N connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

# Per-transfer options (reset by "next") repeated in every block.
COMMON = (("noproxy", "*"), ("fail", None), ("no-progress-meter", None), ("header", "Expect:"))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def block(url: str, *, headers: Mapping[str, str] | None = None, data_file: Path | None = None,
          output: str = "/dev/null", write_out: str | None = None) -> list[str]:
    lines = [f"url = {_quote(url)}"]
    for name, value in COMMON:
        lines.append(name if value is None else f"{name} = {_quote(value)}")
    for name, value in (headers or {}).items():
        lines.append(f"header = {_quote(f'{name}: {value}')}")
    if data_file is not None:
        lines.append(f"data-binary = {_quote('@' + str(data_file))}")
    lines.append(f"output = {_quote(output)}")
    if write_out is not None:
        lines.append(f"write-out = {_quote(write_out)}")
    return lines


def write_config(path: Path, blocks: Iterable[list[str]]) -> Path:
    """Join blocks with "next" (none after the last) into a config file for --config."""
    out: list[str] = []
    for lines in blocks:
        if out:
            out.append("next")
        out.extend(lines)
    path.write_text("\n".join(out) + "\n")
    return path


def command(config: Path, *, parallel: int = 0, fail_early: bool = False,
            retries: int = 0) -> list[str]:
    """curl for a config file. Without ``fail_early`` curl's exit status is only the last
    transfer's: pages that failed before a last empty one leave a pipeline exiting 0."""
    argv = ["curl", "--no-progress-meter"]
    if fail_early:
        argv.append("--fail-early")
    if retries:
        argv += ["--retry", str(retries)]
    if parallel > 1:
        argv += ["--parallel", "--parallel-max", str(parallel)]
    return [*argv, "--config", str(config)]
