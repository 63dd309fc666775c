"""Instance files on disk plus a SQLite index of their attributes.

Files are kept byte-for-byte as received under data_dir/objects, named by their
SHA-256 (the same bytes always mean the same SOP instance). The index is one
denormalised table, one row per instance, whose AUTOINCREMENT id gives the stable
insertion order that searches and retrieves use. One connection guarded by a lock
keeps it safe for the handler threads; the work per request is tiny.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT,
    transfer_syntax_uid TEXT,
    patient_name TEXT,
    patient_id TEXT,
    study_date TEXT,
    study_time TEXT,
    accession_number TEXT,
    referring_physician_name TEXT,
    study_description TEXT,
    study_id TEXT,
    modality TEXT,
    series_number INTEGER,
    series_description TEXT,
    instance_number INTEGER,
    patient_birth_date TEXT,
    patient_sex TEXT,
    institution_name TEXT,
    body_part_examined TEXT,
    manufacturer TEXT,
    pps_start_date TEXT,
    pps_start_time TEXT,
    storage_class TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_uid);
"""


@dataclass
class InstanceInfo:
    """Attributes read from an uploaded instance (names match the index columns)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    study_description: str = ""
    study_id: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    instance_number: int | None = None
    patient_birth_date: str = ""
    patient_sex: str = ""
    institution_name: str = ""
    body_part_examined: str = ""
    manufacturer: str = ""
    pps_start_date: str = ""
    pps_start_time: str = ""


# Search columns added after 0.1: an index written by 0.1 gains them (empty).
_ADDED_COLUMNS = (
    "patient_birth_date", "patient_sex", "institution_name", "body_part_examined",
    "manufacturer", "pps_start_date", "pps_start_time",
)  # fmt: skip


AddOutcome = Literal["stored", "duplicate", "conflict", "deleting"]


class DataDirError(OSError):
    """The data folder cannot hold a store (not a folder, not writable, a bad index)."""


class Store:
    def __init__(self, data_dir: str | Path) -> None:
        try:
            self._open(Path(data_dir))
        except (OSError, sqlite3.Error) as exc:
            raise DataDirError(str(exc)) from exc

    def _open(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.objects_dir = self.data_dir / "objects"
        self.tmp_dir = self.data_dir / "tmp"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of a previous run that died mid-upload are never part of the store.
        for stale in self.tmp_dir.iterdir():
            if stale.is_file():
                stale.unlink(missing_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.data_dir / "index.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        # A test store needs no fsync per insert; WAL keeps reads cheap during writes.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(instances)")}
        for column in _ADDED_COLUMNS:
            if column not in present:
                self._db.execute(f"ALTER TABLE instances ADD COLUMN {column} TEXT")
        self._db.create_function("dcm_match", 3, dcm_match, deterministic=True)
        # Deleted instances a search still lists (search_lag), until `until` (monotonic
        # clock): their index rows, kept in memory only. Searches read the view, which
        # shows them beside the live rows; everything else reads `instances`.
        columns = ", ".join(row["name"] for row in
                            self._db.execute("PRAGMA table_info(instances)"))
        self._db.execute("CREATE TEMP TABLE ghosts AS SELECT *, 0.0 AS until"
                         " FROM instances WHERE 0")
        self._db.execute(f"CREATE TEMP VIEW searchable AS SELECT {columns} FROM instances"
                         f" UNION ALL SELECT {columns} FROM ghosts")
        # (study, series or None) -> number of running deletes; STOW into them fails.
        self._blocked: Counter[tuple[str, str | None]] = Counter()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def new_temp(self, prefix: str) -> Path:
        """An empty file in the store's temp dir, on the same filesystem as objects."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=prefix, suffix=".part")
        os.close(fd)
        return Path(name)

    def query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def search(self, query: Callable[[str], tuple[str, list[Any]]]) -> list[sqlite3.Row]:
        """Run a search: ``query(table)`` gives its SQL over `table`, which is
        `searchable` (the live rows and the deleted ones a search still lists) while there
        are such rows, else `instances` (the view is slower: its indexes go unused)."""
        with self._lock:
            self._db.execute("DELETE FROM ghosts WHERE until <= ?", (time.monotonic(),))
            lagging = self._db.execute("SELECT 1 FROM ghosts LIMIT 1").fetchone()
            sql, params = query("searchable" if lagging else "instances")
            return self._db.execute(sql, params).fetchall()

    def add(
        self, info: InstanceInfo, temp_path: Path, sha256: str, size: int, storage_class: str
    ) -> AddOutcome:
        """Move temp_path into the store unless the instance is a duplicate or conflict.

        The caller still owns temp_path when the outcome is not "stored" (a
        "duplicate" whose file had gone missing takes it to put the file back).
        """
        with self._lock:
            if (
                self._blocked[(info.study_uid, None)]
                or self._blocked[(info.study_uid, info.series_uid)]
            ):
                return "deleting"
            row = self._db.execute(
                "SELECT sha256 FROM instances WHERE sop_uid = ?", (info.sop_uid,)
            ).fetchone()
            rel = Path(sha256[:2]) / f"{sha256}.dcm"
            target = self.objects_dir / rel
            if row is not None:
                if row["sha256"] != sha256:
                    return "conflict"
                if not target.exists():  # an indexed file must be there to be retrieved
                    target.parent.mkdir(exist_ok=True)
                    os.replace(temp_path, target)
                return "duplicate"
            target.parent.mkdir(exist_ok=True)
            os.replace(temp_path, target)
            values = asdict(info)
            values.update(
                storage_class=storage_class,
                size=size,
                sha256=sha256,
                path=str(rel),
                created=datetime.now(timezone.utc).isoformat(),
            )
            columns = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            try:
                self._db.execute(
                    f"INSERT INTO instances ({columns}) VALUES ({marks})", list(values.values())
                )
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            # Stored again while its deleted copy still shows: a search lists it once.
            self._db.execute("DELETE FROM ghosts WHERE sop_uid = ?", (info.sop_uid,))
            return "stored"

    def file_path(self, row: sqlite3.Row) -> Path:
        return self.objects_dir / row["path"]

    def instances(
        self, study: str, series: str | None = None, sop: str | None = None
    ) -> list[sqlite3.Row]:
        """Rows of a study/series/instance, ordered by series then instance insertion."""
        sql = (
            "SELECT i.*, (SELECT MIN(id) FROM instances s WHERE s.series_uid = i.series_uid)"
            " AS series_order FROM instances i WHERE i.study_uid = ?"
        )
        params: list[Any] = [study]
        if series is not None:
            sql += " AND i.series_uid = ?"
            params.append(series)
        if sop is not None:
            sql += " AND i.sop_uid = ?"
            params.append(sop)
        return self.query(sql + " ORDER BY series_order, i.id", params)

    def block(self, study: str, series: str | None) -> None:
        with self._lock:
            self._blocked[(study, series)] += 1

    def delete(
        self,
        study: str,
        series: str | None = None,
        sop: str | None = None,
        *,
        unblock: bool,
        linger: float = 0.0,
    ) -> int:
        """Remove rows and files; with unblock, also end one block on (study, series).
        With `linger` seconds, searches still list the removed rows that long.

        The files go under the lock too: files are named by their bytes, so a STOW of
        the same bytes right after the rows went would be stored at the very path a
        late unlink removes.
        """
        with self._lock:
            rows = self.instances(study, series, sop)
            if linger > 0 and rows:
                until = time.monotonic() + linger
                marks = ", ".join("?" for _ in rows)
                self._db.execute(
                    f"INSERT INTO ghosts SELECT *, ? FROM instances WHERE id IN ({marks})",
                    [until, *(row["id"] for row in rows)],
                )
            self._db.executemany(
                "DELETE FROM instances WHERE id = ?", [(row["id"],) for row in rows]
            )
            for row in rows:
                self.file_path(row).unlink(missing_ok=True)
            if unblock:
                key = (study, series)
                self._blocked[key] -= 1
                if self._blocked[key] <= 0:
                    del self._blocked[key]
        return len(rows)


def dcm_match(value: str | None, pattern: str, mode: str) -> int:
    """SQLite function: how a search value matches a stored one.

    mode "wild": DICOM wildcards (* and ?), case-sensitive; "name": the same for person
    names, whatever the case; "fuzzy": Google's fuzzy person-name matching, where both
    sides are split into words and normalised, and it is a match when any word of the
    pattern starts any word of the value ("jo" and "Doe" find John^Doe, "ohn" does not).
    """
    if value is None:
        return 0
    if mode == "fuzzy":
        words = _name_words(value)
        return 1 if any(w.startswith(p) for p in _name_words(pattern) for w in words) else 0
    flags = re.IGNORECASE if mode == "name" else 0
    return 1 if _wildcard_regex(pattern, flags).fullmatch(value) else 0


def _name_words(text: str) -> list[str]:
    """Words of a name, lower case and without accents (José^Doe -> jose, doe)."""
    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    return [word for word in re.split(r"[\W_]+", plain.casefold()) if word]


@lru_cache(maxsize=256)
def _wildcard_regex(pattern: str, flags: int) -> re.Pattern[str]:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), flags | re.DOTALL)
