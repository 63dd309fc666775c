"""The GLOBs of ``store``: masks (``*`` within a folder, ``**`` across) and the
--include/--exclude filters (as aws s3 reads them: ``*`` crosses '/'; with '/', the path
below the input folder; ``**/`` any folders or none; a trailing '/' for folders only).
"""

from __future__ import annotations

import glob
import os
import re
from typing import NamedTuple

from .errors import UsageError
from .optionnames import option


def check_filter(keyword: str, pattern: str, masks: tuple[str, ...]) -> None:
    """Refuse a GLOB that could match nothing below the input folders: it matched the
    path as typed once, and silently matching nothing now would store what a job meant
    to leave out."""
    why = "a GLOB with '/' matches the path below the input folder"
    if pattern.startswith("/") and masks:
        raise UsageError(f"{option(keyword, pattern)} would match nothing: {why}",
                         "for 'store /data', /data/2026/tmp is '2026/tmp'")
    body = Glob.parse(pattern).body
    if "/" not in body:
        return
    parts = body.split("/")
    for folder in filter(None, map(_input_folder, masks)):
        typed = os.path.normpath(folder)
        name = os.path.basename(os.path.abspath(typed))
        as_typed = typed not in (".", "..") and body.startswith(typed + "/")
        if parts[0] == ".." or ((as_typed or parts[0] == name)
                                and not os.path.lexists(os.path.join(folder, parts[0]))):
            below = parts[parts.index(name) + 1:] if name in parts[:-1] else parts[1:]
            raise UsageError(f"{option(keyword, pattern)} would match nothing: {why} "
                             f"({folder}), without the folder's own name",
                             "write it relative to the folder: "
                             f"{option(keyword, '/'.join(below))}")


def _input_folder(mask: str) -> str | None:
    """The folder a filter's paths start below for the input ``mask``; None for a file
    given directly."""
    expanded = os.path.expanduser(mask)
    if os.path.isdir(expanded):
        return expanded
    if glob.has_magic(expanded) and not os.path.lexists(expanded):
        return mask_parts(expanded)[0] or "."
    return None


def mask_parts(mask: str) -> tuple[str, list[str]]:
    """A mask's fixed leading folders ('' for none) and the parts of the rest."""
    # The old tool's '**' matched files at any depth: 'a/**' is 'a/**/*' and './**.dcm'
    # is './**/*.dcm'.
    pattern = re.sub(r"\*\*(?![/\\])", "**/*", mask).replace(os.sep, "/")
    parts = pattern.split("/")
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    root = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else "")
    return root, parts[fixed:]


class Glob(NamedTuple):
    """One --include/--exclude GLOB."""

    body: str  # without a leading './' or a trailing '/'
    regex: re.Pattern[str]
    folders_only: bool  # written with a trailing '/': 'tmp/' is the folder tmp

    @classmethod
    def parse(cls, pattern: str) -> Glob:
        body = pattern.rstrip("/") or pattern  # '/' alone stays
        folders_only = body != pattern
        while body.startswith("./"):
            body = body[2:].lstrip("/")
        return cls(body, glob_regex(body, across=True), folders_only)

    def matches(self, path: str, folder: bool) -> bool:
        """Whether the GLOB takes the file or folder ``path``: with '/', by the whole
        path, else by its last name; a folder GLOB takes a file by a folder above it."""
        if self.folders_only and not folder:
            parts = path.split("/")[:-1]
            return any(self._takes("/".join(parts[:end])) for end in range(1, len(parts) + 1))
        return self._takes(path)

    def _takes(self, path: str) -> bool:
        return bool(self.regex.match(path if "/" in self.body else path.rsplit("/", 1)[-1]))


def glob_regex(pattern: str, across: bool = False) -> re.Pattern[str]:
    """A regex for one glob: ``*``/``?``/``[..]`` stay in one folder (``across``: ``*``
    and ``?`` match '/' too, as aws s3 filters do), ``**/`` spans any number of folders,
    none included (as in .gitignore: ``**/tmp`` is also the top ``tmp``)."""
    out: list[str] = []
    index = 0
    any_char = "." if across else "[^/]"
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append(r"(?:.*/)?" if across else r"(?:[^/]*/)*")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(r".*")
            index += 2
            continue
        if char == "*":
            out.append(f"{any_char}*")
        elif char == "?":
            out.append(any_char)
        elif char == "[":
            end = pattern.find("]", index + 2)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                index = end + 1
                continue
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def matches(globs: tuple[Glob, ...], path: str, folder: bool = False) -> bool:
    return any(pattern.matches(path, folder) for pattern in globs)


def without_dot(path: str) -> str:
    """A path as given, as a GLOB is read: without a leading './'."""
    while path.startswith("./"):
        path = path[2:].lstrip("/")
    return path
