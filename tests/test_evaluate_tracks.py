"""Tracking metrics through TrackEval on GT tracks and deliberately broken copies of them."""

import json

import pytest

from streamseg.evaluate_tracks import evaluate_tracking
from streamseg.formats import read_records


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def gt(synth_clip):
    return synth_clip.with_name("clip.gt.jsonl")


def test_gt_against_itself_is_perfect(gt):
    metrics = evaluate_tracking(gt, gt)
    for values in (metrics, metrics["box"]):
        assert values["hota"] == pytest.approx(1.0) and values["idf1"] == pytest.approx(1.0)
        assert values["mota"] == pytest.approx(1.0) and values["id_switches"] == 0
    assert all(c["gt"] == c["pred"] > 0 for c in metrics["unique_counts"].values())


def test_swapped_ids_halfway_are_id_switches(gt, tmp_path):
    records = list(read_records(gt))
    ids = sorted({o["id"] for r in records for o in r["instances"]})
    a, b = ids[0], ids[1]
    for record in records[len(records) // 2 :]:
        for o in record["instances"]:
            o["id"] = {a: b, b: a}.get(o["id"], o["id"])
    metrics = evaluate_tracking(write(tmp_path / "pred.jsonl", records), gt)
    assert metrics["id_switches"] >= 1 and metrics["hota"] < 1.0 and metrics["idf1"] < 1.0
    assert metrics["deta"] == pytest.approx(1.0)  # detection is untouched, only association suffers


def test_untracked_and_mislabelled_detections_are_not_matches(gt, tmp_path):
    records = list(read_records(gt))
    for record in records:
        for i, o in enumerate(record["instances"]):
            if i == 0:
                o["id"] = None  # not a track: left out
            elif i == 1:
                o["label"] = "hexagon"  # a track of the wrong class: a false positive and a miss
    metrics = evaluate_tracking(write(tmp_path / "pred.jsonl", records), gt)
    assert metrics["deta"] < 1.0 and metrics["mota"] < 1.0
    assert "hexagon" in metrics["unique_counts"]


def test_tracks_of_objects_too_faint_to_be_ground_truth_are_left_out(gt, tmp_path):
    # One object made "faint" in the ground truth (moved to its ignore regions): a tracker that follows it
    # is neither rewarded nor penalised; without the ignore regions the same track is a false positive.
    records = list(read_records(gt))
    faint_id = records[0]["instances"][0]["id"]
    faint_gt, unlisted_gt = [], []
    for record in records:
        rest = [o for o in record["instances"] if o["id"] != faint_id]
        sliver = [o for o in record["instances"] if o["id"] == faint_id]
        faint_gt.append({**record, "instances": rest, **({"ignore": sliver} if sliver else {})})
        unlisted_gt.append({**record, "instances": rest})
    pred = write(tmp_path / "pred.jsonl", records)  # the true tracks, the faint object's included
    ignored = evaluate_tracking(pred, write(tmp_path / "faint.jsonl", faint_gt))
    unlisted = evaluate_tracking(pred, write(tmp_path / "unlisted.jsonl", unlisted_gt))
    assert ignored["hota"] == pytest.approx(1.0) and ignored["mota"] == pytest.approx(1.0)
    assert unlisted["hota"] < 1.0 and unlisted["mota"] < 1.0
    # the faint object's track is not a predicted object either: unique counts agree only with the rule
    assert all(c["pred"] == c["gt"] for c in ignored["unique_counts"].values())
    assert any(c["pred"] > c["gt"] for c in unlisted["unique_counts"].values())


def test_gt_without_ids_has_no_tracking_metrics(gt, tmp_path):
    records = list(read_records(gt))
    for record in records:
        for o in record["instances"]:
            o["id"] = None
    plain = write(tmp_path / "plain.jsonl", records)
    assert evaluate_tracking(plain, plain) is None


def test_eval_command_reports_tracking_in_json_and_table(gt):
    from .test_segment import run_cli

    result = run_cli("eval", gt, gt, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["hota"] == pytest.approx(1.0) and metrics["mask_ap"] == pytest.approx(1.0)
    assert {"idf1", "mota", "id_switches", "box", "unique_counts"} <= metrics.keys()
    table = run_cli("eval", gt, gt)
    assert table.returncode == 0 and "HOTA" in table.stdout and "ID switches" in table.stdout
