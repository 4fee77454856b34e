"""Tracking metrics (HOTA, IDF1, MOTA, ID switches) of predicted tracks against GT tracks.

TrackEval computes the metrics; this module only builds what its metric classes take: per frame,
the GT ids, the predicted ids and their similarity. Similarity is mask IoU (MOTS-style) or box IoU,
set to zero across different labels so an object tracked under the wrong class is not a match.
Predictions without an id (tracking off, or a detection not yet confirmed) are not tracks and are
left out, as a MOT submission would leave them out. So are predictions of objects too faint to be
ground truth (on one of a GT frame's ``ignore`` regions and on no true object), as TrackEval's own
MOT17 preprocessing removes detections of distractors and COCO's crowd rule ignores them.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.table import Table

from .errors import InputError
from .evaluate import ignore_regions, mask_overlaps
from .formats import read_records

FAINT_SHARE = 0.5  # at least this share of a prediction on an ignore region makes it a detection of that object

METRIC_KEYS = ("hota", "deta", "assa", "idf1", "mota", "id_switches")


def evaluate_tracking(pred_path: str | Path, gt_path: str | Path) -> dict | None:
    """``{"hota", "deta", "assa", "idf1", "mota", "id_switches", "box": {same on boxes}, "unique_counts"}``.

    None when the GT has no track ids (nothing to measure tracking against). ``unique_counts`` gives
    per label the number of distinct GT ids and predicted ids.
    """
    gt_records = {int(r["frame"]): r for r in read_records(gt_path)}
    pred = {int(r["frame"]): r["instances"] for r in read_records(pred_path)}
    if not gt_records:
        raise InputError(f"{gt_path}: no frame records to evaluate against")
    gt = {frame: record["instances"] for frame, record in gt_records.items()}
    if not any(o.get("id") is not None for objects in gt.values() for o in objects):
        return None
    frames = sorted(gt.keys() | pred.keys())
    gt_frames = [[o for o in gt.get(f, []) if o.get("id") is not None] for f in frames]
    pred_frames = [_off_faint([o for o in pred.get(f, []) if o.get("id") is not None], true,
                              ignore_regions(gt_records[f]) if f in gt_records else [])
                   for f, true in zip(frames, gt_frames)]
    result = _metrics(gt_frames, pred_frames, mask_overlaps)
    result["box"] = _metrics(gt_frames, pred_frames, _box_iou)
    result["unique_counts"] = _unique_counts(gt_frames, pred_frames)
    return result


def _metrics(gt_frames: list[list[dict]], pred_frames: list[list[dict]], iou) -> dict:
    from trackeval.metrics import CLEAR, HOTA, Identity  # imported on use: it is slow to import

    data = _trackeval_data(gt_frames, pred_frames, iou)
    quiet = {"PRINT_CONFIG": False}
    with contextlib.redirect_stdout(io.StringIO()):
        hota = HOTA(quiet).eval_sequence(data)
        clear = CLEAR(quiet).eval_sequence(data)
        identity = Identity(quiet).eval_sequence(data)
    return {
        "hota": float(np.mean(hota["HOTA"])),
        "deta": float(np.mean(hota["DetA"])),
        "assa": float(np.mean(hota["AssA"])),
        "idf1": float(identity["IDF1"]),
        "mota": float(clear["MOTA"]),
        "id_switches": int(clear["IDSW"]),
    }


def _trackeval_data(gt_frames: list[list[dict]], pred_frames: list[list[dict]], iou) -> dict:
    """TrackEval's per-sequence dict: ids renumbered 0..n-1, one similarity matrix (gt x pred) per frame."""
    gt_index: dict = defaultdict(lambda: len(gt_index))
    pred_index: dict = defaultdict(lambda: len(pred_index))
    data: dict = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for gt_objects, pred_objects in zip(gt_frames, pred_frames):
        data["gt_ids"].append(np.array([gt_index[o["id"]] for o in gt_objects], int))
        data["tracker_ids"].append(np.array([pred_index[o["id"]] for o in pred_objects], int))
        similarity = iou(gt_objects, pred_objects)
        same_label = np.array([[g["label"] == p["label"] for p in pred_objects] for g in gt_objects], bool)
        data["similarity_scores"].append(np.where(same_label.reshape(similarity.shape), similarity, 0.0))
    data.update(
        num_timesteps=len(gt_frames),
        num_gt_ids=len(gt_index),
        num_tracker_ids=len(pred_index),
        num_gt_dets=sum(len(ids) for ids in data["gt_ids"]),
        num_tracker_dets=sum(len(ids) for ids in data["tracker_ids"]),
    )
    return data


def _off_faint(pred_objects: list[dict], gt_objects: list[dict], faint: list[dict]) -> list[dict]:
    """``pred_objects`` but those lying on a faint object (``faint``: the frame's grown ignore regions)
    and on no true object."""
    if not faint or not pred_objects:
        return pred_objects
    on_faint = mask_overlaps(pred_objects, faint, share=True)
    on_true = mask_overlaps(gt_objects, pred_objects).max(axis=0, initial=0.0)
    return [o for o, share, true in zip(pred_objects, on_faint.max(axis=1), on_true)
            if share < FAINT_SHARE or true >= FAINT_SHARE]


def _box_iou(gt_objects: list[dict], pred_objects: list[dict]) -> np.ndarray:
    if not gt_objects or not pred_objects:
        return np.zeros((len(gt_objects), len(pred_objects)))
    gt_boxes, pred_boxes = (np.array([o["box"] for o in group], float) for group in (gt_objects, pred_objects))
    top_left = np.maximum(gt_boxes[:, None, :2], pred_boxes[None, :, :2])
    bottom_right = np.minimum(gt_boxes[:, None, 2:], pred_boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = _area(gt_boxes)[:, None] + _area(pred_boxes)[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def _unique_counts(gt_frames: list[list[dict]], pred_frames: list[list[dict]]) -> dict:
    labels: dict[str, dict[str, set]] = defaultdict(lambda: {"gt": set(), "pred": set()})
    for side, frames in (("gt", gt_frames), ("pred", pred_frames)):
        for objects in frames:
            for o in objects:
                labels[o["label"]][side].add(o["id"])
    return {label: {side: len(ids) for side, ids in sides.items()} for label, sides in sorted(labels.items())}


def format_tracking_table(metrics: dict) -> Table:
    """HOTA and friends on masks and on boxes, then unique counts per class."""
    table = Table(title="Tracking (TrackEval)")
    table.add_column("on")
    for header in ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "ID switches"):
        table.add_column(header, justify="right")
    for name, values in (("masks", metrics), ("boxes", metrics["box"])):
        table.add_row(name, *(f"{values[k]:.3f}" for k in METRIC_KEYS[:-1]), str(values["id_switches"]))
    counts = ", ".join(f"{label} {c['pred']}/{c['gt']}" for label, c in metrics["unique_counts"].items())
    table.caption = f"unique objects, predicted/true: {counts}"
    return table
