"""STOW-RS: store instances from multipart/related or single-part application/dicom."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jsonjpeg
from .handler import Handler, Request
from .multipart import MultipartError, Part, iter_parts, parse_media_type
from .responses import (
    FAILURE_DETAIL_TAG,
    GOOGLE_CREATOR_TAG,
    dataset_to_json,
    dataset_to_xml,
    element,
    sequence,
    sorted_dataset,
)
from .storage import InstanceInfo

JSON = "application/dicom+json"
STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")

# FailureReason codes (PS3.18 / PS3.4) the server uses.
PROCESSING_FAILURE = 0x0110  # 272: conflicts, study being deleted
DUPLICATE = 0x0111  # 273: with refuse_duplicates, an instance already stored
CANNOT_UNDERSTAND = 0xC000  # not DICOM, unreadable
STUDY_MISMATCH = 0xA900  # instance does not belong to the study in the URL

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class NotDicom(ValueError):
    """The part cannot be read as a DICOM Part 10 instance."""


@dataclass
class Outcome:
    sop_class_uid: str | None
    sop_uid: str | None
    study_uid: str | None = None
    series_uid: str | None = None
    failure: int | None = None  # FailureReason; None when stored
    detail: str = ""


def handle_stow(h: Handler, req: Request, study: str | None) -> None:
    storage_class = req.headers.get("Storage-Class", "STANDARD").strip().upper()
    if storage_class not in STORAGE_CLASSES:
        h.send_error_json(400, f"invalid Storage-Class header {storage_class!r}")
        return
    media, params = parse_media_type(req.headers.get("Content-Type"))
    outcomes: list[Outcome] = []
    if media == "application/dicom":
        if req.body_path is None or req.body_length == 0:
            h.send_error_json(400, "empty request body")
            return
        part = Part({}, req.body_path, req.body_length, req.body_sha256)
        # The store may move the body file itself; the handler's cleanup tolerates that.
        outcomes.append(_store_part(h, part, study, storage_class))
    elif media == "multipart/related":
        kind = params.get("type", "application/dicom").lower()
        if kind not in ("application/dicom", JSON):
            h.send_error_json(
                415, f"unsupported multipart type {kind!r}; use application/dicom or {JSON}"
            )
            return
        if req.body_path is None:
            h.send_error_json(400, "empty request body")
            return
        if kind == JSON:
            try:
                outcomes = _store_json(h, req.body_path, params.get("boundary", ""), study,
                                       storage_class)  # fmt: skip
            except (MultipartError, jsonjpeg.BuildError) as exc:
                h.send_error_json(400, f"cannot create instances from this request: {exc}")
                return
            _answer(h, req, study, outcomes)
            return
        try:
            with open(req.body_path, "rb") as src:
                for part in iter_parts(src, params.get("boundary", ""), _temp_maker(h)):
                    outcomes.append(_store_part(h, part, study, storage_class))
        except MultipartError as exc:
            if not outcomes:
                h.send_error_json(400, f"malformed multipart body: {exc}")
                return
            outcomes.append(Outcome(None, None, failure=CANNOT_UNDERSTAND, detail=str(exc)))
        if not outcomes:
            h.send_error_json(400, "multipart body has no parts")
            return
    else:
        h.send_error_json(
            415,
            f"unsupported Content-Type {media or '(none)'!r}; use multipart/related;"
            ' type="application/dicom" or application/dicom',
        )
        return
    _answer(h, req, study, outcomes)


def _store_json(
    h: Handler, body: Path, boundary: str, study: str | None, storage_class: str
) -> list[Outcome]:
    """Instances built from a DICOM JSON part plus bulk parts (see jsonjpeg)."""
    with open(body, "rb") as src:
        parts = list(iter_parts(src, boundary, _temp_maker(h)))
    try:
        if not parts:
            raise jsonjpeg.BuildError("the multipart body has no parts")
        media, _ = parse_media_type(parts[0].headers.get("content-type", JSON))
        if media not in (JSON, "application/json"):
            raise jsonjpeg.BuildError(f"the first part is {media}, not {JSON}")
        objects = jsonjpeg.datasets(parts[0].path.read_bytes())
        bulk: dict[str, jsonjpeg.BulkPart] = {}
        for part in parts[1:]:
            part_media, part_params = parse_media_type(part.headers.get("content-type"))
            location = part.headers.get("content-location")
            if location:
                bulk[location] = jsonjpeg.BulkPart(
                    part_media, part_params.get("transfer-syntax"), part.path.read_bytes()
                )
    finally:
        for part in parts:
            part.path.unlink(missing_ok=True)
    outcomes = []
    for obj in objects:
        try:
            data = jsonjpeg.build(obj, bulk)
        except jsonjpeg.BuildError as exc:
            sop = _json_uid(obj, "00080018")
            outcomes.append(Outcome(_json_uid(obj, "00080016"), sop, failure=CANNOT_UNDERSTAND,
                                    detail=str(exc)))  # fmt: skip
            continue
        path = h.app.store.new_temp("jsonpart-")
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        part = Part({"content-type": "application/dicom"}, path, len(data), digest)
        outcomes.append(_store_part(h, part, study, storage_class))
    return outcomes


def _json_uid(obj: dict[str, Any], tag: str) -> str | None:
    values = (obj.get(tag) or {}).get("Value") or [None]
    return values[0] if isinstance(values[0], str) else None


def _temp_maker(h: Handler) -> Any:
    return lambda: h.app.store.new_temp("stowpart-")


def _store_part(h: Handler, part: Part, study: str | None, storage_class: str) -> Outcome:
    """Store one part; its file is moved into the store or removed, never left behind."""
    try:
        part_type, _ = parse_media_type(part.headers.get("content-type", "application/dicom"))
        if part_type != "application/dicom":
            return Outcome(
                None,
                None,
                failure=CANNOT_UNDERSTAND,
                detail=f"part Content-Type {part_type!r} is not application/dicom",
            )
        try:
            info = read_instance_info(part.path)
        except NotDicom as exc:
            return Outcome(None, None, failure=CANNOT_UNDERSTAND, detail=str(exc))
        outcome = Outcome(info.sop_class_uid, info.sop_uid, info.study_uid, info.series_uid)
        if study is not None and info.study_uid != study:
            outcome.failure = STUDY_MISMATCH
            outcome.detail = (
                f"StudyInstanceUID {info.study_uid} of the instance does not match"
                f" the study {study} in the request URL"
            )
            return outcome
        result = h.app.store.add(info, part.path, part.sha256, part.size, storage_class)
        if result == "duplicate":
            h.app.duplicates.append(info.sop_uid)
            if h.app.refuse_duplicates:
                outcome.failure = DUPLICATE
                outcome.detail = "the instance is already stored (identical bytes)"
        if result == "conflict":
            outcome.failure = PROCESSING_FAILURE
            outcome.detail = (
                "an instance with the same SOPInstanceUID already exists with different content"
            )
        elif result == "deleting":
            outcome.failure = PROCESSING_FAILURE
            outcome.detail = "the study or series is being deleted; retry when the delete is done"
        return outcome
    finally:
        part.path.unlink(missing_ok=True)


def read_instance_info(path: Path) -> InstanceInfo:
    """Read the index attributes of a Part 10 file without its pixel data."""
    from pydicom import dcmread

    try:
        ds = dcmread(path, stop_before_pixels=True)
        meta = ds.file_meta
        ts = str(meta.get("TransferSyntaxUID", "") or "")
        values = {
            "study_uid": str(ds.get("StudyInstanceUID", "") or ""),
            "series_uid": str(ds.get("SeriesInstanceUID", "") or ""),
            "sop_uid": str(ds.get("SOPInstanceUID", "") or ""),
            "sop_class_uid": str(
                ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", "") or ""
            ),
        }
        info = InstanceInfo(
            transfer_syntax_uid=ts,
            patient_name=_text(ds, "PatientName"),
            patient_id=_text(ds, "PatientID"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            accession_number=_text(ds, "AccessionNumber"),
            referring_physician_name=_text(ds, "ReferringPhysicianName"),
            study_description=_text(ds, "StudyDescription"),
            study_id=_text(ds, "StudyID"),
            modality=_text(ds, "Modality"),
            series_number=_int(ds, "SeriesNumber"),
            series_description=_text(ds, "SeriesDescription"),
            instance_number=_int(ds, "InstanceNumber"),
            patient_birth_date=_text(ds, "PatientBirthDate"),
            patient_sex=_text(ds, "PatientSex"),
            institution_name=_text(ds, "InstitutionName"),
            body_part_examined=_text(ds, "BodyPartExamined"),
            manufacturer=_text(ds, "Manufacturer"),
            pps_start_date=_text(ds, "PerformedProcedureStepStartDate"),
            pps_start_time=_text(ds, "PerformedProcedureStepStartTime"),
            **values,
        )
    except Exception as exc:  # pydicom raises many types for garbage input
        raise NotDicom(f"not a readable DICOM Part 10 instance: {exc}") from exc
    if not ts:
        raise NotDicom("the file meta information has no TransferSyntaxUID")
    for name, value in values.items():
        if not value or len(value) > 64 or not _UID.match(value):
            raise NotDicom(f"missing or invalid {name}: {value!r}")
    return info


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    from pydicom.multival import MultiValue

    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)  # multi-valued: DICOM's own separator
    return str(value).strip()


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _answer(h: Handler, req: Request, study: str | None, outcomes: list[Outcome]) -> None:
    base = h.external_base()
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in stored}
    study_url = study or (next(iter(studies)) if len(studies) == 1 else None)
    if study_url:
        body["00081190"] = element("UR", f"{base}/studies/{study_url}")
    if stored:
        body["00081199"] = sequence([_referenced(base, o) for o in stored])
    if failed:
        body["00081198"] = sequence([_failed(o) for o in failed])
    status = 200 if not failed else 202 if stored else 409
    obj = sorted_dataset(body)
    if "application/dicom+json" in req.headers.get("Accept", "").lower():
        h.send_bytes(status, dataset_to_json(obj), "application/dicom+json")
    else:
        h.send_bytes(status, dataset_to_xml(obj), "application/dicom+xml")


def _referenced(base: str, o: Outcome) -> dict[str, Any]:
    url = f"{base}/studies/{o.study_uid}/series/{o.series_uid}/instances/{o.sop_uid}"
    return sorted_dataset(
        {
            "00081150": element("UI", o.sop_class_uid),
            "00081155": element("UI", o.sop_uid),
            "00081190": element("UR", url),
        }
    )


def _failed(o: Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081197": element("US", o.failure),
        GOOGLE_CREATOR_TAG: element("LO", "GOOGLE"),
        FAILURE_DETAIL_TAG: element("LT", o.detail),
    }
    if o.sop_class_uid:
        item["00081150"] = element("UI", o.sop_class_uid)
    if o.sop_uid:
        item["00081155"] = element("UI", o.sop_uid)
    return sorted_dataset(item)
