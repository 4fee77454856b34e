"""The per-frame steps after the model: each takes a frame's instances and returns them, annotated.

A run passes every inferred frame through its steps in order (in one thread, frames in order):
a fresh start after a long outage, tracking, trails, counting. A step may also leave what it
found about the frame as a whole in the frame's :class:`FrameNotes` (trails, counts), which the
overlay and the JSONL record read. A new per-frame feature is a new step::

    class DropSmall:
        stage = "postprocess"

        def __call__(self, found, frame, notes):
            return found.select(found.areas >= 100)

    streamseg.Segmenter(config).run("clip.mp4", steps=[DropSmall()])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .count import LineZoneCounter, parse_lines, parse_zones
from .instances import Frame, FrameNotes, Instances
from .track import Tracker, TrackerConfig


class Step(Protocol):
    stage: str  # the entry of the summary's stage_seconds its time counts under

    def __call__(self, found: Instances, frame: Frame, notes: FrameNotes) -> Instances: ...


@dataclass
class FreshStartAfterOutage:
    """After an outage of ``reset_gap`` seconds or more the scene has changed: no id carries over."""

    tracker: Tracker
    reset_gap: float
    stage: str = "track"

    def __call__(self, found: Instances, frame: Frame, notes: FrameNotes) -> Instances:
        if any((event.get("gap_seconds") or 0) >= self.reset_gap for event in notes.source_events):
            self.tracker.reset()
        return found


@dataclass
class Tracking:
    """Track ids across frames (see :mod:`streamseg.track`)."""

    tracker: Tracker
    stage: str = "track"

    def __call__(self, found: Instances, frame: Frame, notes: FrameNotes) -> Instances:
        return self.tracker.update(found)


@dataclass
class Trails:
    """Each visible track's path over its last ``length`` inferred frames, for the overlay."""

    tracker: Tracker
    length: int
    stage: str = "track"
    paths: dict[int, deque] = field(default_factory=dict)  # track id -> its last ``length`` centroids

    def __call__(self, found: Instances, frame: Frame, notes: FrameNotes) -> Instances:
        visible = {}
        for track_id, centroid in zip(found.track_ids.tolist(), found.centroids):
            if track_id >= 0 and not np.isnan(centroid[0]):
                path = self.paths.setdefault(track_id, deque(maxlen=self.length))
                path.append(tuple(centroid))
                visible[track_id] = list(path)
        alive = {track.id for track in self.tracker.tracks}  # the paths of dropped tracks are forgotten
        self.paths = {k: v for k, v in self.paths.items() if k in alive}
        notes.trails = visible
        return found


@dataclass
class Counting:
    """Line crossings and zone occupancy of tracked objects (see :mod:`streamseg.count`)."""

    counter: LineZoneCounter
    tracker: Tracker
    stage: str = "count"

    def __call__(self, found: Instances, frame: Frame, notes: FrameNotes) -> Instances:
        notes.counts, notes.events = self.counter.update(found)
        self.counter.forget({track.id for track in self.tracker.tracks})
        notes.tally = self.counter.state()
        return found


@dataclass
class StandardSteps:
    """The steps a run's settings ask for, and the tracker and counter the summary reads."""

    steps: list[Step]
    tracker: Tracker | None
    counter: LineZoneCounter | None


def standard_steps(track: bool, tracker_config: TrackerConfig, lines: Sequence[str], zones: Sequence[str],
                   zone_overlap: float, trail: int, draw: bool, reset_gap: float,
                   class_names: Sequence[str]) -> StandardSteps:
    """Tracking (with its fresh start after outages), trails when they are drawn, counting when asked for."""
    if not track:
        return StandardSteps([], None, None)
    tracker = Tracker(tracker_config)  # one per run: ids start at 1 for every source
    steps: list[Step] = [FreshStartAfterOutage(tracker, reset_gap), Tracking(tracker)]
    if trail and draw:
        steps.append(Trails(tracker, trail))
    counter = LineZoneCounter(parse_lines(lines), parse_zones(zones), class_names, min_overlap=zone_overlap)
    if counter:
        steps.append(Counting(counter, tracker))
    return StandardSteps(steps, tracker, counter if counter else None)
