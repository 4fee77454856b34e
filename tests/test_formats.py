import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from streamseg.errors import InputError
from streamseg.formats import (
    decode_masks,
    dumps,
    encode_masks,
    instances_to_record,
    read_records,
    record_to_instances,
)
from streamseg.instances import Instances

NAMES = ("__background__", "circle", "rectangle", "triangle")


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(0, 4), st.integers(1, 23), st.integers(1, 31))))
def test_rle_round_trip(masks):
    rles = encode_masks(masks)
    json.dumps(rles)  # JSON-ready: counts are str
    decoded = decode_masks(rles, masks.shape[1], masks.shape[2])
    assert decoded.shape == masks.shape
    assert np.array_equal(decoded, masks)


def test_rle_is_exactly_pycocotools_encoding():
    mask = np.zeros((12, 20), bool)
    mask[3:9, 5:17] = True
    ours = encode_masks(mask[None])[0]
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours == {"size": [12, 20], "counts": theirs["counts"].decode()}
    assert np.array_equal(mask_utils.decode({"size": ours["size"], "counts": ours["counts"]}).astype(bool), mask)


def _instances(n=2, h=30, w=40, ids=None):
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        masks[i, 2 + i : 10 + i, 3 : 12 + 2 * i] = True
    return Instances(
        boxes=np.array([[3, 2 + i, 12 + 2 * i, 10 + i] for i in range(n)], np.float32).reshape(-1, 4),
        scores=np.linspace(0.9, 0.6, n).astype(np.float32),
        class_ids=np.arange(1, n + 1, dtype=np.int64),
        masks=masks,
        frame_index=12,
        time=0.4004,
        track_ids=ids,
    )


def test_record_schema_and_round_trip():
    inst = _instances(ids=np.array([7, -1]))
    record = instances_to_record(inst, NAMES)
    assert set(record) == {"frame", "time", "width", "height", "instances"}
    assert (record["frame"], record["time"], record["width"], record["height"]) == (12, 0.4004, 40, 30)
    first, second = record["instances"]
    assert set(first) == {"id", "label", "class_id", "score", "box", "area", "mask"}
    assert (first["id"], first["label"], first["class_id"]) == (7, "circle", 1)
    assert second["id"] is None and second["label"] == "rectangle"
    assert first["area"] == int(inst.masks[0].sum())
    back = record_to_instances(json.loads(dumps(record)))
    assert np.array_equal(back.masks, inst.masks)
    assert np.allclose(back.boxes, inst.boxes)
    assert back.track_ids.tolist() == [7, -1]


def test_untracked_record_has_null_ids():
    record = instances_to_record(_instances(ids=None), NAMES)
    assert [o["id"] for o in record["instances"]] == [None, None]
    assert record_to_instances(record).track_ids is None


def test_reader_skips_a_truncated_last_line(tmp_path):
    lines = [dumps(instances_to_record(_instances(), NAMES) | {"frame": i}) for i in range(3)]
    path = tmp_path / "frames.jsonl"
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    assert [r["frame"] for r in read_records(path)] == [0, 1]


def test_reader_rejects_a_broken_line_in_the_middle(tmp_path):
    path = tmp_path / "frames.jsonl"
    path.write_text('{"frame": 0, "instances": []}\n{"frame": 1,\n{"frame": 2, "instances": []}\n')
    with pytest.raises(InputError, match=":2:"):
        list(read_records(path))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=6), st.integers(0, 60))
def test_reader_survives_any_cut(frames, cut):
    text = "".join(dumps({"frame": f, "time": 0.0, "width": 1, "height": 1, "instances": []}) + "\n" for f in frames)
    cut_at = max(0, len(text) - cut)
    path_text = text[:cut_at]
    complete = path_text.count("\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jsonl"
        path.write_text(path_text)
        got = [r["frame"] for r in read_records(path)]
    # Every newline-terminated line is read; a cut-short last line may parse only if it is whole JSON.
    assert got[:complete] == frames[:complete]
    assert len(got) in (complete, complete + 1)


def test_reader_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_records(tmp_path / "missing.jsonl"))
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError):
        list(read_records(tmp_path / "bin.jsonl"))
