"""COCO box and mask AP of predicted frame records against ground-truth records.

Each frame is one COCO image, keyed by the record's ``frame``. pycocotools does the matching and
averaging, so the numbers are the ones every paper reports; this module only translates records.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rich.table import Table

from .errors import InputError
from .formats import read_records

IOU_TYPES = {"mask": "segm", "box": "bbox"}
# Pixels a ground truth's ignore region grows by all round: the picture's edges are blurred by resampling and
# by H.264, so a model that finds a sliver of 20 pixels outlines it a pixel wider (35-45 pixels). Ungrown, 141 of
# the 198 detections of one such sliver still counted as false ones on the model card clip; grown by 1, none.
IGNORE_MARGIN = 1
# Rows of COCOeval.stats and of its precision array's IoU axis (thresholds 0.50:0.05:0.95).
STAT_AP, STAT_AP50, STAT_AP75 = 0, 1, 2
IOU_INDEX_50, IOU_INDEX_75 = 0, 5


def evaluate_detections(pred_path: str | Path, gt_path: str | Path) -> dict:
    """Mask and box AP (COCO: AP@[.50:.95], AP50, AP75) of ``pred_path`` against ``gt_path``.

    Both files hold frame records (see :mod:`streamseg.formats`); a truncated last line is skipped.
    Every frame in either file is an image: a GT frame with no prediction record had no detections
    (its objects are misses), a predicted frame absent from GT has no objects (its detections are
    false positives). So predictions from a run with ``stride`` > 1 are penalised for skipped frames.

    A ground-truth frame's ``ignore`` parts (objects under the synthetic world's visibility floor) are
    COCO crowd regions: a detection on one is neither a hit nor a false positive.

    Classes are matched by label, not by class id, so a model whose class list is ordered differently
    from the GT's is still scored fairly. As in COCO, a class with no GT instance has no AP (its
    detections do not count against the overall AP) and is reported with ``None``.

    GT with frames but no instances at all is valid (a clip where nothing appears): every AP is
    ``None`` (JSON null), since precision over no objects is undefined. A GT file with no frame
    record at all, duplicate frames, or a frame whose size differs between the files is an
    :class:`InputError`.

    Returns a JSON-ready dict: ``mask_ap``, ``mask_ap50``, ``mask_ap75``, ``box_ap``, ``box_ap50``,
    ``box_ap75``, ``per_class`` ({label: {"mask_ap", "mask_ap50", "mask_ap75", "box_ap", ...,
    "gt_instances", "pred_instances"}}), ``frames``, ``gt_instances``, ``pred_instances``.
    """
    gt = frames_by_index(gt_path)
    pred = frames_by_index(pred_path)
    if not gt:
        raise InputError(f"{gt_path}: no frame records to evaluate against")

    image_ids = {frame: i + 1 for i, frame in enumerate(sorted(gt.keys() | pred.keys()))}
    images = []
    for frame, image_id in image_ids.items():
        height, width = _frame_size(gt.get(frame), pred.get(frame), frame, pred_path)
        images.append({"id": image_id, "height": height, "width": width})
    labels = _labels_in_order([*gt.values(), *pred.values()])
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(labels)]
    category_ids = {label: c["id"] for label, c in zip(labels, categories)}

    gt_objects = _objects(gt, image_ids, category_ids)
    pred_objects = _objects(pred, image_ids, category_ids)
    gt_counts = Counter(o["category_id"] for o in gt_objects if not o["iscrowd"])
    pred_counts = Counter(o["category_id"] for o in pred_objects)
    metrics: dict = {"frames": len(images), "gt_instances": gt_counts.total(), "pred_instances": len(pred_objects)}
    per_class: dict[str, dict] = {
        c["name"]: {"gt_instances": gt_counts[c["id"]], "pred_instances": pred_counts[c["id"]]} for c in categories
    }

    for kind, iou_type in IOU_TYPES.items():
        overall, by_category = _average_precision(images, categories, gt_objects, pred_objects, iou_type)
        metrics.update({f"{kind}_{name}": value for name, value in overall.items()})
        for category in categories:
            values = by_category[category["id"]]
            per_class[category["name"]].update({f"{kind}_{name}": value for name, value in values.items()})
    metrics["per_class"] = per_class
    return metrics


def frames_by_index(path: str | Path) -> dict[int, dict]:
    """The frame records of ``path`` by frame index; a frame twice is an :class:`InputError`."""
    frames: dict[int, dict] = {}
    for record in read_records(path):
        frame = int(record["frame"])
        if frame in frames:
            raise InputError(f"{path}: frame {frame} appears twice")
        frames[frame] = record
    return frames


def _frame_size(gt: dict | None, pred: dict | None, frame: int, pred_path: str | Path) -> tuple[int, int]:
    sizes = {(int(r["height"]), int(r["width"])) for r in (gt, pred) if r is not None}
    if len(sizes) > 1:
        raise InputError(f"{pred_path}: frame {frame} is {pred['width']}x{pred['height']}, the GT frame is not")
    return sizes.pop()


def _labels_in_order(records: list[dict]) -> list[str]:
    """Every label in the records, ordered by the smallest class id it comes with (then by name)."""
    first_id: dict[str, int] = {}
    for record in records:
        for obj in [*record["instances"], *record.get("ignore", [])]:
            label = str(obj["label"])
            first_id[label] = min(first_id.get(label, obj["class_id"]), obj["class_id"])
    return sorted(first_id, key=lambda label: (first_id[label], label))


def _objects(frames: dict[int, dict], image_ids: dict[int, int], category_ids: dict[str, int]) -> list[dict]:
    """COCO annotations of every instance; ids start at 1 because COCOeval takes 0 for "unmatched".

    A ground-truth record's ``ignore`` parts (objects too faint to be ground truth) become crowd
    regions (see :func:`ignore_regions`): COCOeval ignores a detection that falls on one, and missing
    one costs nothing."""
    objects = []
    for frame, record in frames.items():
        for obj, crowd in [*((o, 0) for o in record["instances"]), *((o, 1) for o in ignore_regions(record))]:
            x0, y0, x1, y1 = (float(v) for v in obj["box"])
            rle = mask_rles([obj])[0]
            objects.append(
                {
                    "id": len(objects) + 1,
                    "image_id": image_ids[frame],
                    "category_id": category_ids[str(obj["label"])],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "score": float(obj.get("score", 1.0)),
                    "iscrowd": crowd,
                }
            )
    return objects


def ignore_regions(record: dict) -> list[dict]:
    """A ground-truth record's ``ignore`` instances with masks and boxes grown by ``IGNORE_MARGIN`` pixels."""
    regions = []
    for obj in record.get("ignore", []):
        height, width = obj["mask"]["size"]
        mask = mask_utils.decode(mask_rles([obj])[0])
        grown = np.asfortranarray(cv2.dilate(mask, np.ones((2 * IGNORE_MARGIN + 1,) * 2, np.uint8)))
        x0, y0, x1, y1 = obj["box"]
        box = [max(0, x0 - IGNORE_MARGIN), max(0, y0 - IGNORE_MARGIN), min(width, x1 + IGNORE_MARGIN),
               min(height, y1 + IGNORE_MARGIN)]
        rle = mask_utils.encode(grown)
        regions.append({**obj, "box": box, "mask": {"size": [height, width], "counts": rle["counts"].decode("ascii")}})
    return regions


def mask_rles(objects: list[dict]) -> list[dict]:
    """pycocotools' RLEs of the masks of ``objects`` (instances of frame records)."""
    return [{"size": list(o["mask"]["size"]), "counts": o["mask"]["counts"].encode("ascii")} for o in objects]


def mask_overlaps(objects: list[dict], others: list[dict], share: bool = False) -> np.ndarray:
    """(len(objects), len(others)) mask IoUs of frame records' instances; with ``share``, the share of each
    of ``objects`` that lies on each of ``others`` (COCO's rule for crowd regions)."""
    if not objects or not others:
        return np.zeros((len(objects), len(others)))
    overlaps = mask_utils.iou(mask_rles(objects), mask_rles(others), [int(share)] * len(others))
    return np.asarray(overlaps).reshape(len(objects), len(others))


def _coco(images: list[dict], categories: list[dict], objects: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": objects}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _average_precision(
    images: list[dict], categories: list[dict], gt_objects: list[dict], pred_objects: list[dict], iou_type: str
) -> tuple[dict, dict[int, dict]]:
    """(overall {"ap", "ap50", "ap75"}, the same per category id); None where there is no GT."""
    nothing = {"ap": None, "ap50": None, "ap75": None}
    if not any(not o["iscrowd"] for o in gt_objects):
        return nothing, {c["id"]: dict(nothing) for c in categories}
    if not pred_objects:  # COCOeval cannot load an empty result set; no detections is simply AP 0
        zero = {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
        present = {o["category_id"] for o in gt_objects if not o["iscrowd"]}
        return zero, {c["id"]: dict(zero if c["id"] in present else nothing) for c in categories}

    if iou_type == "bbox":
        # Detections are filtered by area for the small/medium/large rows; a box is measured as a box.
        pred_objects = [{**o, "area": o["bbox"][2] * o["bbox"][3]} for o in pred_objects]
    evaluator = COCOeval(_coco(images, categories, gt_objects), _coco(images, categories, pred_objects), iou_type)
    most_per_frame = max(Counter(o["image_id"] for o in pred_objects).values())
    # COCO keeps the 100 best detections per image; keep them all so crowded frames are not cut.
    evaluator.params.maxDets = [1, 10, max(100, most_per_frame)]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    stats = evaluator.stats
    overall = {"ap": _valid(stats[STAT_AP]), "ap50": _valid(stats[STAT_AP50]), "ap75": _valid(stats[STAT_AP75])}
    # precision: [IoU threshold, recall, category, area range, max detections]; area "all", most detections.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    by_category = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k]
        by_category[category_id] = {"ap": _mean(p), "ap50": _mean(p[IOU_INDEX_50]), "ap75": _mean(p[IOU_INDEX_75])}
    return overall, by_category


def _valid(value: float) -> float | None:
    """COCOeval's -1 ("no GT to measure against") as None."""
    return None if value < 0 else float(value)


def _mean(precision: np.ndarray) -> float | None:
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else None


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(metrics: dict) -> Table:
    """The metrics of :func:`evaluate_detections` as a table: all classes, then each class."""
    table = Table(
        title=f"COCO AP over {metrics['frames']} frames "
        f"({metrics['gt_instances']} GT, {metrics['pred_instances']} predicted instances)"
    )
    table.add_column("class")
    for header in ("GT", "pred", "mask AP", "AP50", "AP75", "box AP", "AP50", "AP75"):
        table.add_column(header, justify="right")
    metric_names = ("mask_ap", "mask_ap50", "mask_ap75", "box_ap", "box_ap50", "box_ap75")
    table.add_row(
        "all",
        str(metrics["gt_instances"]),
        str(metrics["pred_instances"]),
        *(_cell(metrics[name]) for name in metric_names),
        end_section=True,
    )
    for label, values in metrics["per_class"].items():
        table.add_row(
            label,
            str(values["gt_instances"]),
            str(values["pred_instances"]),
            *(_cell(values.get(name)) for name in metric_names),
        )
    return table
