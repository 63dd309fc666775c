"""Long-running delete operations, shaped like Google's google.longrunning.Operation.

A delete blocks inserts into its study/series at once, then removes its instances one
by one spread over `delay` seconds, so the counters move while it runs (success up,
pending down, like Google's); then it becomes done. Operations live in memory only.
With a search lag, searches still list each removed instance that long after it went.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
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
        pending = 0 if self.done else max(0, self.total - self.deleted)
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


def check_search_lag(seconds: object) -> float:
    """A search lag in seconds, or ValueError (the JSON of /_control brings any type)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"search_lag must be a number of seconds, not {seconds!r}")
    if not 0 <= seconds < math.inf:
        raise ValueError(f"search_lag must be a finite number of seconds, at least 0, "
                         f"not {seconds}")
    return float(seconds)


class Operations:
    def __init__(self, store: Store, delay: float, lag: Callable[[], float]) -> None:
        self.store = store
        self.delay = delay
        self.lag = lag  # the server's search lag, read at each removal
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

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
        thread = threading.Thread(target=self._run, args=(op,), daemon=True)
        with self._lock:
            self._ops[op_id] = op
            self._threads.append(thread)
        thread.start()
        return op

    def _run(self, op: Operation) -> None:
        """Delete one instance per step; a cancelled run (server stopping) ends early."""
        rows = self.store.instances(op.study, op.series)
        step = self.delay / max(1, len(rows))
        try:
            for row in rows:
                if self._stop.wait(step):
                    return
                # An instance deleted meanwhile by its own request is gone all the same.
                self.store.delete(op.study, op.series, row["sop_uid"], unblock=False,
                                  linger=self.lag())
                with self._lock:
                    op.deleted += 1
        finally:
            if not self._stop.is_set():
                late = self.store.delete(op.study, op.series, unblock=True,
                                         linger=self.lag())
                with self._lock:
                    op.deleted = min(op.total, op.deleted + late)
                    op.end_time = _now()
                    op.done = True

    def get(self, op_id: str) -> dict[str, Any] | None:
        with self._lock:
            op = self._ops.get(op_id)
            return op.to_json() if op else None

    def shutdown(self) -> None:
        """Finish nothing more: running deletes are cancelled with the server."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
            self._threads.clear()
        for thread in threads:
            thread.join(timeout=5)
