"""Counting tracked objects: directional line crossings and zone occupancy.

A line counts a track when the centroid of its *mask* (not its box: a box's centre drifts off a
rotating or partly hidden object) moves to the other side and stays there for ``settle_frames``
inferred frames, so jitter on the line counts nothing; each track counts at most once per direction.
A zone holds an instance when at least ``min_overlap`` of its mask lies inside the polygon.

Direction follows the sign of (x2-x1)(y-y1) - (y2-y1)(x-x1): negative to positive is ``in``,
positive to negative ``out``. In image coordinates (y down) that is a crossing from the left of
the arrow p1→p2 to its right.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import InputError
from .formats import CountEvent, CountTotals, FrameCounts, LineTotals, ZoneTotals
from .geometry import SUBPIXEL_BITS, overlap, subpixel
from .instances import Instances


@dataclass(frozen=True)
class Line:
    name: str
    start: tuple[float, float]
    end: tuple[float, float]

    def side(self, x: float, y: float) -> int:
        """+1 or -1 for a point beside the segment (within its extent along the line), 0 otherwise."""
        (x1, y1), (x2, y2) = self.start, self.end
        dx, dy = x2 - x1, y2 - y1
        along = ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy)
        if not 0.0 <= along <= 1.0:
            return 0  # beyond an end of the segment: passing around it is not crossing it
        cross = dx * (y - y1) - dy * (x - x1)
        return int(np.sign(cross))


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]

    def mask(self, height: int, width: int) -> np.ndarray:
        canvas = np.zeros((height, width), np.uint8)
        cv2.fillPoly(canvas, [subpixel(self.points)], 1, cv2.LINE_8, SUBPIXEL_BITS)
        return canvas.astype(bool)


def _split_name(spec: str, kind: str, index: int) -> tuple[str, str]:
    coords, _, name = spec.partition(":")
    return coords, name.strip() or f"{kind}{index}"


def _numbers(coords: str, spec: str, kind: str) -> list[float]:
    try:
        return [float(v) for v in coords.split(",")]
    except ValueError:
        raise InputError(f"{kind} '{spec}': coordinates must be numbers like 10,200,630,200[:name]") from None


def parse_lines(specs: Sequence[str]) -> list[Line]:
    """``x1,y1,x2,y2[:name]`` each; unnamed lines are line1, line2, ..."""
    lines = []
    for i, spec in enumerate(specs, 1):
        coords, name = _split_name(spec, "line", i)
        values = _numbers(coords, spec, "line")
        if len(values) != 4:
            raise InputError(f"line '{spec}': give exactly x1,y1,x2,y2")
        if values[:2] == values[2:]:
            raise InputError(f"line '{spec}': its two ends are the same point")
        lines.append(Line(name, (values[0], values[1]), (values[2], values[3])))
    _unique_names(lines, "line")
    return lines


def parse_zones(specs: Sequence[str]) -> list[Zone]:
    """``x1,y1,x2,y2,x3,y3,...[:name]`` each (a polygon of at least three points)."""
    zones = []
    for i, spec in enumerate(specs, 1):
        coords, name = _split_name(spec, "zone", i)
        values = _numbers(coords, spec, "zone")
        if len(values) < 6 or len(values) % 2:
            raise InputError(f"zone '{spec}': give at least three x,y points")
        zones.append(Zone(name, tuple(zip(values[::2], values[1::2]))))
    _unique_names(zones, "zone")
    return zones


def _unique_names(items: Sequence[Line | Zone], kind: str) -> None:
    names = [item.name for item in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{kind} names must differ; repeated: {', '.join(repeated)}")


@dataclass
class Tally:
    """What the overlay shows of the counters: per line (in, out) so far, per zone how many are inside now."""

    lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    zones: dict[str, int] = field(default_factory=dict)


@dataclass
class _LineState:
    settled: dict[int, int] = field(default_factory=dict)  # track id -> side it has stayed on
    pending: dict[int, tuple[int, int]] = field(default_factory=dict)  # track id -> (new side, frames seen)
    counted: set[tuple[int, str]] = field(default_factory=set)  # (track id, direction) already counted
    totals: dict[str, Counter] = field(default_factory=lambda: {"in": Counter(), "out": Counter()})


@dataclass
class _ZoneState:
    inside: dict[int, bool] = field(default_factory=dict)  # track id -> last seen inside
    totals: dict[str, Counter] = field(default_factory=lambda: {"enter": Counter(), "exit": Counter()})
    most: Counter = field(default_factory=Counter)  # per class, the highest occupancy of any frame
    current: int = 0  # instances inside in the latest frame, all classes
    mask: np.ndarray | None = None


class LineZoneCounter:
    """Counts the tracked instances of each inferred frame against ``lines`` and ``zones``.

    ``update`` returns the frame's running counts and the events it caused; ``totals`` is what the
    run's summary keeps. Untracked instances (no id yet) fill zone occupancy but cause no events.
    """

    def __init__(self, lines: Sequence[Line], zones: Sequence[Zone], class_names: Sequence[str],
                 settle_frames: int = 3, min_overlap: float = 0.5):
        if settle_frames < 1 or not 0.0 < min_overlap <= 1.0:
            raise InputError("settle_frames must be at least 1 and min_overlap within (0, 1]")
        self.lines, self.zones = list(lines), list(zones)
        self.class_names = list(class_names)
        self.settle_frames, self.min_overlap = settle_frames, min_overlap
        self._lines = {line.name: _LineState() for line in self.lines}
        self._zones = {zone.name: _ZoneState() for zone in self.zones}

    def __bool__(self) -> bool:
        return bool(self.lines or self.zones)

    def update(self, instances: Instances) -> tuple[FrameCounts, list[CountEvent]]:
        """(counts so far and this frame's zone occupancy, this frame's events)."""
        ids = instances.track_ids if instances.track_ids is not None else np.full(len(instances), -1)
        labels = [self.class_names[c] for c in instances.class_ids]
        events: list[CountEvent] = []
        if self.lines:
            centroids = instances.centroids
            for line in self.lines:
                events += self._cross(line, centroids, ids, labels)
        occupancy = {}
        for zone in self.zones:
            occupancy[zone.name], zone_events = self._occupy(zone, instances, ids, labels)
            events += zone_events
        counts = FrameCounts(self._line_totals() if self.lines else None, occupancy if self.zones else None)
        return counts, events

    def forget(self, alive: set[int]) -> None:
        """Drop what is kept per track for tracks not in ``alive``: ids are never reused, so a track the
        tracker has given up on cannot come back, and a run of days must not keep every id it saw."""
        for state in self._lines.values():
            for table in (state.settled, state.pending):
                for track_id in table.keys() - alive:
                    del table[track_id]
            state.counted = {entry for entry in state.counted if entry[0] in alive}
        for state in self._zones.values():
            for track_id in state.inside.keys() - alive:
                del state.inside[track_id]

    def _cross(self, line: Line, centroids: np.ndarray, ids: np.ndarray, labels: list[str]) -> list[CountEvent]:
        state, events = self._lines[line.name], []
        for (x, y), track_id, label in zip(centroids, ids.tolist(), labels):
            if track_id < 0 or np.isnan(x):
                continue
            side = line.side(x, y)
            if side == 0:
                continue
            settled = state.settled.get(track_id)
            if settled is None:
                state.settled[track_id] = side  # first sighting: where it starts, nothing crossed
                continue
            if side == settled:
                state.pending.pop(track_id, None)  # jittered back: the crossing did not happen
                continue
            seen = state.pending.get(track_id, (side, 0))[1] + 1
            if seen < self.settle_frames:
                state.pending[track_id] = (side, seen)
                continue
            state.pending.pop(track_id, None)
            state.settled[track_id] = side
            direction = "in" if side > 0 else "out"
            if (track_id, direction) not in state.counted:
                state.counted.add((track_id, direction))
                state.totals[direction][label] += 1
                events.append(CountEvent("line", line.name, direction, track_id, label))
        return events

    def _occupy(self, zone: Zone, instances: Instances, ids: np.ndarray,
                labels: list[str]) -> tuple[dict[str, int], list[CountEvent]]:
        state, events = self._zones[zone.name], []
        if state.mask is None or state.mask.shape != (instances.height, instances.width):
            state.mask = zone.mask(instances.height, instances.width)
        areas = instances.areas
        frame = (0, 0, instances.width, instances.height)
        inside_area = [overlap(crop, box, state.mask, frame) for crop, box in zip(instances.crops, instances.crop_boxes.tolist())]
        occupancy: Counter = Counter()
        for track_id, label, area, within in zip(ids.tolist(), labels, areas, inside_area):
            inside = bool(area > 0 and within >= self.min_overlap * area)
            occupancy[label] += inside
            if track_id < 0:
                continue
            was_inside = state.inside.get(track_id, False)
            if inside != was_inside:
                direction = "enter" if inside else "exit"
                state.totals[direction][label] += 1
                events.append(CountEvent("zone", zone.name, direction, track_id, label))
            state.inside[track_id] = inside
        occupancy = +occupancy  # classes with nobody inside are left out
        state.current = sum(occupancy.values())
        for label, n in occupancy.items():
            state.most[label] = max(state.most[label], n)
        return dict(sorted(occupancy.items())), events

    def _line_totals(self) -> dict[str, LineTotals]:
        return {name: LineTotals(_sorted(state.totals["in"]), _sorted(state.totals["out"]))
                for name, state in self._lines.items()}

    def totals(self) -> CountTotals:
        """For summary.json: per line ``in``/``out`` per class; per zone ``enter``/``exit`` and ``max_occupancy``."""
        zones = {name: ZoneTotals(_sorted(state.totals["enter"]), _sorted(state.totals["exit"]), _sorted(state.most))
                 for name, state in self._zones.items()}
        return CountTotals(self._line_totals() if self.lines else None, zones if self.zones else None)

    def state(self) -> Tally:
        """What the overlay shows: lines' in/out totals and zones' current occupancy (all classes)."""
        return Tally({name: (sum(s.totals["in"].values()), sum(s.totals["out"].values())) for name, s in self._lines.items()},
                     {name: s.current for name, s in self._zones.items()})


def _sorted(counts: Counter) -> dict[str, int]:
    return dict(sorted(counts.items()))

