"""How far two runs' detections of the same frames are apart: runtime against runtime, export against torch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..instances import Instances

# Detections count as the same when they are these close (issue 15's bar for OpenVINO against torch).
# A mask under the IoU bar still counts as the same when every pixel it differs by lies on its edge:
# one pixel of a 50-pixel mask is IoU 0.98, and float differences move edges, never interiors.
MAX_BOX_DIFF = 0.5  # pixels, any corner coordinate
MIN_MASK_IOU = 0.99


@dataclass(frozen=True)
class Agreement:
    frames: int
    same_detections: int  # frames with the same number of detections and the same labels, in score order
    max_box_diff: float  # pixels, over those frames
    min_mask_iou: float  # over those frames' detections, of the final (pasted, thresholded) masks
    off_edge_pixels: int = 0  # of masks under MIN_MASK_IOU: differing pixels more than a pixel from the edge

    @property
    def identical(self) -> bool:
        return (self.same_detections == self.frames and self.max_box_diff < MAX_BOX_DIFF
                and (self.min_mask_iou >= MIN_MASK_IOU or self.off_edge_pixels == 0))

    def to_dict(self) -> dict:
        return {**asdict(self), "identical": self.identical}


def compare(pairs: Iterable[tuple[Instances, Instances]]) -> Agreement:
    """Agreement of ``pairs``: one frame's detections from each of two runs, detections in score order."""
    frames = same = off_edge = 0
    box_diff, mask_iou = 0.0, 1.0
    for ours, theirs in pairs:
        frames += 1
        if len(ours) != len(theirs) or not np.array_equal(ours.class_ids, theirs.class_ids):
            continue
        same += 1
        if len(ours):
            box_diff = max(box_diff, float(np.abs(ours.boxes - theirs.boxes).max()))
            for a, b in zip(ours.masks, theirs.masks):
                iou = _iou(a, b)
                mask_iou = min(mask_iou, iou)
                off_edge += pixels_off_edge(a, b) if iou < MIN_MASK_IOU else 0
    return Agreement(frames, same, round(box_diff, 4), round(mask_iou, 4), off_edge)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def pixels_off_edge(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels where ``b`` differs from ``a`` more than one pixel away from ``a``'s edge."""
    ring = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(a.view(np.uint8), ring) > cv2.erode(a.view(np.uint8), ring)
    return int(((a != b) & ~edge).sum())
