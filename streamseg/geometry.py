"""Boxes, crops and masks: the small geometry the steps, the tracker and the overlay share.

Boxes are ``x0, y0, x1, y1`` in frame pixels. A box as a float array (``Instances.boxes``) is what the
model said; a crop box (``Instances.crop_boxes``) is integer with exclusive ends, the place of a mask's
crop in the frame. Points drawn with OpenCV go in fixed point, ``SUBPIXEL_BITS`` fractional bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SUBPIXEL_BITS = 4  # OpenCV's ``shift``: coordinates in 1/16 pixel, so lines and polygons land between pixels
SUBPIXEL = 1 << SUBPIXEL_BITS


def subpixel(points: Sequence | np.ndarray) -> np.ndarray:
    """Points in pixels as OpenCV's fixed-point int32 (draw with ``shift=SUBPIXEL_BITS``)."""
    return np.round(np.array(points) * SUBPIXEL).astype(np.int32)


def mask_extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The smallest box ``x0, y0, x1, y1`` (exclusive ends) holding every pixel of ``mask``; (0, 0, 0, 0) if empty."""
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if not len(columns):
        return 0, 0, 0, 0
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(N, 4) float32 tight boxes of (N, H, W) masks, x1/y1 exclusive, so box and mask cover the same pixels."""
    return np.array([mask_extent(mask) for mask in masks], np.float32).reshape(-1, 4)


def overlap(crop_a: np.ndarray, box_a: Sequence[int], crop_b: np.ndarray, box_b: Sequence[int]) -> int:
    """Pixels set in both masks, each given as a crop and its box ``x0, y0, x1, y1`` (frame pixels)."""
    x0, y0 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    x1, y1 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    a = crop_a[y0 - box_a[1]:y1 - box_a[1], x0 - box_a[0]:x1 - box_a[0]]
    b = crop_b[y0 - box_b[1]:y1 - box_b[1], x0 - box_b[0]:x1 - box_b[0]]
    return int(np.count_nonzero(a & b))


def overlaps_image(box: np.ndarray, height: int, width: int) -> bool:
    """Whether any of the float box lies inside a ``height`` x ``width`` image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return min(x1, width) > max(x0, 0.0) and min(y1, height) > max(y0, 0.0)


def pixel_box(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer corners of a float box, clamped to the image (inclusive, as cv2 draws them)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, x1 = min(max(x0, 0), width - 1), min(max(x1 - 1, 0), width - 1)
    y0, y1 = min(max(y0, 0), height - 1), min(max(y1 - 1, 0), height - 1)
    return x0, y0, max(x0, x1), max(y0, y1)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of float boxes, in float64."""
    a, b = a.astype(np.float64)[:, None, :], b.astype(np.float64)[None, :, :]
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((width > 0) & (height > 0), width * height, 0.0)
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes as (cx, cy, w, h), sizes at least 1 pixel, in float64; one (4,) box gives one (4,) row."""
    boxes = np.asarray(boxes, np.float64)
    rows = boxes.reshape(-1, 4)
    result = np.concatenate([(rows[:, :2] + rows[:, 2:]) / 2, np.maximum(rows[:, 2:] - rows[:, :2], 1.0)], 1)
    return result.reshape(boxes.shape)


def to_xyxy(states: np.ndarray) -> np.ndarray:
    """(N, 4) (cx, cy, w, h) as boxes."""
    half = states[:, 2:4] / 2
    return np.concatenate([states[:, :2] - half, states[:, :2] + half], 1)
