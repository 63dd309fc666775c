"""Long-running delete operations, shaped like Google's google.longrunning.Operation.

A delete blocks inserts into its study/series at once, and after `delay` seconds
removes the data and becomes done. Operations live in memory only.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .storage import Store

DATASET_NAME = "projects/demo/locations/local/datasets/ds"
_METADATA_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
_EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
_METHOD = "google.cloud.healthcare.v1.dicom.DicomWebService."


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Operation:
    op_id: str
    method: str
    study: str
    series: str | None
    total: int
    create_time: str
    logs_url: str
    end_time: str | None = None
    deleted: int = 0
    done: bool = False

    @property
    def name(self) -> str:
        return f"{DATASET_NAME}/operations/{self.op_id}"

    def to_json(self) -> dict[str, Any]:
        pending = 0 if self.done else self.total
        metadata: dict[str, Any] = {
            "@type": _METADATA_TYPE,
            "apiMethodName": _METHOD + self.method,
            "createTime": self.create_time,
            "logsUrl": self.logs_url,
            # Google sends int64 counters as JSON strings.
            "counter": {
                "success": str(self.deleted),
                "failure": "0",
                "pending": str(pending),
            },
        }
        if self.end_time:
            metadata["endTime"] = self.end_time
        body: dict[str, Any] = {"name": self.name, "metadata": metadata}
        if self.done:
            body["done"] = True
            body["response"] = {"@type": _EMPTY_TYPE}
        return body


class Operations:
    def __init__(self, store: Store, delay: float) -> None:
        self.store = store
        self.delay = delay
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}
        self._timers: dict[str, threading.Timer] = {}

    def start_delete(self, study: str, series: str | None, total: int, logs_base: str) -> Operation:
        op_id = str(secrets.randbelow(9 * 10**18) + 10**18)  # 19 digits, like Google's
        op = Operation(
            op_id=op_id,
            method="DeleteSeries" if series else "DeleteStudy",
            study=study,
            series=series,
            total=total,
            create_time=_now(),
            logs_url=f"{logs_base}/logs/operations/{op_id}",
        )
        self.store.block(study, series)
        timer = threading.Timer(self.delay, self._finish, args=(op,))
        timer.daemon = True
        with self._lock:
            self._ops[op_id] = op
            self._timers[op_id] = timer
        timer.start()
        return op

    def _finish(self, op: Operation) -> None:
        try:
            op.deleted = self.store.delete(op.study, op.series, unblock=True)
        finally:
            with self._lock:
                op.end_time = _now()
                op.done = True
                self._timers.pop(op.op_id, None)

    def get(self, op_id: str) -> dict[str, Any] | None:
        with self._lock:
            op = self._ops.get(op_id)
            return op.to_json() if op else None

    def shutdown(self) -> None:
        """Finish nothing more: running deletes are cancelled with the server."""
        with self._lock:
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
