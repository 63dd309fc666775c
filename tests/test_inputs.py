"""The lazy input stream of store: folders, masks, lists, filters and shards."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from dcmweb.errors import UsageError
from dcmweb.inputs import BackgroundCount, Inputs, InputSpec, Shard
from dcmweb.optionnames import as_flags


def tree(root: Path, *names: str) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def listed(spec: InputSpec, stdin: bytes | None = None) -> list[str]:
    source = Inputs(spec, io.BytesIO(stdin) if stdin is not None else None)
    return [str(path) for path in source]


def test_folder_walk_is_depth_first_in_name_order(tmp_path: Path) -> None:
    root = tree(tmp_path / "t", "b/2.dcm", "a/1.dcm", "a/z/3.dcm", "top.dcm", ".hidden")
    (root / "loop").symlink_to(root, target_is_directory=True)  # passed on once: no loop
    assert listed(InputSpec(masks=(str(root),))) == [str(root / name) for name in (
        ".hidden", "loop", "top.dcm", "a/1.dcm", "a/z/3.dcm", "b/2.dcm")]


def linked_tree(tmp_path: Path) -> Path:
    outside = tree(tmp_path / "outside", "real/r1.dcm", "real/deep/r2.dcm", "other.dcm")
    root = tree(tmp_path / "t", "own/o.dcm")
    (root / "2026").symlink_to(outside / "real")  # followed
    (root / "again").symlink_to(outside / "real")  # the same folder: walked once, as 2026
    (root / "latest").symlink_to(root / "own")  # in the tree: its files taken as own/...
    (root / "own" / "up").symlink_to(root)  # a loop: passed on once, to be reported
    (outside / "real" / "back").symlink_to(root)  # a loop through a link
    (root / "wide").symlink_to(outside)  # holds real, walked already as 2026
    return root


LINKED = ["2026/back", "2026/r1.dcm", "2026/deep/r2.dcm", "own/o.dcm", "own/up",
          "wide/other.dcm"]


def test_links_to_folders_are_followed_once_and_loops_passed_on(tmp_path: Path) -> None:
    """Links to folders were left out without a word: /data/2026 -> /mnt/disk2/2026
    never uploaded a year."""
    root = linked_tree(tmp_path)
    assert listed(InputSpec(masks=(str(root),))) == [str(root / name) for name in LINKED]


def test_masks_follow_links_to_folders_once(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(linked_tree(tmp_path))
    assert listed(InputSpec(masks=("**",))) == LINKED
    assert listed(InputSpec(masks=("**.dcm",))) == [
        name for name in LINKED if name.endswith(".dcm") or name.endswith(("back", "up"))]
    # latest -> own: taken as own/o.dcm, once; unless the mask does not reach own
    assert listed(InputSpec(masks=("*/*.dcm",))) == ["2026/r1.dcm", "own/o.dcm",
                                                      "wide/other.dcm"]
    assert listed(InputSpec(masks=("l*/*.dcm",))) == ["latest/o.dcm"]


@pytest.mark.parametrize(("mask", "expected"), [
    ("**.dcm", {"a/1.dcm", "a/z/3.dcm", "b/2.dcm", "top.dcm"}),
    ("a/**", {"a/1.dcm", "a/z/3.dcm", "a/notes.txt"}),
    ("*/*.dcm", {"a/1.dcm", "b/2.dcm"}),
    ("*.dcm", {"top.dcm"}),
    ("a/[0-9].dcm", {"a/1.dcm"}),
    ("**/3.dcm", {"a/z/3.dcm"}),
    # a folder the mask names is walked, as when the shell expands the mask
    ("*", {"a/1.dcm", "a/z/3.dcm", "a/notes.txt", "b/2.dcm", "top.dcm"}),
    ("a/*", {"a/1.dcm", "a/z/3.dcm", "a/notes.txt"}),
    ("[ab]", {"a/1.dcm", "a/z/3.dcm", "a/notes.txt", "b/2.dcm"}),
])
def test_masks_match_like_the_old_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       mask: str, expected: set[str]) -> None:
    tree(tmp_path, "a/1.dcm", "a/z/3.dcm", "a/notes.txt", "b/2.dcm", "top.dcm", ".h/4.dcm")
    monkeypatch.chdir(tmp_path)
    assert set(listed(InputSpec(masks=(mask,)))) == expected
    absolute = listed(InputSpec(masks=(str(tmp_path / mask),)))
    assert set(absolute) == {str(tmp_path / name) for name in expected}


def test_unmatched_masks_and_empty_folders_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    source = Inputs(InputSpec(masks=(str(tmp_path / "empty"), str(tmp_path / "no*.dcm"))))
    assert list(source) == []
    assert source.stats.unmatched == [str(tmp_path / "empty"), str(tmp_path / "no*.dcm")]


def test_explicit_missing_path_is_passed_on(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.dcm")
    assert listed(InputSpec(masks=(missing,))) == [missing]


def test_overlapping_masks_give_each_file_once(tmp_path: Path) -> None:
    root = tree(tmp_path, "a/1.dcm", "a/2.dcm")
    assert sorted(listed(InputSpec(masks=(str(root / "a"), str(root / "a/1.dcm"))))) == [
        str(root / "a/1.dcm"), str(root / "a/2.dcm")]


def test_include_exclude_and_folder_pruning(tmp_path: Path) -> None:
    root = tree(tmp_path, "a/1.dcm", "a/1.txt", ".snap/x.dcm", "b/keep.dcm", "b/skip.dcm")
    spec = InputSpec(masks=(str(root),), include=("*.dcm",), exclude=(".snap", "b/skip*"))
    source = Inputs(spec)
    assert sorted(str(p) for p in source) == [str(root / "a/1.dcm"), str(root / "b/keep.dcm")]
    assert source.stats.excluded == 2  # 1.txt and skip.dcm; .snap was never entered


@pytest.mark.parametrize(("patterns", "expected"), [
    # A path pattern matched the path as typed: 't/skip' excluded nothing, and 'skip/*'
    # excluded or not depending on how the folder was spelled.
    ({"exclude": ("skip",)}, ["keep/a.dcm", "y/e.dcm", "y/tmp/d.dcm"]),
    ({"exclude": ("skip/*",)}, ["keep/a.dcm", "y/e.dcm", "y/tmp/d.dcm"]),  # '*' crosses '/'
    ({"exclude": ("y/tmp",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm"]),
    ({"exclude": ("tmp",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm"]),
    ({"exclude": ("y/tmp/",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm"]),
    ({"exclude": ("./y/tmp",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm"]),
    ({"exclude": ("**/tmp",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm"]),
    ({"exclude": ("**/skip",)}, ["keep/a.dcm", "y/e.dcm", "y/tmp/d.dcm"]),  # none between
    ({"exclude": ("y/**/d.dcm",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm"]),
    ({"exclude": ("y/**/e.dcm",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm",
                                    "y/tmp/d.dcm"]),
    ({"include": ("skip/",)}, ["skip/b.dcm", "skip/deep/c.dcm"]),  # the files in it
    ({"include": ("deep/",)}, ["skip/deep/c.dcm"]),
    ({"exclude": ("*.dcm/",)}, ["keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm", "y/e.dcm",
                                "y/tmp/d.dcm"]),  # folders only: no file is taken by it
    ({"include": ("y/*",)}, ["y/e.dcm", "y/tmp/d.dcm"]),
    ({"include": ("skip/*.dcm",), "exclude": ("deep",)}, ["skip/b.dcm"]),
])
@pytest.mark.parametrize("spelling", ["t", "./t", "t/", "ABSOLUTE"])
def test_filter_paths_are_relative_to_the_input_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str,
        patterns: dict[str, tuple[str, ...]], expected: list[str]) -> None:
    root = tree(tmp_path / "t", "keep/a.dcm", "skip/b.dcm", "skip/deep/c.dcm",
                "y/tmp/d.dcm", "y/e.dcm")
    monkeypatch.chdir(tmp_path)
    folder = str(root) if spelling == "ABSOLUTE" else spelling
    found = [os.path.relpath(path, folder)
             for path in listed(InputSpec(masks=(folder,), **patterns))]
    assert sorted(found) == expected
    masked = listed(InputSpec(masks=(os.path.join(folder, "**.dcm"),), **patterns))
    assert sorted(os.path.relpath(path, folder) for path in masked) == expected


def test_an_excluded_folder_is_not_walked(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path, "y/tmp/deep/d.dcm", "y/e.dcm")
    opened: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        opened.append(os.path.relpath(path, root))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    source = Inputs(InputSpec(masks=(str(root),), exclude=("y/tmp",)))
    assert [str(path) for path in source] == [str(root / "y/e.dcm")]
    assert (opened, source.stats.excluded) == ([".", "y"], 0)


def test_files_given_directly_match_by_name_or_by_their_path_as_given(tmp_path: Path) -> None:
    root = tree(tmp_path, "keep/a.dcm", "keep/b.txt")
    given = [str(root / "keep/a.dcm"), str(root / "keep/b.txt")]
    assert listed(InputSpec(masks=tuple(given), exclude=("*.txt",))) == given[:1]
    assert listed(InputSpec(masks=tuple(given), exclude=("*/keep/a*",))) == given[1:]


def test_an_absolute_filter_with_folders_or_masks_is_refused(tmp_path: Path) -> None:
    # It once matched the path as typed: it would now leave out nothing, silently.
    with pytest.raises(UsageError, match="exclude='/data/tmp/\\*' would match nothing"):
        InputSpec(masks=("/data",), exclude=("*.txt", "/data/tmp/*"))
    with as_flags(), pytest.raises(UsageError, match="--exclude '/data/tmp/\\*' would match"):
        InputSpec(masks=("/data",), exclude=("/data/tmp/*",))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path}/a.dcm\n{tmp_path}/b.txt\n")
    assert listed(InputSpec(files_from=(str(listing),), exclude=(f"{tmp_path}/b*",))) == [
        f"{tmp_path}/a.dcm"]


def test_a_folder_that_cannot_be_read_is_passed_on_whatever_include_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path, "locked/a.dcm", "b.dcm")
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        if path == str(root / "locked"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    # --include '*.dcm' dropped the folder (its name does not match) without a word.
    assert listed(InputSpec(masks=(str(root),), include=("*.dcm",))) == [
        str(root / "b.dcm"), str(root / "locked")]


NAMES = ["plain.dcm", "with space.dcm", "ünïcødé.dcm", "new\nline.dcm"]


def test_lists_newline_and_nul_separated(tmp_path: Path) -> None:
    paths = [str(tmp_path / name) for name in NAMES]
    for path in paths:
        Path(path).write_bytes(b"x")
    nul = b"\0".join(os.fsencode(p) for p in paths) + b"\0"
    assert listed(InputSpec(files_from=("-",), null_separated=True), nul) == paths
    lines = "\r\n".join(paths[:3]).encode() + b"\n\n"
    assert listed(InputSpec(files_from=("-",)), lines) == paths[:3]
    listing = tmp_path / "list.txt"
    listing.write_bytes(nul)
    assert listed(InputSpec(files_from=(str(listing),), null_separated=True)) == paths


def test_missing_list_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the file list"):
        listed(InputSpec(files_from=(str(tmp_path / "nope.txt"),)))


def test_shards_split_the_input_exactly(tmp_path: Path) -> None:
    names = [f"d{i % 7}/f{i}.dcm" for i in range(300)]
    root = tree(tmp_path, *names)
    every = set(listed(InputSpec(masks=(str(root),))))
    shares = [set(listed(InputSpec(masks=(str(root),), shard=Shard(k, 3)))) for k in (1, 2, 3)]
    assert set().union(*shares) == every
    assert sum(len(share) for share in shares) == len(every)
    assert all(60 < len(share) < 140 for share in shares)  # a fair hash, not all in one
    assert Shard.parse(" 2/3 ") == Shard(2, 3)
    for text in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(UsageError):
            Shard.parse(text)


def test_shard_hash_is_stable_across_processes() -> None:
    # A salted hash (Python's hash()) would split one job differently on each machine.
    code = ("from dcmweb.inputs import Shard; "
            "print([k for k in range(1, 8) if Shard(k, 7).holds('/data/a.dcm')])")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
               for seed in (1, 2)}
    expected = [k for k in range(1, 8) if Shard(k, 7).holds("/data/a.dcm")]
    assert outputs == {f"{expected}\n"} and len(expected) == 1


def test_background_count(tmp_path: Path) -> None:
    root = tree(tmp_path, *(f"d/{i}.dcm" for i in range(50)))
    counter = BackgroundCount(InputSpec(masks=(str(root),)))
    assert counter._thread is not None
    counter._thread.join(10)
    assert counter.total == 50
    assert BackgroundCount(InputSpec(files_from=("-",))).total is None


@pytest.mark.parametrize("name", ["nope.txt", "."])
def test_background_count_of_an_unreadable_list_prints_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # The store walking the same list reports it (one line): the counting thread ends quietly.
    crashes: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    counter = BackgroundCount(InputSpec(files_from=(str(tmp_path / name),)))
    assert counter.wait(10)
    assert (counter.total, crashes) == (None, [])


def test_a_missing_files_from_is_one_line_in_the_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dcmweb", "http://127.0.0.1:9/dicom-web",
                           "store", "--files-from", str(tmp_path / "nope.txt")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.endswith(f"dcmweb: error: cannot read the file list {tmp_path / 'nope.txt'}: "
                         "No such file or directory")


def test_walk_of_200000_files_has_flat_memory_and_streams(tmp_path: Path) -> None:
    """200,000 stub files: the first path comes before the walk has read the tree, and
    peak memory grows by far less than a list of every path would take."""
    script = textwrap.dedent(f"""
        import os, resource, sys, time
        root = {str(tmp_path / "big")!r}
        for d in range(400):
            folder = os.path.join(root, f"{{d:03d}}")
            os.makedirs(folder)
            for f in range(500):
                open(os.path.join(folder, f"{{f:04d}}.dcm"), "wb").close()
        from dcmweb.inputs import Inputs, InputSpec
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        source = iter(Inputs(InputSpec(masks=(root,))))
        opened = []
        real_scandir = os.scandir
        def counting(path):
            opened.append(path)
            return real_scandir(path)
        os.scandir = counting
        import dcmweb.inputs
        first = next(source)
        folders_at_first = len(opened)
        count = 1 + sum(1 for _ in source)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(count, folders_at_first, grown)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    count, folders_at_first, grown_kib = map(int, done.stdout.split())
    assert count == 200_000
    assert folders_at_first <= 2  # the root and the first folder, not 400
    assert grown_kib < 10 * 1024  # a list of 200,000 paths alone would take ~30 MB


@pytest.mark.parametrize("mask", ["data", "data/*", "data/*/*", "data/**"])
def test_a_link_into_the_tree_gives_each_file_once_whatever_the_mask(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask: str) -> None:
    """'data/*' with data/0link -> 2026/keep sent keep's file twice (once per path), and
    --shard split the two paths across machines."""
    monkeypatch.chdir(tree(tmp_path, "data/a.dcm", "data/2026/tmp/b.dcm",
                           "data/2026/keep/c.dcm", "data/tmp/d.dcm"))
    (tmp_path / "data/0link").symlink_to("2026/keep")  # sorts before its target
    (tmp_path / "data/tmp/back").symlink_to("../2026")  # from one branch into another
    (tmp_path / "data/2026/up").symlink_to("..")  # a loop: one row, however reached
    found = listed(InputSpec(masks=(mask,)))
    names = [os.path.basename(path) for path in found]
    top = [] if mask == "data/*/*" else ["a.dcm"]  # two levels down only
    assert sorted(names) == [*top, "b.dcm", "c.dcm", "d.dcm", "up"]
    shares = [path for index in (1, 2, 3)
              for path in listed(InputSpec(masks=(mask,), shard=Shard(index, 3)))]
    assert sorted(shares) == sorted(found)


def test_a_folder_given_twice_through_a_link_gives_each_file_once_per_shard(
        tmp_path: Path) -> None:
    names = [f"{index}.dcm" for index in range(10)]
    root = tree(tmp_path, *(f"data/2026/keep/{name}" for name in names))
    (root / "data/0link").symlink_to("2026/keep")
    masks = (str(root / "data/0link"), str(root / "data/2026"))
    everything = listed(InputSpec(masks=masks))
    assert everything == [str(root / "data/0link" / name) for name in names]
    shares = [path for index in (1, 2)
              for path in listed(InputSpec(masks=masks, shard=Shard(index, 2)))]
    assert sorted(shares) == everything


@pytest.mark.parametrize(("pattern", "hint"), [
    ("data/tmp/*", "tmp/*"),  # the path as typed: it matched yesterday
    ("data/2026/tmp/", "2026/tmp"),
    ("./data/tmp", "tmp"),
    ("../x/data/tmp", "tmp"),
])
@pytest.mark.parametrize("keyword", ["include", "exclude"])
@pytest.mark.parametrize("mask", ["data", "./data/", "data/**.dcm", "DATA_ABSOLUTE"])
def test_a_filter_spelled_with_the_input_folder_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str, hint: str,
        keyword: str, mask: str) -> None:
    """'store data --exclude data/tmp/*' matched the path as typed before: it then
    matched nothing, and the files it meant to leave out were stored (exit 0)."""
    tree(tmp_path / "x", "data/a.dcm", "data/tmp/b.dcm", "data/2026/tmp/c.dcm")
    monkeypatch.chdir(tmp_path / "x")
    mask = mask.replace("DATA_ABSOLUTE", str(tmp_path / "x/data"))
    with as_flags(), pytest.raises(UsageError) as raised:
        InputSpec(masks=(mask,), **{keyword: ("*.txt", pattern)})
    assert raised.value.message.startswith((f"--{keyword} '{pattern}' would match nothing",
                                            f"--{keyword} {pattern} would match nothing"))
    assert raised.value.hint.endswith((f"--{keyword} '{hint}'", f"--{keyword} {hint}"))


def test_a_filter_naming_a_real_subfolder_of_the_same_name_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path, "data/data/a.dcm", "data/b.dcm")
    monkeypatch.chdir(root)
    assert listed(InputSpec(masks=(str(root / "data"),), exclude=("data/*",))) == [
        str(root / "data/b.dcm")]
    # a file given directly is matched by its path as given, which names its folders
    assert listed(InputSpec(masks=("./data/b.dcm",), exclude=("./data/*",))) == []


def test_pruned_folders_are_counted(tmp_path: Path) -> None:
    root = tree(tmp_path, "tmp/a.dcm", "x/tmp/b.dcm", "x/c.dcm", "x/d.txt")
    source = Inputs(InputSpec(masks=(str(root),), exclude=("**/tmp", "*.txt")))
    assert [str(path) for path in source] == [str(root / "x/c.dcm")]
    assert (source.stats.excluded, source.stats.excluded_folders) == (1, 2)
