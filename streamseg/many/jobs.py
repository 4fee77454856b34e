"""The units of a many-source run: a job (one source and its folder), its progress and its result.

:func:`run_job` runs one job through a :class:`~streamseg.pipeline.Segmenter` with the public
pipeline API, the same way in the local backend's threads and in a Ray actor, and turns whatever
happens into a :class:`SourceResult`: a bad source is a failed result with its one-line reason,
never an exception that would stop the other sources.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StreamsegError
from ..outputs import SUMMARY_FILE
from ..sources import is_live, redact

COMPLETE, FAILED, SKIPPED = "complete", "failed", "skipped"
PENDING, RUNNING = "pending", "running"
PROGRESS_SECONDS = 0.1  # at most this often a running source reports its frames


@dataclass(frozen=True)
class Job:
    """One source of the run: its spec as given, its folder name, and its output folder."""

    spec: str
    name: str
    out: Path

    @property
    def live(self) -> bool:
        return is_live(self.spec)

    @property
    def shown(self) -> str:
        """The spec as it may be shown and stored: without a password."""
        return redact(self.spec)


@dataclass
class SourceProgress:
    """Where one source stands: frames done so far, out of ``total`` when known."""

    name: str
    frames: int
    total: int | None = None
    worker: int | None = None  # the process running it (a Ray actor's pid), when not this one
    attempt: int = 1


@dataclass
class SourceResult:
    """How one source ended: ``complete``, ``failed`` (with ``error``) or ``skipped`` (``--resume``)."""

    source: str  # the spec, password redacted
    name: str
    out: Path
    status: str
    summary: dict | None = None
    error: str | None = None
    attempts: int = 1

    @property
    def frames(self) -> int | None:
        return self.summary["run"]["frames_decoded"] if self.summary else None

    @property
    def counts(self) -> dict | None:
        return self.summary.get("counts") if self.summary else None


@dataclass
class Cancel:
    """Set to end every running source at its next frame (Ctrl-C): each ends incomplete, summary written."""

    event: threading.Event = field(default_factory=threading.Event)

    def set(self) -> None:
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


def completed_summary(out: Path) -> dict | None:
    """The summary of a complete run in ``out``, or None (no run, an incomplete one, an unreadable file)."""
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("complete") is True else None


def skipped(job: Job, summary: dict) -> SourceResult:
    return SourceResult(job.shown, job.name, job.out, SKIPPED, summary)


def run_job(segmenter, job: Job, overwrite: bool, report: Callable[[SourceProgress], None],
            cancel: Cancel | None = None, attempt: int = 1) -> SourceResult:
    """Segment ``job``'s source into its folder; ``report`` hears of its frames (at most every 0.1 s)."""
    worker = os.getpid()
    frames = 0
    try:
        with segmenter.run(job.spec, job.out, overwrite) as run:
            total = run.total_frames
            report(SourceProgress(job.name, 0, total, worker, attempt))
            next_report = time.monotonic() + PROGRESS_SECONDS
            for _ in run:
                frames += 1
                if cancel:
                    break  # leaving the run early ends it incomplete, "stopped by the caller"
                if time.monotonic() >= next_report:
                    report(SourceProgress(job.name, frames, total, worker, attempt))
                    next_report = time.monotonic() + PROGRESS_SECONDS
        report(SourceProgress(job.name, frames, total, worker, attempt))
    except StreamsegError as exc:
        return SourceResult(job.shown, job.name, job.out, FAILED, error=redact_text(str(exc), job), attempts=attempt)
    except Exception as exc:  # noqa: BLE001 - one source's surprise must not end the others
        reason = f"unexpected {exc.__class__.__name__}: {exc}"
        return SourceResult(job.shown, job.name, job.out, FAILED, error=redact_text(reason, job), attempts=attempt)
    summary = run.summary.to_dict()  # as summary.json has it, which is what --resume reads back
    if cancel and not summary["complete"]:
        summary = {**summary, "reason": "interrupted"}
    status = COMPLETE if summary["complete"] else FAILED
    error = None if status == COMPLETE else redact_text(summary.get("reason") or "incomplete", job)
    return SourceResult(job.shown, job.name, job.out, status, summary, error, attempt)


def redact_text(text: str, job: Job) -> str:
    """``text`` (an error line) with the spec's password, if any, taken out; one line."""
    if job.shown != job.spec:
        text = text.replace(job.spec, job.shown)
    return " ".join(text.split())
