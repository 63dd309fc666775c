"""STOW-RS: send files in batches, match the answer back to files, report each one.

Each attempt rebuilds its body from the files on disk (see http.Http.request), so a
retried upload always carries every byte. Batches group small files into one
multipart request: per-request overhead, not bytes, dominates small instances.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .dicomhead import read_uids
from .errors import UsageError
from .files import Part10Info, read_part10_info
from .http import Http, body_message, read_limited
from .multipart import MultipartBody, MultipartError, new_boundary
from .parallel import run_bounded
from .stowanswer import StowAnswer, parse_stow_answer

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
ANSWER_LIMIT = 16 * 1024 * 1024  # a STOW answer lists each instance: far less than this
HEAD_BYTES = 64 * 1024  # enough to reach the SOPInstanceUID of any sane file
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory: no server stores it
Status = Literal["stored", "failed", "skipped"]


@dataclass(frozen=True)
class StoreOptions:
    single_part: bool = False
    batch_size: int = 20  # instances per multipart request
    batch_bytes: int = 16 * 1024 * 1024  # a larger file travels alone
    workers: int = 1
    storage_class: str | None = None
    study_uid: str | None = None  # POST to /studies/{uid} instead of /studies

    def __post_init__(self) -> None:
        if self.storage_class and self.storage_class.upper() not in STORAGE_CLASSES:
            raise UsageError(f"unknown storage class {self.storage_class!r}",
                             f"use one of {', '.join(STORAGE_CLASSES)}")
        if self.batch_size < 1 or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")


@dataclass(frozen=True)
class StoreResult:
    path: Path
    status: Status
    size: int = 0
    sop_instance_uid: str | None = None
    retrieve_url: str | None = None
    message: str | None = None  # why it failed or was skipped, or a server warning


@dataclass(frozen=True)
class _Item:
    path: Path
    info: Part10Info
    size: int


def _batches(paths: Iterable[Path], options: StoreOptions,
             skipped: list[StoreResult]) -> Iterator[list[_Item]]:
    """Group DICOM files into requests; files decided without sending go to ``skipped``."""
    limit = 1 if options.single_part else options.batch_size
    batch: list[_Item] = []
    batch_bytes = 0
    uids: set[str] = set()
    for path in paths:
        info = read_part10_info(path)
        if info is not None and info.sop_class_uid == DICOMDIR_CLASS:
            skipped.append(StoreResult(path, "skipped", message="a DICOMDIR index, not an image"))
            continue
        if info is None:
            try:
                with open(path, "rb"):
                    empty = os.path.getsize(path) == 0
            except OSError as exc:  # asked for but unreadable: a failure, not a skip
                skipped.append(StoreResult(path, "failed", message=f"cannot read: {exc.strerror}"))
                continue
            reason = "empty file" if empty else "not a DICOM Part-10 file (no DICM marker)"
            skipped.append(StoreResult(path, "skipped", message=reason))
            continue
        size = os.path.getsize(path)
        # One UID per request: the answer is matched to files by SOP Instance UID.
        if batch and (len(batch) >= limit or batch_bytes + size > options.batch_bytes
                      or info.sop_instance_uid in uids):
            yield batch
            batch, batch_bytes, uids = [], 0, set()
        batch.append(_Item(path, info, size))
        batch_bytes += size
        uids.add(info.sop_instance_uid)
    if batch:
        yield batch


def _dataset_sop_uid(path: Path) -> str | None:
    """The data set's SOPInstanceUID, read from the start of the file."""
    try:
        with open(path, "rb") as handle:
            uids = read_uids(handle.read(HEAD_BYTES))
    except OSError:
        return None
    return uids[2] if uids else None


class Uploader:
    """Sends batches to one store and turns answers into per-file results."""

    def __init__(self, http: Http, base_url: str, options: StoreOptions) -> None:
        self.http = http
        self.options = options
        self.url = f"{base_url}/studies"
        if options.study_uid:
            self.url += f"/{options.study_uid}"

    def _post(self, items: list[_Item]) -> tuple[int, StowAnswer, str]:
        headers = {"Accept": "application/dicom+json"}
        if self.options.storage_class:
            headers["Storage-Class"] = self.options.storage_class.upper()
        paths = [item.path for item in items]
        if self.options.single_part:
            headers["Content-Type"] = "application/dicom"

            def body() -> object:
                return open(paths[0], "rb")  # Http closes it after sending
        else:
            boundary = new_boundary()
            headers["Content-Type"] = (
                f'multipart/related; type="application/dicom"; boundary={boundary}')

            def body() -> object:
                return MultipartBody(paths, boundary=boundary)

        what = f"store {paths[0]}" if len(paths) == 1 else f"store of {len(paths)} files"
        response = self.http.request("POST", self.url, what=what, headers=headers, body=body,
                                     accept_status=(400, 409, 413, 415, 422), stream=True)
        with response:
            content = read_limited(response, ANSWER_LIMIT)
        answer = parse_stow_answer(content)
        message = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        # Not a STOW answer at all (e.g. Google's JSON error envelope): show its message.
        detail = answer.text
        if not (detail or answer.stored or answer.failed):
            detail = body_message(content.decode("utf-8", "replace"))
        if detail:
            message += f": {detail}"
        elif response.status_code == 400:
            message += " (the server could not read or accept the file)"
        return response.status_code, answer, message

    def send(self, items: list[_Item]) -> list[StoreResult]:
        try:
            status, answer, message = self._post(items)
        except (MultipartError, OSError) as error:
            # A file deleted or changed since it was listed: the upload was cut, so
            # nothing of it is stored. Find out which file, one request each.
            if len(items) > 1:
                return self._one_by_one(items)
            return [self._result(items[0], "failed", message=f"cannot send: {error}")]
        results: list[StoreResult] = []
        unknown: list[_Item] = []
        answered = [*answer.failed, *answer.stored]
        for item in items:
            uid = item.info.sop_instance_uid
            if answered and uid not in answered:
                # The answer names the data set's SOPInstanceUID; the File Meta's may differ.
                uid = _dataset_sop_uid(item.path) or uid
            if len(items) == 1 and uid not in answered and len(answered) == 1:
                # One file, one answer: it is this file's, even when the File Meta
                # MediaStorageSOPInstanceUID differs from the data set's SOPInstanceUID.
                uid = answered[0]
            if uid in answer.failed:
                results.append(self._result(item, "failed", message=answer.failed[uid].describe()))
            elif uid in answer.stored:
                warning = answer.warnings.get(uid)
                note = f"server warning 0x{warning:04X}" if warning is not None else None
                results.append(self._result(item, "stored", answer.stored[uid], note))
            elif status == 200:
                results.append(self._result(item, "stored", None))
            else:
                unknown.append(item)
        if unknown and len(items) > 1:
            # The answer does not say which files failed: ask one file at a time.
            # Re-storing identical bytes is a no-op on GCP and Orthanc.
            results.extend(self._one_by_one(unknown))
        elif unknown:
            hint = ""
            if status == 415 and self.options.single_part:
                hint = " (this server needs multipart uploads: drop --single-part)"
            results.append(self._result(unknown[0], "failed", message=message + hint))
        return results

    def _one_by_one(self, items: list[_Item]) -> list[StoreResult]:
        return [result for item in items for result in self.send([item])]

    @staticmethod
    def _result(item: _Item, status: Status, url: str | None = None,
                message: str | None = None) -> StoreResult:
        return StoreResult(item.path, status, item.size, item.info.sop_instance_uid, url, message)


def iter_store(http: Http, base_url: str, paths: Iterable[Path],
               options: StoreOptions | None = None) -> Iterator[StoreResult]:
    """Store files and yield one result per file as batches finish.

    Files that are not DICOM are yielded as ``skipped``. Per-file failures are
    results, not exceptions; errors that make going on pointless (credentials,
    an unreachable server) stop the run and are raised after the finished
    batches' results have been yielded.
    """
    options = options or StoreOptions()
    uploader = Uploader(http, base_url, options)
    skipped: list[StoreResult] = []
    for results in run_bounded(uploader.send, _batches(paths, options, skipped),
                               options.workers):
        while skipped:
            yield skipped.pop(0)
        yield from results
    while skipped:
        yield skipped.pop(0)

