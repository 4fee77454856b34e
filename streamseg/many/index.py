"""``index.json``: every source of a many-source run, its folder, status, frames and counts.

Rewritten atomically each time a source starts or ends, so a reader (or a crash) always sees a whole
file. An ``index.json`` that streamseg did not write is never replaced: the run is refused instead.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..errors import OutputError
from ..sinks import write_json_atomic
from .jobs import PENDING, Job, SourceResult

INDEX_FILE = "index.json"
KIND = "streamseg many-source index"


@dataclass
class Entry:
    source: str
    out: str  # relative to the index's folder
    status: str = PENDING
    frames: int | None = None
    counts: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "out": self.out, "status": self.status, "frames": self.frames,
                "counts": self.counts, "error": self.error}


class Index:
    """The index of ``root`` for ``jobs``; :meth:`update` records a source's new state and rewrites the file."""

    def __init__(self, root: Path, jobs: list[Job], backend: str):
        check_index_is_ours(root / INDEX_FILE)
        self.path = root / INDEX_FILE
        self.backend = backend
        self.started = _now()
        self.entries = {job.name: Entry(job.shown, job.name) for job in jobs}
        self._lock = threading.Lock()
        self.write()

    def update(self, name: str, status: str, result: SourceResult | None = None) -> None:
        with self._lock:
            entry = self.entries[name]
            entry.status = status
            if result is not None:
                entry.frames, entry.counts, entry.error = result.frames, result.counts, result.error
            self.write()

    def to_dict(self) -> dict:
        entries = [entry.to_dict() for entry in self.entries.values()]
        statuses = [entry["status"] for entry in entries]
        return {"kind": KIND, "streamseg": __version__, "backend": self.backend, "started": self.started,
                "updated": _now(), "totals": {s: statuses.count(s) for s in sorted(set(statuses))},
                "sources": entries}

    def write(self) -> None:
        write_json_atomic(self.path, self.to_dict())


def check_index_is_ours(path: Path) -> None:
    """Refuse a folder whose ``index.json`` is someone else's file."""
    if not path.exists() and not path.is_symlink():
        return
    try:
        ours = path.is_file() and not path.is_symlink() and json.loads(path.read_text("utf-8")).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputError(f"{path}: exists and is not a streamseg index; choose an empty or new --out")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
