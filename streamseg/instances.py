"""The one data currency: what a frame is and what was found in it.

``Frame`` comes out of a source; ``Instances`` comes out of the model and is then annotated in
place by later stages (tracker fills ``track_ids``). Arrays are numpy, on the CPU, in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


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
    """

    boxes: np.ndarray  # (N, 4) float32, xyxy pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    masks: np.ndarray  # (N, H, W) bool
    frame_index: int = 0
    time: float = 0.0
    track_ids: np.ndarray | None = None  # (N,) int64
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.class_ids.shape != (n,) or self.masks.shape[0] != n:
            raise ValueError(
                f"inconsistent instance arrays: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}, masks {self.masks.shape}"
            )
        if self.track_ids is not None and self.track_ids.shape != (n,):
            raise ValueError(f"track_ids shape {self.track_ids.shape} does not match {n} instances")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def height(self) -> int:
        return int(self.masks.shape[1])

    @property
    def width(self) -> int:
        return int(self.masks.shape[2])

    @property
    def areas(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    @property
    def centroids(self) -> np.ndarray:
        """(N, 2) x, y of each mask's centre of mass, in pixel-centre coordinates; NaN for an empty mask."""
        if len(self) == 0:
            return np.zeros((0, 2))
        area = self.masks.sum(axis=(1, 2)).astype(np.float64)
        area[area == 0] = np.nan
        xs = self.masks.sum(axis=1) @ (np.arange(self.width) + 0.5) / area
        ys = self.masks.sum(axis=2) @ (np.arange(self.height) + 0.5) / area
        return np.stack([xs, ys], axis=1)

    @classmethod
    def empty(cls, height: int, width: int, frame_index: int = 0, time: float = 0.0) -> Instances:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
            masks=np.zeros((0, height, width), bool),
            frame_index=frame_index,
            time=time,
        )

    def select(self, keep: np.ndarray) -> Instances:
        """The subset chosen by a boolean mask or index array, same frame."""
        return Instances(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            class_ids=self.class_ids[keep],
            masks=self.masks[keep],
            frame_index=self.frame_index,
            time=self.time,
            track_ids=None if self.track_ids is None else self.track_ids[keep],
            extra=dict(self.extra),
        )


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
    order = np.argsort(-instances.scores, kind="stable")
    cover = np.zeros(instances.masks.shape[1:], bool)  # pixels claimed by the instances kept so far
    keep = []
    areas = instances.areas
    for i in order:
        if areas[i] == 0:  # nothing to compare: left as the model gave it
            keep.append(i)
            continue
        x0, y0, x1, y1 = _pixel_box(instances.boxes[i], instances.width, instances.height)
        mask = instances.masks[i, y0:y1, x0:x1]
        # Pixels outside the box are not in the mask, so the box crop holds all of it.
        if np.count_nonzero(mask & cover[y0:y1, x0:x1]) > threshold * np.count_nonzero(mask):
            continue
        cover[y0:y1, x0:x1] |= mask
        keep.append(i)
    return instances.select(np.sort(np.array(keep, np.int64)))


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels a float xyxy box touches, clipped to the frame (a mask never reaches past its box by more than rounding)."""
    return (max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0),
            min(int(np.ceil(box[2])) + 1, width), min(int(np.ceil(box[3])) + 1, height))
