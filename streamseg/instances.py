"""The one data currency: what a frame is and what was found in it.

``Frame`` comes out of a source; ``Instances`` comes out of the model and is then annotated by later
stages (the tracker fills ``track_ids``). Arrays are numpy, on the CPU, in frame pixels; masks are
kept as crops of their boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .geometry import mask_extent

if TYPE_CHECKING:  # the steps' records, named here only for the notes' types: those modules build on this one
    from .count import Tally
    from .formats import CountEvent, FrameCounts


@dataclass
class Frame:
    """A decoded picture with its place in the stream.

    ``index`` is the 0-based decode index; ``time`` the presentation time in seconds. ``pts`` and
    ``time_base`` are the container's own clock, kept so the overlay can reuse the input timestamps
    exactly (variable frame rate stays variable).
    """

    index: int
    time: float
    image: np.ndarray  # (H, W, 3) uint8 RGB
    pts: int | None = None
    time_base: Fraction | None = None
    # Live sources only: when the frame arrived (latency is measured from here, not from when the
    # pipeline took it), what was dropped before it and what happened to the connection meanwhile.
    captured_at: float | None = None  # time.perf_counter()
    wall_time: float | None = None  # seconds since the epoch
    dropped_before: int = 0
    events: list[dict] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Instances:
    """Detected objects of one frame.

    ``class_ids`` index ``class_names`` of the model (0 is background, as in torchvision).
    ``track_ids`` is None until a tracker has run; afterwards -1 marks an unmatched detection.

    Masks live as box crops: instance ``i``'s mask is ``crops[i]``, the pixels of frame rows
    ``crop_boxes[i, 1]:crop_boxes[i, 3]`` and columns ``crop_boxes[i, 0]:crop_boxes[i, 2]``; every
    pixel outside its crop box is outside the mask. A 1080p frame with ten objects holds their boxes'
    pixels, not ten full frames. :attr:`masks` makes the full-frame (N, H, W) array when asked for.
    """

    boxes: np.ndarray  # (N, 4) float32, xyxy pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    crops: list[np.ndarray]  # N bool arrays, crop i of shape (y1 - y0, x1 - x0) of crop_boxes[i]
    crop_boxes: np.ndarray  # (N, 4) int64, x0, y0, x1, y1 in frame pixels, exclusive ends, inside the frame
    height: int
    width: int
    frame_index: int = 0
    time: float = 0.0
    track_ids: np.ndarray | None = None  # (N,) int64
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.class_ids.shape != (n,) or self.crop_boxes.shape != (n, 4) or len(self.crops) != n:
            raise ValueError(
                f"inconsistent instance arrays: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}, crop_boxes {self.crop_boxes.shape}, {len(self.crops)} crops"
            )
        for crop, (x0, y0, x1, y1) in zip(self.crops, self.crop_boxes.tolist()):
            if crop.shape != (y1 - y0, x1 - x0) or not (0 <= x0 <= x1 <= self.width and 0 <= y0 <= y1 <= self.height):
                raise ValueError(f"a crop of shape {crop.shape} does not fit its box {(x0, y0, x1, y1)} "
                                 f"in a {self.width}x{self.height} frame")
        if self.track_ids is not None and self.track_ids.shape != (n,):
            raise ValueError(f"track_ids shape {self.track_ids.shape} does not match {n} instances")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_masks(cls, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, masks: np.ndarray,
                   frame_index: int = 0, time: float = 0.0, track_ids: np.ndarray | None = None) -> Instances:
        """Instances from full-frame (N, H, W) masks, each cropped to the extent of its pixels."""
        height, width = masks.shape[1:]
        crop_boxes = np.array([mask_extent(mask) for mask in masks], np.int64).reshape(-1, 4)
        crops = [mask[y0:y1, x0:x1].copy() for mask, (x0, y0, x1, y1) in zip(masks, crop_boxes.tolist())]
        return cls(boxes, scores, class_ids, crops, crop_boxes, int(height), int(width), frame_index, time, track_ids)

    @classmethod
    def empty(cls, height: int, width: int, frame_index: int = 0, time: float = 0.0) -> Instances:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64), [],
                   np.zeros((0, 4), np.int64), height, width, frame_index=frame_index, time=time)

    @cached_property
    def masks(self) -> np.ndarray:
        """(N, H, W) full-frame boolean masks, made on first use: the pipeline itself never needs them."""
        full = np.zeros((len(self), self.height, self.width), bool)
        for plane, crop, (x0, y0, x1, y1) in zip(full, self.crops, self.crop_boxes.tolist()):
            plane[y0:y1, x0:x1] = crop
        return full

    @cached_property
    def areas(self) -> np.ndarray:
        return np.array([np.count_nonzero(crop) for crop in self.crops], np.int64)

    @cached_property
    def centroids(self) -> np.ndarray:
        """(N, 2) x, y of each mask's centre of mass, in pixel-centre coordinates; NaN for an empty mask."""
        centres = np.full((len(self), 2), np.nan)
        for centre, crop, area, (x0, y0, _, _) in zip(centres, self.crops, self.areas, self.crop_boxes.tolist()):
            if area:
                centre[0] = crop.sum(axis=0) @ (np.arange(crop.shape[1]) + x0 + 0.5) / area
                centre[1] = crop.sum(axis=1) @ (np.arange(crop.shape[0]) + y0 + 0.5) / area
        return centres

    def select(self, keep: np.ndarray) -> Instances:
        """The subset chosen by a boolean mask or index array, same frame."""
        indices = np.arange(len(self))[keep]
        chosen = Instances(
            boxes=self.boxes[indices],
            scores=self.scores[indices],
            class_ids=self.class_ids[indices],
            crops=[self.crops[i] for i in indices],
            crop_boxes=self.crop_boxes[indices],
            height=self.height,
            width=self.width,
            frame_index=self.frame_index,
            time=self.time,
            track_ids=None if self.track_ids is None else self.track_ids[indices],
            extra=dict(self.extra),
        )
        if "areas" in self.__dict__:  # counted already: the subset's are a subset
            chosen.areas = self.areas[indices]
        return chosen


@dataclass
class FrameNotes:
    """What is known of a frame beyond its instances: from the source, and from the steps."""

    dropped_before: int = 0  # frames a live source dropped since the previous inferred frame
    source_events: list[dict] = field(default_factory=list)  # outages that ended since then
    trails: dict[int, list] | None = None  # track id -> its recent mask centroids, oldest first
    tally: Tally | None = None  # counters as they stand, for the overlay
    counts: FrameCounts | None = None  # running line totals and this frame's zone occupancy, for the JSONL
    events: list[CountEvent] | None = None  # crossings, entries and exits in this frame


def drop_fragments(instances: Instances, threshold: float) -> Instances:
    """Keep, in order of score, each instance unless more than ``threshold`` of its mask is already
    covered by the masks of kept instances.

    Mask R-CNN reports some objects twice: whole and in parts (a tall pillar as itself and as its two
    halves), or once per class it hesitates between, with masks too different in box terms for NMS.
    A tracker then hands the object's id back and forth between the copies, and counts it twice.
    Masks hold visible pixels only, so an object in front of another leaves a hole in the other's
    mask and is not covered by it; a detection whose pixels are nearly all claimed by surer ones is
    the same object reported again.
    """
    if len(instances) < 2:
        return instances
    order = np.argsort(-instances.scores, kind="stable")
    boxes = instances.crop_boxes
    left, top = boxes[:, :2].min(axis=0)
    right, bottom = boxes[:, 2:].max(axis=0)
    cover = np.zeros((bottom - top, right - left), bool)  # pixels claimed so far, over the crops' extent
    keep = []
    for i in order:
        area = instances.areas[i]
        if area:  # an empty mask has nothing to compare: left as the model gave it
            x0, y0, x1, y1 = boxes[i] - (left, top, left, top)
            crop, claimed = instances.crops[i], cover[y0:y1, x0:x1]
            if np.count_nonzero(crop & claimed) > threshold * area:
                continue
            claimed |= crop
        keep.append(i)
    return instances.select(np.sort(np.array(keep, np.int64)))
