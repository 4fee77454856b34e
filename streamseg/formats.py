"""What a run writes, in one place: the JSONL line of each frame (:class:`FrameRecord`) and ``summary.json``
(:class:`RunSummary`), and the typed records they are made from (instances, count events and totals,
the run summary). ``docs/format.md`` maps them one to one: each ``to_dict`` below is one table there.
Readers of the JSONL ignore keys they do not know.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pycocotools import mask as mask_utils

from .errors import InputError
from .instances import Frame, FrameNotes, Instances

if TYPE_CHECKING:  # sources.live stamps outages with iso_utc: a real import would go round in a circle
    from .sources.base import LiveReport, SourceInfo


def encode_masks(instances: Instances) -> list[dict]:
    """COCO compressed RLEs of the instances' masks, counts as str (JSON-ready), made from their crops."""
    return [encode_crop(crop, box, instances.height, instances.width)
            for crop, box in zip(instances.crops, instances.crop_boxes.tolist())]


def encode_crop(crop: np.ndarray, box: Sequence[int], height: int, width: int) -> dict:
    """The COCO RLE of a full (height, width) frame that is ``crop`` inside ``box`` and empty elsewhere.

    Byte for byte what ``pycocotools.mask.encode`` gives for the full-frame mask, without making it:
    the frame's column-major runs change value only at the crop's edges of 0s and 1s, column by column.
    """
    x0, y0, x1, y1 = box
    rows = y1 - y0
    padded = np.zeros((x1 - x0, rows + 2), np.int8)  # each crop column between two empty pixels
    padded[:, 1:-1] = crop.T
    column, row = np.nonzero(np.diff(padded, axis=1))  # in column-major order of the frame
    changes = (x0 + column) * height + y0 + row
    if rows == height:
        # A run that reaches the foot of one column goes on at the head of the next: not a change.
        joined = np.flatnonzero(changes[1:] == changes[:-1])
        changes = np.delete(changes, np.r_[joined, joined + 1])
    counts = np.diff(np.r_[0, changes, height * width])
    if len(counts) > 1 and counts[-1] == 0:  # the mask runs to the last pixel: no empty run after it
        counts = counts[:-1]
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def decode_masks(rles: Sequence[dict], height: int, width: int) -> np.ndarray:
    """(N, H, W) boolean masks from RLE dicts as written by :func:`encode_masks`."""
    if not rles:
        return np.zeros((0, height, width), bool)
    coco = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return mask_utils.decode(coco).transpose(2, 0, 1).astype(bool)


@dataclass
class InstanceRecord:
    """One instance of a frame's JSONL line (docs/format.md, "instances")."""

    id: int | None  # the track id; null without tracking or before a track is confirmed
    label: str
    class_id: int
    score: float
    box: list[float]  # x1, y1, x2, y2 in frame pixels
    area: int  # mask pixels
    mask: dict  # COCO compressed RLE of the full frame

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class FrameRecord:
    """One inferred frame's JSONL line (docs/format.md, "frames.jsonl"): its instances, then what the
    source (a live source's clock and drops, outages) and the steps (counts, count events) noted."""

    frame: int
    time: float
    width: int
    height: int
    instances: list[InstanceRecord]
    wall_time: str | None = None
    dropped_before: int | None = None
    source_events: list[dict] = field(default_factory=list)
    counts: FrameCounts | None = None
    events: list[CountEvent] = field(default_factory=list)

    @classmethod
    def of(cls, inst: Instances, class_names: Sequence[str], rles: list[dict] | None = None) -> FrameRecord:
        """The record of one frame's instances (``rles``: their masks, if already encoded)."""
        rles = encode_masks(inst) if rles is None else rles
        areas, ids = inst.areas, inst.track_ids
        objects = []
        for i in range(len(inst)):
            class_id = int(inst.class_ids[i])
            objects.append(InstanceRecord(
                None if ids is None or ids[i] < 0 else int(ids[i]),
                class_names[class_id] if class_id < len(class_names) else str(class_id), class_id,
                round(float(inst.scores[i]), 4), [round(float(v), 2) for v in inst.boxes[i]], int(areas[i]), rles[i]))
        return cls(int(inst.frame_index), round(float(inst.time), 6), inst.width, inst.height, objects)

    def to_dict(self) -> dict:
        record = {"frame": self.frame, "time": self.time, "width": self.width, "height": self.height,
                  "instances": [instance.to_dict() for instance in self.instances]}
        if self.wall_time is not None:
            record["wall_time"], record["dropped_before"] = self.wall_time, self.dropped_before
        if self.source_events:
            record["source_events"] = self.source_events
        if self.counts is not None:
            record["counts"], record["events"] = self.counts.to_dict(), [event.to_dict() for event in self.events]
        return record


def instances_to_record(inst: Instances, class_names: Sequence[str], rles: list[dict] | None = None) -> dict:
    """The JSONL record of one frame's instances, as a dict (``rles``: their masks, if already encoded)."""
    return FrameRecord.of(inst, class_names, rles).to_dict()


def frame_record(found: Instances, class_names: Sequence[str], masks: list[dict], frame: Frame,
                 notes: FrameNotes) -> FrameRecord:
    """The whole JSONL line of an inferred frame: its instances, then what the source and steps noted."""
    record = FrameRecord.of(found, class_names, masks)
    if frame.wall_time is not None:  # a live source: real time, and what was dropped to stay current
        record.wall_time, record.dropped_before = iso_utc(frame.wall_time), notes.dropped_before
    record.source_events = list(notes.source_events)
    if notes.counts is not None:
        record.counts, record.events = notes.counts, list(notes.events)
    return record


def iso_utc(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2026-11-27T10:15:02.123Z``."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_to_instances(record: dict) -> Instances:
    """Instances (with decoded full-frame masks) from a JSONL record."""
    objects = record["instances"]
    height, width = int(record["height"]), int(record["width"])
    ids = [o.get("id") for o in objects]
    return Instances.from_masks(
        boxes=np.array([o["box"] for o in objects], np.float32).reshape(-1, 4),
        scores=np.array([o["score"] for o in objects], np.float32),
        class_ids=np.array([o["class_id"] for o in objects], np.int64),
        masks=decode_masks([o["mask"] for o in objects], height, width),
        frame_index=int(record["frame"]),
        time=float(record["time"]),
        track_ids=None if all(i is None for i in ids) else np.array([-1 if i is None else i for i in ids], np.int64),
    )


def dumps(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


def read_records(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL file in order.

    A last line cut short by a crash (no newline, or not valid JSON) is skipped: everything before
    it was flushed whole. A bad line anywhere else is an :class:`InputError`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSONL file ({exc.__class__.__name__})") from None
    lines = text.split("\n")
    last = len(lines) - 1
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == last:  # the final, unterminated line of an interrupted run
                return
            raise InputError(f"{path}:{number + 1}: not valid JSON") from None
        if not isinstance(record, dict) or "frame" not in record:
            raise InputError(f"{path}:{number + 1}: not a streamseg frame record")
        yield record


# Counting (see streamseg.count): the JSONL's ``counts`` and ``events``, the summary's ``counts``.


@dataclass(frozen=True)
class CountEvent:
    """A crossing of a line, or an entry into or exit from a zone, by one tracked object."""

    type: str  # "line" or "zone"
    name: str  # of the line or zone
    direction: str  # "in" or "out" for a line, "enter" or "exit" for a zone
    id: int  # the track's
    label: str

    def to_dict(self) -> dict:
        return {"type": self.type, "name": self.name, "direction": self.direction, "id": self.id, "label": self.label}


@dataclass
class LineTotals:
    """Distinct tracks that crossed a line each way so far, per class."""

    crossed_in: dict[str, int]
    crossed_out: dict[str, int]

    def to_dict(self) -> dict:
        return {"in": self.crossed_in, "out": self.crossed_out}


@dataclass
class ZoneTotals:
    """Entries and exits of a zone so far, and the most instances inside it in any frame, per class."""

    entered: dict[str, int]
    exited: dict[str, int]
    max_occupancy: dict[str, int]

    def to_dict(self) -> dict:
        return {"enter": self.entered, "exit": self.exited, "max_occupancy": self.max_occupancy}


@dataclass
class FrameCounts:
    """One frame's ``counts``: line totals so far and, per zone, the instances inside it now, per class."""

    lines: dict[str, LineTotals] | None = None  # None without lines
    zones: dict[str, dict[str, int]] | None = None  # None without zones

    def to_dict(self) -> dict:
        result = {}
        if self.lines is not None:
            result["lines"] = {name: totals.to_dict() for name, totals in self.lines.items()}
        if self.zones is not None:
            result["zones"] = self.zones
        return result


@dataclass
class CountTotals:
    """The run's totals per line and per zone (None where there are none)."""

    lines: dict[str, LineTotals] | None = None
    zones: dict[str, ZoneTotals] | None = None

    def to_dict(self) -> dict:
        result = {}
        if self.lines is not None:
            result["lines"] = {name: totals.to_dict() for name, totals in self.lines.items()}
        if self.zones is not None:
            result["zones"] = {name: totals.to_dict() for name, totals in self.zones.items()}
        return result


# The run summary: summary.json, one dataclass per table row of docs/format.md that has parts.


@dataclass
class SourceSummary:
    """``source``: what was known of it, the packets skipped as damaged, and the source's own report."""

    info: SourceInfo
    decode_errors: int
    report: LiveReport | None  # FrameSource.report(): a live source's drops and outages; none for a file

    def to_dict(self) -> dict:
        return {**self.info.to_dict(), "decode_errors": self.decode_errors,
                **(self.report.to_dict() if self.report is not None else {})}


@dataclass
class RunSettings:
    """``config``: the settings that shaped the run."""

    stride: int
    max_frames: int | None
    start: float
    mode: str
    batch: int
    infer_workers: int
    track: bool
    duration: float | None
    tracker: dict | None  # the tracker's thresholds, None with tracking off

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunFigures:
    """``run``: frames, time, where the time went, latency and memory."""

    frames_decoded: int
    frames_inferred: int
    wall_seconds: float
    fps: float | None
    stage_seconds: dict[str, float]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    peak_rss_mb: float

    def to_dict(self) -> dict:
        return {"frames_decoded": self.frames_decoded, "frames_inferred": self.frames_inferred,
                "wall_seconds": self.wall_seconds, "fps": self.fps, "stage_seconds": self.stage_seconds,
                "latency_ms": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms},
                "peak_rss_mb": self.peak_rss_mb}


@dataclass
class SummaryCounts:
    """``counts``: distinct tracks per class, and the line and zone totals."""

    unique: dict[str, int]
    totals: CountTotals

    def to_dict(self) -> dict:
        return {"unique": self.unique, **self.totals.to_dict()}


@dataclass
class RunSummary:
    """What ``summary.json`` holds (``to_dict()``), as a run leaves it on ``Run.summary``."""

    streamseg: str  # the version that wrote it
    complete: bool
    reason: str | None  # why the run was cut short
    stopped_by: str | None  # who ended it on purpose before its source did
    source: SourceSummary
    model: dict  # the model's and predictor's own description
    config: RunSettings
    run: RunFigures
    detections: dict[str, int]
    counts: SummaryCounts | None = None  # None with tracking off

    def to_dict(self) -> dict:
        result = {"streamseg": self.streamseg, "complete": self.complete, "reason": self.reason,
                  "stopped_by": self.stopped_by, "source": self.source.to_dict(), "model": self.model,
                  "config": self.config.to_dict(), "run": self.run.to_dict(), "detections": self.detections}
        if self.counts is not None:
            result["counts"] = self.counts.to_dict()
        return result
