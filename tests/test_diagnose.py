"""The error breakdown puts each prediction and each missed object in the bin it belongs to."""

import json

import numpy as np
from pycocotools import mask as mask_utils

from streamseg.diagnose import error_breakdown, format_breakdown

H, W = 100, 200


def _object(label, x0, y0, x1, y1, score=1.0):
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(mask)
    return {"label": label, "class_id": {"circle": 1, "rectangle": 2, "triangle": 3}[label], "score": score,
            "box": [x0, y0, x1, y1], "mask": {"size": [H, W], "counts": rle["counts"].decode("ascii")}}


def _write(path, frames, ignore=None):
    """Frame records of ``frames`` (lists of objects); ``ignore``: {frame: faint parts} for ground truth."""
    records = [{"frame": i, "time": i / 30, "width": W, "height": H, "instances": objs,
                **({"ignore": ignore[i]} if ignore and i in ignore else {})} for i, objs in enumerate(frames)]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_every_prediction_and_miss_lands_in_its_bin(tmp_path):
    gt = _write(tmp_path / "gt.jsonl", [
        [_object("circle", 10, 10, 50, 50), _object("rectangle", 100, 10, 150, 60), _object("triangle", 160, 70, 170, 80)],
        [_object("circle", 10, 10, 50, 50), _object("circle", 45, 40, 60, 55)],
    ], ignore={0: [_object("triangle", 180, 80, 186, 85)]})  # a sliver too faint to be ground truth
    pred = _write(tmp_path / "pred.jsonl", [
        [_object("circle", 10, 10, 50, 50, 0.9),      # correct
         _object("circle", 11, 10, 50, 50, 0.8),      # the same circle again: duplicate
         _object("circle", 100, 10, 150, 60, 0.7),    # the rectangle, called a circle: wrong class
         _object("triangle", 60, 70, 90, 95, 0.6),    # nothing there: background
         _object("triangle", 179, 79, 187, 86, 0.5)],  # on the faint sliver (30 of its 56 pixels): faint
        [_object("circle", 10, 10, 30, 30, 0.9)],     # a quarter of the circle: poor mask; both circles missed
    ])
    found = error_breakdown(pred, gt)
    assert found.predictions == {"correct": 1, "wrong_class": 1, "duplicate": 1, "poor_mask": 1, "faint": 1,
                                 "background": 1}
    # missed: the 10x10 triangle (alone), and in frame 1 both circles, whose boxes overlap
    assert found.missed == {"small": 2, "medium": 1, "large": 0, "overlapped": 2, "alone": 1}
    assert found.confusions == {"rectangle -> circle": 1}
    assert found.per_class["circle"] == {"true": 3, "predicted": 4, "faint": 0, "ratio": 1.333, "missed": 2}
    # the triangle on the sliver is predicted but not counted against the ratio: 1 of 2 over 1 true
    assert found.per_class["triangle"] == {"true": 1, "predicted": 2, "faint": 1, "ratio": 1.0, "missed": 1}
    assert (found.gt_instances, found.pred_instances) == (5, 6)
    assert "1 background" in format_breakdown(found)


def test_predictions_in_a_frame_without_objects_are_background(tmp_path):
    gt = _write(tmp_path / "gt.jsonl", [[]])
    pred = _write(tmp_path / "pred.jsonl", [[_object("circle", 10, 10, 20, 20, 0.9)]])
    assert error_breakdown(pred, gt).predictions["background"] == 1


def test_eval_breakdown_adds_the_bins_to_its_json(tmp_path):
    from typer.testing import CliRunner

    from streamseg.cli import app

    gt = _write(tmp_path / "gt.jsonl", [[_object("circle", 10, 10, 50, 50)]])
    pred = _write(tmp_path / "pred.jsonl", [[_object("circle", 10, 10, 50, 50, 0.9), _object("circle", 100, 10, 150, 60, 0.5)]])
    result = CliRunner().invoke(app, ["eval", str(pred), str(gt), "--breakdown", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["breakdown"]["predictions"]["background"] == 1
