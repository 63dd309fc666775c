"""Which files a parallel store sends first: the largest, when one file is a large share
of the job, so that the run does not end on one worker sending it alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dcmweb.bulk import BulkStore
from dcmweb.inputs import BackgroundCount, InputSpec
from dcmweb.parallel import Ready
from dcmweb.storefiles import StoreOptions, StoreResult, batches
from dcmweb_devtools import corpus


def tree(folder: Path, files: list[Path], last: Path | None = None) -> list[Path]:
    """``files`` copied into ``folder`` in name order, then ``last`` named to come last."""
    folder.mkdir()
    copies = []
    for index, source in enumerate(files):
        copies.append(folder / f"{index:03d}.dcm")
        shutil.copyfile(source, copies[-1])
    if last is not None:
        copies.append(folder / "zzz.dcm")
        shutil.copyfile(last, copies[-1])
    return copies


@pytest.fixture
def small_and_one_large(tmp_path: Path, pydicom_files: list[Path]) -> list[Path]:
    """24 of pydicom's smaller files, then its largest, last in the walk."""
    by_size = sorted(pydicom_files, key=os.path.getsize)
    return tree(tmp_path / "in", by_size[20:44], last=by_size[-1])


def sent_order(paths: list[Path], options: StoreOptions) -> list[list[Path]]:
    sent = []
    for batch in batches(paths, options):
        assert isinstance(batch, list)  # no file decided without sending
        sent.append([item.path for item in batch])
    return sent


def test_the_largest_file_goes_first_and_every_file_once(
        small_and_one_large: list[Path]) -> None:
    options = StoreOptions(workers=3, batch_size=5, batch_bytes=200_000, largest_first=100)
    sent = sent_order(small_and_one_large, options)
    assert sent[0] == [small_and_one_large[-1]]  # last in the input, alone and first
    flat = [path for batch in sent for path in batch]
    assert sorted(flat) == sorted(small_and_one_large)
    sizes = [os.path.getsize(path) for path in flat]
    assert sizes == sorted(sizes, reverse=True)
    # In input order without the option, or with one worker (order is all it would change).
    for unchanged in (StoreOptions(workers=3, batch_size=5, batch_bytes=200_000),
                      StoreOptions(workers=1, batch_size=5, batch_bytes=200_000,
                                   largest_first=100)):
        assert [p for batch in sent_order(small_and_one_large, unchanged)
                for p in batch] == small_and_one_large


def test_a_window_moves_a_file_at_most_that_far_ahead(small_and_one_large: list[Path]
                                                      ) -> None:
    options = StoreOptions(workers=3, batch_size=1, largest_first=4)
    flat = [path for batch in sent_order(small_and_one_large, options) for path in batch]
    largest = flat.index(small_and_one_large[-1])
    assert len(small_and_one_large) - 1 - largest <= 3
    assert sorted(flat) == sorted(small_and_one_large)


def test_files_of_one_size_keep_their_order(tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 12, studies=2, seed="order")
    files = sorted(files)
    sizes = {os.path.getsize(path) for path in files}
    assert len(sizes) == 1
    options = StoreOptions(workers=4, batch_size=3, largest_first=100)
    assert [p for batch in sent_order(files, options) for p in batch] == files


def shaped(folder: Path, workers: int) -> StoreOptions:
    spec = InputSpec(masks=(str(folder),))
    count = BackgroundCount(spec)
    store = BulkStore(None, "http://127.0.0.1:9/dicom-web",  # type: ignore[arg-type]
                      spec, StoreOptions(workers=workers), count=count)
    return store.shaped()


def test_a_parallel_store_sends_a_large_share_of_the_job_first(
        small_and_one_large: list[Path], tmp_path: Path) -> None:
    options = shaped(small_and_one_large[0].parent, workers=3)
    # 25 files, 3 workers: 6 requests of at most 5 files; the largest file is more than
    # a request's share of the bytes, so the whole (small) job is read ahead.
    assert options.batch_size == 5
    total = sum(os.path.getsize(path) for path in small_and_one_large)
    assert os.path.getsize(small_and_one_large[-1]) > total // 6
    assert options.largest_first == 25
    even = corpus.synthetic_files(tmp_path / "even", 30, studies=3, seed="even")
    assert shaped(even[0].parent, workers=3).largest_first == 0  # nothing to gain
    assert shaped(small_and_one_large[0].parent, workers=1).largest_first == 0


def test_files_decided_without_sending_pass_the_window_at_once(
        small_and_one_large: list[Path], tmp_path: Path) -> None:
    # The window holds files to send the largest first; an outcome decided without
    # sending is not held with them (it would wait for a batch, in memory, unreported).
    notes = tmp_path / "notes.txt"
    notes.write_text("not DICOM")
    paths = [*small_and_one_large[:5], notes, *small_and_one_large[5:]]
    options = StoreOptions(workers=3, batch_size=5, batch_bytes=200_000, largest_first=100)
    first, *rest = batches(paths, options)
    assert isinstance(first, Ready)
    assert [(r.path, r.status) for r in first.result] == [(notes, "skipped")]
    assert isinstance(first.result[0], StoreResult)
    assert sorted(item.path for batch in rest if isinstance(batch, list) for item in batch
                  ) == sorted(small_and_one_large)
