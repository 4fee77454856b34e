import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from streamseg.errors import InputError
from streamseg.evaluate import evaluate_detections, format_table
from streamseg.formats import dumps, instances_to_record, read_records, record_to_instances
from streamseg.instances import Instances
from streamseg.synth import CLASS_NAMES, World

FRAMES = 10
AP_KEYS = ("mask_ap", "mask_ap50", "mask_ap75", "box_ap", "box_ap50", "box_ap75")


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def gt_records() -> list[dict]:
    world = World(width=160, height=96, objects=4, seed=1)
    return [instances_to_record(gt, CLASS_NAMES) for _, (_, gt) in zip(range(FRAMES), world)]


@pytest.fixture()
def gt_path(tmp_path, gt_records) -> Path:
    return _write(tmp_path / "gt.jsonl", gt_records)


def _perturbed(record: dict, shift: int, erode: int) -> dict:
    """The record's instances with masks eroded and shifted, and boxes shifted, by a few pixels."""
    inst = record_to_instances(record)
    kernel = np.ones((2 * erode + 1, 2 * erode + 1), np.uint8)
    masks = np.stack([cv2.erode(m.astype(np.uint8), kernel) for m in inst.masks]) if len(inst) else inst.masks
    masks = np.roll(masks, shift, axis=2).astype(bool)
    scores = np.linspace(0.95, 0.6, len(inst)).astype(np.float32)
    moved = Instances.from_masks(inst.boxes + shift, scores, inst.class_ids, masks, inst.frame_index, inst.time)
    return instances_to_record(moved, CLASS_NAMES)


def test_ground_truth_against_itself_is_perfect(gt_path, gt_records):
    metrics = evaluate_detections(gt_path, gt_path)
    for key in AP_KEYS:
        assert metrics[key] == pytest.approx(1.0), key
    count = sum(len(r["instances"]) for r in gt_records)
    assert count > 0
    assert metrics["frames"] == FRAMES
    assert metrics["gt_instances"] == metrics["pred_instances"] == count
    labels = {o["label"] for r in gt_records for o in r["instances"]}
    assert set(metrics["per_class"]) == labels
    for values in metrics["per_class"].values():
        assert values["mask_ap"] == pytest.approx(1.0) and values["box_ap"] == pytest.approx(1.0)
    json.dumps(metrics)  # JSON-ready


def test_perturbed_predictions_score_lower(tmp_path, gt_path, gt_records):
    pred = _write(tmp_path / "pred.jsonl", [_perturbed(r, shift=3, erode=2) for r in gt_records])
    metrics = evaluate_detections(pred, gt_path)
    assert 0.0 < metrics["mask_ap"] < 0.9
    assert 0.0 < metrics["box_ap"] < 0.9
    # AP50 forgives a few pixels that AP@[.50:.95] does not.
    assert metrics["mask_ap50"] > metrics["mask_ap"]

    slightly = _write(tmp_path / "slight.jsonl", [_perturbed(r, shift=1, erode=0) for r in gt_records])
    slight_metrics = evaluate_detections(slightly, gt_path)
    assert metrics["mask_ap"] < slight_metrics["mask_ap"] < 1.0

    # Every class has GT here, so each overall figure is the mean of the per-class ones.
    for result in (metrics, slight_metrics):
        for key in AP_KEYS:
            per_class = [values[key] for values in result["per_class"].values()]
            assert np.mean(per_class) == pytest.approx(result[key]), key


def test_missing_prediction_frames_lower_recall(tmp_path, gt_path, gt_records):
    kept = [r for r in gt_records if r["frame"] % 2 == 0]
    pred = _write(tmp_path / "pred.jsonl", kept)
    metrics = evaluate_detections(pred, gt_path)
    assert metrics["frames"] == FRAMES
    assert metrics["pred_instances"] == sum(len(r["instances"]) for r in kept)
    assert metrics["mask_ap"] < 0.8 and metrics["box_ap"] < 0.8


def test_prediction_only_frame_adds_false_positives(tmp_path, gt_path, gt_records):
    def scored(record: dict, score: float, frame: int) -> dict:
        return dict(record, frame=frame, instances=[dict(o, score=score) for o in record["instances"]])

    # The phantom detections outrank the true ones, so they cost precision at every recall level.
    true = [scored(r, 0.8, r["frame"]) for r in gt_records]
    phantom = scored(max(gt_records, key=lambda r: len(r["instances"])), 0.99, FRAMES + 5)
    assert evaluate_detections(_write(tmp_path / "true.jsonl", true), gt_path)["mask_ap"] == pytest.approx(1.0)
    pred = _write(tmp_path / "pred.jsonl", [*true, phantom])
    metrics = evaluate_detections(pred, gt_path)
    assert metrics["frames"] == FRAMES + 1
    assert metrics["mask_ap"] < 0.95 and metrics["box_ap"] < 0.95
    assert metrics["mask_ap"] > 0.3  # every object is still found


def test_detections_of_ignored_faint_objects_neither_count_nor_cost(tmp_path, gt_records):
    # A ground-truth frame's "ignore" parts are crowd regions: the surest detection, of an object listed there,
    # costs nothing; the same detection against ground truth that does not list the object is a false positive.
    busiest = max(gt_records, key=lambda r: len(r["instances"]))
    sliver = busiest["instances"][0]
    pred = _write(tmp_path / "pred.jsonl", [dict(r, instances=[dict(o, score=0.99 if o is sliver else 0.8)
                                                               for o in r["instances"]]) for r in gt_records])

    def without_sliver(ignore: bool) -> list[dict]:
        records = []
        for r in gt_records:
            rest = [o for o in r["instances"] if o is not sliver]
            records.append(dict(r, instances=rest, **({"ignore": [sliver]} if ignore and r is busiest else {})))
        return records

    ignored = evaluate_detections(pred, _write(tmp_path / "ignored.jsonl", without_sliver(ignore=True)))
    unlisted = evaluate_detections(pred, _write(tmp_path / "unlisted.jsonl", without_sliver(ignore=False)))
    assert ignored["mask_ap"] == pytest.approx(1.0) and ignored["box_ap"] == pytest.approx(1.0)
    assert ignored["gt_instances"] == unlisted["gt_instances"] == sum(len(r["instances"]) for r in gt_records) - 1
    assert unlisted["mask_ap"] < 0.99 and unlisted["box_ap"] < 0.99  # one false positive, surest of all


def test_truncated_last_prediction_line_is_tolerated(tmp_path, gt_path, gt_records):
    text = "".join(dumps(r) + "\n" for r in gt_records)
    last = dumps(gt_records[-1])
    pred = tmp_path / "pred.jsonl"
    pred.write_text(text[: len(text) - len(last) // 2 - 1])  # cut mid-way through the last record
    assert len(list(read_records(pred))) == FRAMES - 1
    metrics = evaluate_detections(pred, gt_path)
    assert metrics["pred_instances"] == sum(len(r["instances"]) for r in gt_records[:-1])
    if gt_records[-1]["instances"]:
        assert metrics["mask_ap"] < 1.0


def test_no_predictions_at_all_is_zero(tmp_path, gt_path):
    empty = [{"frame": 0, "time": 0.0, "width": 160, "height": 96, "instances": []}]
    metrics = evaluate_detections(_write(tmp_path / "pred.jsonl", empty), gt_path)
    for key in AP_KEYS:
        assert metrics[key] == 0.0
    assert metrics["pred_instances"] == 0


def test_classes_are_matched_by_label(tmp_path, gt_path, gt_records):
    renumbered = json.loads(json.dumps(gt_records))
    for record in renumbered:
        for obj in record["instances"]:
            obj["class_id"] += 10
    metrics = evaluate_detections(_write(tmp_path / "pred.jsonl", renumbered), gt_path)
    assert metrics["mask_ap"] == pytest.approx(1.0)


def test_wrong_labels_score_zero_and_unmatched_classes_have_no_ap(tmp_path, gt_path, gt_records):
    relabelled = json.loads(json.dumps(gt_records))
    for record in relabelled:
        for obj in record["instances"]:
            obj["label"] = "hexagon"
    metrics = evaluate_detections(_write(tmp_path / "pred.jsonl", relabelled), gt_path)
    assert metrics["mask_ap"] == 0.0 and metrics["box_ap"] == 0.0
    assert metrics["per_class"]["hexagon"]["mask_ap"] is None
    assert metrics["per_class"]["hexagon"]["pred_instances"] == metrics["pred_instances"]


def test_ground_truth_without_instances_reports_null(tmp_path, gt_records):
    blank = [dict(r, instances=[]) for r in gt_records]
    gt = _write(tmp_path / "gt.jsonl", blank)
    metrics = evaluate_detections(_write(tmp_path / "pred.jsonl", gt_records), gt)
    for key in AP_KEYS:
        assert metrics[key] is None
    assert metrics["gt_instances"] == 0 and metrics["pred_instances"] > 0
    assert json.loads(json.dumps(metrics))["mask_ap"] is None
    console = Console(record=True, width=120)
    console.print(format_table(metrics))
    assert "n/a" in console.export_text()


def test_bad_inputs_are_input_errors(tmp_path, gt_path, gt_records):
    with pytest.raises(InputError, match="no frame records"):
        evaluate_detections(gt_path, _write(tmp_path / "empty.jsonl", []))
    with pytest.raises(InputError, match="twice"):
        evaluate_detections(_write(tmp_path / "dup.jsonl", [gt_records[0], gt_records[0]]), gt_path)
    resized = dict(gt_records[0], width=320)
    with pytest.raises(InputError, match="frame 0"):
        evaluate_detections(_write(tmp_path / "big.jsonl", [resized]), gt_path)
    with pytest.raises(InputError, match="no such file"):
        evaluate_detections(tmp_path / "missing.jsonl", gt_path)


def test_format_table_lists_overall_and_each_class(tmp_path, gt_path, gt_records):
    pred = _write(tmp_path / "pred.jsonl", [_perturbed(r, shift=2, erode=1) for r in gt_records])
    metrics = evaluate_detections(pred, gt_path)
    console = Console(record=True, width=120)
    console.print(format_table(metrics))
    text = console.export_text()
    assert "mask AP" in text and "box AP" in text
    assert f"{metrics['mask_ap']:.3f}" in text
    for label in metrics["per_class"]:
        assert label in text


def _box_record(frame: int, box: list[int], height: int = 30, width: int = 100) -> dict:
    """A one-object record whose mask fills its box."""
    masks = np.zeros((1, height, width), bool)
    masks[0, box[1] : box[3], box[0] : box[2]] = True
    inst = Instances.from_masks(np.array([box], np.float32), np.array([0.9], np.float32), np.array([2]), masks, frame)
    return instances_to_record(inst, CLASS_NAMES)


def test_hand_computed_iou_gives_the_coco_ap(tmp_path):
    # IoU 41/50 = 0.82: matched at thresholds 0.50, 0.55, ..., 0.80, i.e. 7 of the 10, so AP = 0.7.
    # (Boxes misread as xywh would give IoU 61/70 = 0.87 and AP 0.8.)
    gt = _write(tmp_path / "gt.jsonl", [_box_record(0, [20, 5, 70, 15])])
    pred = _write(tmp_path / "pred.jsonl", [_box_record(0, [20, 5, 61, 15])])
    metrics = evaluate_detections(pred, gt)
    assert metrics["box_ap"] == pytest.approx(0.7)
    assert metrics["mask_ap"] == pytest.approx(0.7)
    assert metrics["box_ap50"] == metrics["mask_ap50"] == pytest.approx(1.0)
    assert metrics["box_ap75"] == metrics["mask_ap75"] == pytest.approx(1.0)
    assert metrics["per_class"]["rectangle"]["box_ap"] == pytest.approx(0.7)
