"""Where a model's detections go wrong: every prediction and every true object put in one bin.

AP says how much is lost, not where. Here each frame's predictions, surest first, are matched greedily
by mask IoU against that frame's true objects (as COCO matches them, one prediction per object), and
what is left is sorted into the causes a model author can act on:

- ``correct``: IoU >= 0.5 with an unmatched object of its class;
- ``wrong_class``: IoU >= 0.5 with an unmatched object of another class (the object counts as found);
- ``duplicate``: IoU >= 0.5 only with objects already matched (the same object reported again);
- ``poor_mask``: the right place roughly (0.1 <= IoU < 0.5 with some object) but not the right pixels;
- ``faint``: on an object too faint to be ground truth (half of the detection or more lies on one of
  the GT's ``ignore`` regions, grown as :func:`~streamseg.evaluate.ignore_regions` grows them for AP);
- ``background``: IoU < 0.1 with every object: a shape seen where there is none.

True objects nobody found are ``missed``, split by COCO's size bins and by whether another object's
box overlaps theirs (the GT is the visible part, so an overlapped object is usually partly hidden).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .evaluate import frames_by_index, ignore_regions, mask_overlaps, mask_rles

MATCH_IOU = 0.5
NEAR_IOU = 0.1
SMALL, MEDIUM = 32 * 32, 96 * 96  # COCO's area bins, pixels


@dataclass
class Breakdown:
    """Counts of each bin; ``confusions`` maps "true -> predicted" class pairs to counts."""

    predictions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("correct", "wrong_class", "duplicate", "poor_mask", "faint", "background"), 0))
    missed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("small", "medium", "large", "overlapped", "alone"), 0))
    confusions: dict[str, int] = field(default_factory=dict)
    # true, predicted, faint (of the predicted), ratio (predicted but faint over true), missed
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    gt_instances: int = 0
    pred_instances: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def error_breakdown(pred_path: str | Path, gt_path: str | Path) -> Breakdown:
    """Sort every prediction of ``pred_path`` and every object of ``gt_path`` (frame records) into bins."""
    gt, pred = frames_by_index(gt_path), frames_by_index(pred_path)
    result = Breakdown()
    true_count, pred_count, missed_count, faint_count, confusions = Counter(), Counter(), Counter(), Counter(), Counter()
    for frame in sorted(gt.keys() | pred.keys()):
        objects = gt[frame]["instances"] if frame in gt else []
        faint = ignore_regions(gt[frame]) if frame in gt else []
        found = sorted(pred[frame]["instances"], key=lambda o: -float(o["score"])) if frame in pred else []
        true_count.update(str(o["label"]) for o in objects)
        pred_count.update(str(o["label"]) for o in found)
        matched, on_faint = _match_frame(found, objects, faint, result.predictions, confusions)
        faint_count.update(on_faint)
        for index in np.flatnonzero(~matched):
            _count_miss(objects, int(index), result.missed)
            missed_count[str(objects[index]["label"])] += 1
    result.gt_instances, result.pred_instances = sum(true_count.values()), sum(pred_count.values())
    result.confusions = dict(confusions.most_common())
    for label in sorted(true_count.keys() | pred_count.keys()):
        ratio = (pred_count[label] - faint_count[label]) / true_count[label] if true_count[label] else None
        result.per_class[label] = {"true": true_count[label], "predicted": pred_count[label],
                                   "faint": faint_count[label], "ratio": None if ratio is None else round(ratio, 3),
                                   "missed": missed_count[label]}
    return result


def _match_frame(found: list[dict], objects: list[dict], faint: list[dict], bins: dict[str, int],
                 confusions: Counter) -> tuple[np.ndarray, list[str]]:
    """Bin each of ``found`` (surest first); returns which of ``objects`` were found, and the labels of
    the predictions binned as faint."""
    matched = np.zeros(len(objects), bool)
    faint_labels: list[str] = []
    if not found:
        return matched, faint_labels
    ious = mask_overlaps(found, objects)
    # A faint part is scored as COCO scores a crowd region: the share of the detection lying on it.
    on_faint = (mask_overlaps(found, faint, share=True) >= MATCH_IOU).any(axis=1)
    same_class = np.array([[f["label"] == o["label"] for o in objects] for f in found], bool).reshape(ious.shape)
    for i, prediction in enumerate(found):
        free = ~matched & (ious[i] >= MATCH_IOU)
        if (free & same_class[i]).any():
            matched[np.argmax(np.where(free & same_class[i], ious[i], -1))] = True
            bins["correct"] += 1
        elif free.any():
            target = int(np.argmax(np.where(free, ious[i], -1)))
            matched[target] = True
            bins["wrong_class"] += 1
            confusions[f"{objects[target]['label']} -> {prediction['label']}"] += 1
        elif (ious[i] >= MATCH_IOU).any():
            bins["duplicate"] += 1
        elif (ious[i] >= NEAR_IOU).any():
            bins["poor_mask"] += 1
        elif on_faint[i]:
            bins["faint"] += 1
            faint_labels.append(str(prediction["label"]))
        else:
            bins["background"] += 1
    return matched, faint_labels


def _count_miss(objects: list[dict], index: int, missed: dict[str, int]) -> None:
    area = int(mask_utils.area(mask_rles([objects[index]])[0]))
    missed["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
    x0, y0, x1, y1 = objects[index]["box"]
    overlapped = any(min(x1, b[2]) > max(x0, b[0]) and min(y1, b[3]) > max(y0, b[1])
                     for j, b in enumerate(o["box"] for o in objects) if j != index)
    missed["overlapped" if overlapped else "alone"] += 1


def format_breakdown(breakdown: Breakdown) -> str:
    """The breakdown as a few plain lines."""
    p, m = breakdown.predictions, breakdown.missed
    lines = [f"{breakdown.pred_instances} predictions: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in p.items()),
             f"{sum(m[k] for k in ('small', 'medium', 'large'))} of {breakdown.gt_instances} objects missed: "
             f"{m['small']} small, {m['medium']} medium, {m['large']} large; {m['overlapped']} overlapped by "
             f"another object's box, {m['alone']} alone"]
    if breakdown.confusions:
        lines.append("wrong class (true -> predicted): " + ", ".join(f"{k} {n}" for k, n in breakdown.confusions.items()))
    lines.append("predicted / true per class: " + ", ".join(
        f"{label} {c['predicted']}/{c['true']}" + (f" ({c['faint']} faint)" if c["faint"] else "")
        for label, c in breakdown.per_class.items()))
    return "\n".join(lines)
