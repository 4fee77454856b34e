"""The overlay: translucent masks, outlines, boxes and labels drawn over a frame.

This runs on every frame of a video on the CPU, so the expensive part (alpha blending) is done once
per frame for all instances together, and every per-instance step only looks at the pixels around
that instance's box.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np
from scipy.sparse.csgraph import connected_components

from .count import Line, Tally, Zone
from .geometry import SUBPIXEL_BITS, box_iou_matrix, overlaps_image, pixel_box, subpixel
from .instances import Instances

GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
FONT = cv2.FONT_HERSHEY_SIMPLEX
COUNTING_COLOR = (255, 255, 255)  # lines and zones: white, apart from every instance colour's hue


def color_for(key: int) -> tuple[int, int, int]:
    """A bright RGB colour for ``key`` (a class or track id): the same key always gets the same colour.

    Hues step by the golden ratio so consecutive keys land far apart on the colour wheel; saturation
    and value alternate so that keys whose hues come close again still differ.
    """
    hue = (key * GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = (0.85, 0.6)[key % 2]
    value = (1.0, 0.8)[(key // 2) % 2]
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones (Rec. 601 luma)."""
    luma = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


class OverlayRenderer:
    """Draws :class:`Instances` over RGB frames.

    Instances are painted back to front in reverse order, so the first one (the highest score from
    the model, the front-most object in synthetic ground truth) ends up on top. Boxes are drawn
    ``thickness`` wide and mask outlines a pixel thinner, so the two stay apart where they touch.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        alpha: float = 0.45,
        thickness: int = 2,
        show_boxes: bool = True,
        show_labels: bool = True,
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be within [0, 1], got {alpha}")
        if thickness < 1:
            raise ValueError(f"thickness must be at least 1, got {thickness}")
        self.class_names = list(class_names)
        self.alpha = alpha
        self.thickness = thickness
        self.show_boxes = show_boxes
        self.show_labels = show_labels

    def annotate(self, image: np.ndarray, instances: Instances) -> np.ndarray:
        """A new (H, W, 3) uint8 RGB image: ``image`` with ``instances`` drawn over it."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if len(instances) and (instances.height, instances.width) != (height, width):
            raise ValueError(f"masks {(instances.height, instances.width)} do not match the image {(height, width)}")
        canvas = np.array(image, dtype=np.uint8, order="C", copy=True)
        if len(instances) == 0:
            return canvas

        colors = [color_for(key) for key in self._color_keys(instances)]
        self._blend_masks(canvas, instances, colors)
        font_scale = float(np.clip(height / 720 * 0.6, 0.35, 1.2))
        for i in reversed(range(len(instances))):
            self._draw_contour(canvas, instances.crops[i], instances.crop_boxes[i], colors[i])
        for i in reversed(range(len(instances))):
            if not overlaps_image(instances.boxes[i], height, width):
                continue  # e.g. a box a tracker has coasted off screen: a label clamped to the edge would mislead
            x0, y0, x1, y1 = pixel_box(instances.boxes[i], height, width)
            if self.show_boxes:
                cv2.rectangle(canvas, (x0, y0), (x1, y1), colors[i], self.thickness, cv2.LINE_AA)
            if self.show_labels:
                self._draw_label(canvas, self._label(instances, i), (x0, y0, x1, y1), colors[i], font_scale)
        return canvas

    def draw_trails(self, canvas: np.ndarray, trails: dict[int, list]) -> None:
        """Draw each track's recent path (mask centroids, oldest first) in its colour, in place."""
        for track_id, points in trails.items():
            if len(points) > 1:
                cv2.polylines(canvas, [subpixel(points)], False, color_for(track_id), max(1, self.thickness - 1),
                              cv2.LINE_AA, SUBPIXEL_BITS)

    def draw_counting(self, canvas: np.ndarray, lines: Sequence[Line], zones: Sequence[Zone], tally: Tally | None) -> None:
        """Draw counting lines (with an arrow pointing to the ``in`` side) and zones, with their counts, in place."""
        tally = tally or Tally()
        font_scale = float(np.clip(canvas.shape[0] / 720 * 0.6, 0.35, 1.2))
        for zone in zones:
            cv2.polylines(canvas, [subpixel(zone.points)], True, COUNTING_COLOR, self.thickness, cv2.LINE_AA, SUBPIXEL_BITS)
            anchor = np.array(zone.points).min(axis=0).astype(int)
            text = f"{zone.name}: {tally.zones.get(zone.name, 0)} inside"
            self._draw_label(canvas, text, (*anchor, *anchor), COUNTING_COLOR, font_scale)
        for line in lines:
            start, end = np.array(line.start), np.array(line.end)
            cv2.line(canvas, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)),
                     COUNTING_COLOR, self.thickness, cv2.LINE_AA)
            # The in side is where (x2-x1)(y-y1) - (y2-y1)(x-x1) > 0: the direction (-dy, dx).
            middle, (dx, dy) = (start + end) / 2, end - start
            normal = np.array([-dy, dx]) / np.hypot(dx, dy) * max(12.0, canvas.shape[0] / 30)
            cv2.arrowedLine(canvas, tuple(np.round(middle).astype(int)), tuple(np.round(middle + normal).astype(int)),
                            COUNTING_COLOR, self.thickness, cv2.LINE_AA, tipLength=0.35)
            crossed_in, crossed_out = tally.lines.get(line.name, (0, 0))
            anchor = np.round(np.minimum(start, end)).astype(int)
            self._draw_label(canvas, f"{line.name}: in {crossed_in} out {crossed_out}", (*anchor, *anchor),
                             COUNTING_COLOR, font_scale)

    @staticmethod
    def _color_keys(instances: Instances) -> list[int]:
        """Track id where there is one, so an object keeps its colour; the class id otherwise."""
        class_ids = instances.class_ids.tolist()
        if instances.track_ids is None:
            return class_ids
        return [t if t >= 0 else c for t, c in zip(instances.track_ids.tolist(), class_ids)]

    def _label(self, instances: Instances, i: int) -> str:
        class_id = int(instances.class_ids[i])
        name = self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)
        text = f"{name} {float(instances.scores[i]):.2f}"
        if instances.track_ids is not None and instances.track_ids[i] >= 0:
            text = f"#{int(instances.track_ids[i])} {text}"
        return text

    def _blend_masks(self, canvas: np.ndarray, instances: Instances, colors: list[tuple[int, int, int]]) -> None:
        """Blend every mask's colour into ``canvas``, each pixel in the colour of the first instance covering it.

        Instances whose boxes overlap are blended together, over the union of their boxes; apart from
        them, each group alone: a few objects spread over a 4K frame would otherwise make one region of
        most of the frame.
        """
        for group in _overlapping_groups(instances.crop_boxes):
            self._blend_group(canvas, [instances.crops[i] for i in group], instances.crop_boxes[group],
                              [colors[i] for i in group])

    def _blend_group(self, canvas: np.ndarray, crops: list[np.ndarray], boxes: np.ndarray,
                     colors: list[tuple[int, int, int]]) -> None:
        """One pass over the union of ``boxes``. Rather than painting colours instance by instance (slow
        boolean indexing), each pixel keeps the highest "rank" covering it (n for the first instance, 1
        for the last, 0 for none), and a colour table turns ranks into colours at once."""
        left, top = boxes[:, :2].min(axis=0)
        right, bottom = boxes[:, 2:].max(axis=0)
        if bottom <= top or right <= left:
            return
        count = len(crops)
        rank_type = np.uint8 if count < 256 else np.uint16
        rank = np.zeros((bottom - top, right - left), rank_type)
        for i, (crop, (x0, y0, x1, y1)) in enumerate(zip(crops, boxes.tolist())):
            area = rank[y0 - top:y1 - top, x0 - left:x1 - left]
            np.maximum(area, crop.view(np.uint8) * rank_type(count - i), out=area)
        table = np.zeros((max(256, count + 1), 3), np.uint8)
        table[1 : count + 1] = colors[::-1]
        if rank_type is np.uint8:
            layer = cv2.applyColorMap(rank, table.reshape(256, 1, 3))  # a plain table lookup, 8-bit only
        else:
            layer = np.take(table, rank, axis=0)
        area = canvas[top:bottom, left:right]
        blended = cv2.addWeighted(area, 1.0 - self.alpha, layer, self.alpha, 0.0)
        # cv2.copyTo writes into the view in place, about ten times faster than np.copyto(where=...).
        cv2.copyTo(blended, (rank > 0).view(np.uint8), area)

    def _draw_contour(self, canvas: np.ndarray, crop: np.ndarray, box: np.ndarray, color: tuple[int, int, int]) -> None:
        if crop.size == 0:
            return
        contours, _ = cv2.findContours(np.ascontiguousarray(crop).view(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE, offset=(int(box[0]), int(box[1])))
        if contours:
            cv2.drawContours(canvas, contours, -1, color, max(1, self.thickness - 1), cv2.LINE_AA)

    def _draw_label(
        self,
        canvas: np.ndarray,
        text: str,
        box: tuple[int, int, int, int],
        color: tuple[int, int, int],
        font_scale: float,
    ) -> None:
        """The label on a filled tag above the box's top-left corner, moved inside the image if needed."""
        height, width = canvas.shape[:2]
        font_thickness = 1
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, font_thickness)
        pad = 2
        tag_w, tag_h = text_w + 2 * pad, text_h + baseline + 2 * pad
        x0, y0 = box[0], box[1]
        # Above the box, pushed down (over the box) and left where the image edges leave no room.
        top = min(max(y0 - tag_h, 0), max(height - tag_h, 0))
        left = min(max(x0, 0), max(width - tag_w, 0))
        cv2.rectangle(canvas, (left, top), (left + tag_w - 1, top + tag_h - 1), color, cv2.FILLED)
        cv2.putText(
            canvas,
            text,
            (left + pad, top + pad + text_h),
            FONT,
            font_scale,
            _text_color(color),
            font_thickness,
            cv2.LINE_AA,
        )


def _overlapping_groups(boxes: np.ndarray) -> list[np.ndarray]:
    """Indices of ``boxes`` (x0, y0, x1, y1) in groups joined by overlap, directly or through others; each
    group in ascending order, so the first instance stays first."""
    count, labels = connected_components(box_iou_matrix(boxes, boxes) > 0, directed=False)
    return [np.flatnonzero(labels == g) for g in range(count)]
