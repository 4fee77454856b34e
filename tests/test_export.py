"""MOT, MOTS and YouTube-VIS exports of tracks, checked with the readers other tools use."""

import configparser
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from streamseg.errors import InputError
from streamseg.export import export
from streamseg.formats import encode_masks, read_records
from streamseg.instances import Instances


def overlapping_run(tmp_path):
    """Three frames, two tracked squares overlapping in the middle one, plus one untracked detection."""
    records = []
    for frame in range(3):
        masks = np.zeros((3, 40, 60), bool)
        masks[0, 5:25, 5 + 10 * frame : 25 + 10 * frame] = True
        masks[1, 10:30, 25:45] = True
        masks[2, 30:38, 0:8] = True
        rles = encode_masks(Instances.from_masks(np.zeros((3, 4), np.float32), np.ones(3, np.float32),
                                                 np.ones(3, np.int64), masks))
        objects = [
            {"id": 7, "label": "circle", "class_id": 1, "score": 0.9, "box": [5 + 10 * frame, 5, 25 + 10 * frame, 25],
             "area": 400, "mask": rles[0]},
            {"id": 3, "label": "rectangle", "class_id": 2, "score": 0.8, "box": [25, 10, 45, 30], "area": 400,
             "mask": rles[1]},
            {"id": None, "label": "circle", "class_id": 1, "score": 0.5, "box": [0, 30, 8, 38], "area": 64,
             "mask": rles[2]},
        ]
        records.append({"frame": frame, "time": frame / 30, "width": 60, "height": 40, "instances": objects})
    path = tmp_path / "frames.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_mot_rows_are_one_based_xywh(tmp_path):
    out = export(overlapping_run(tmp_path), "mot")
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert len(rows) == 6  # the untracked detection is not a track
    assert rows[0] == ["1", "7", "5.00", "5.00", "20.00", "20.00", "0.9000", "-1", "-1", "-1"]
    assert {r[0] for r in rows} == {"1", "2", "3"}


def test_mots_masks_are_disjoint_and_trackeval_reads_them(tmp_path):
    from trackeval.datasets import MOTSChallenge

    frames = overlapping_run(tmp_path)
    # TrackEval's layout: GT and tracker files of one sequence "clip" (the export serves as both).
    gt_dir, tracker_dir = tmp_path / "gt" / "clip" / "gt", tmp_path / "trackers" / "ours" / "data"
    gt_dir.mkdir(parents=True)
    tracker_dir.mkdir(parents=True)
    export(frames, "mots", tracker_dir / "clip.txt")
    export(frames, "mots", gt_dir / "gt.txt")
    seqinfo = configparser.ConfigParser()
    seqinfo["Sequence"] = {"seqLength": "3", "imWidth": "60", "imHeight": "40"}
    with (gt_dir.parent / "seqinfo.ini").open("w") as fh:
        seqinfo.write(fh)
    dataset = MOTSChallenge({"GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
                             "SKIP_SPLIT_FOL": True, "SEQ_INFO": {"clip": 3}, "PRINT_CONFIG": False})
    raw = dataset._load_raw_file("ours", "clip", is_gt=False)  # raises on overlapping masks
    assert [len(ids) for ids in raw["tracker_ids"]] == [2, 2, 2]
    middle = [mask_utils.decode(m).astype(bool) for m in raw["tracker_dets"][1]]
    assert not (middle[0] & middle[1]).any()
    assert middle[0].sum() == 400 and middle[1].sum() == 400 - 15 * 10  # the surer object keeps the overlap


def test_ytvis_has_one_entry_per_track_with_a_mask_per_frame(tmp_path):
    out = export(overlapping_run(tmp_path), "ytvis")
    results = json.loads(out.read_text())
    assert [(r["track_id"], r["category_id"], len(r["segmentations"])) for r in results] == [(3, 2, 3), (7, 1, 3)]
    first = results[1]["segmentations"][0]
    assert mask_utils.decode({"size": first["size"], "counts": first["counts"].encode()}).sum() == 400


def test_export_of_a_real_run_keeps_every_tracked_instance(tmp_path, synth_clip):
    gt = synth_clip.with_name("clip.gt.jsonl")
    rows = export(gt, "mot", tmp_path / "gt.mot.txt").read_text().splitlines()
    assert len(rows) == sum(len(r["instances"]) for r in read_records(gt))


def test_bad_format_and_empty_file_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown export format"):
        export(overlapping_run(tmp_path), "coco")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="no frame records"):
        export(empty, "mot")
