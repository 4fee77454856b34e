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
    encode_crop,
    encode_masks,
    instances_to_record,
    read_records,
    record_to_instances,
)
from streamseg.instances import Instances

NAMES = ("__background__", "circle", "rectangle", "triangle")


def _full_frame(crop, box, height, width):
    mask = np.zeros((height, width), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = crop
    return mask


@st.composite
def crops_in_frames(draw):
    """A frame size, a box inside it (touching any border, or the whole frame) and a crop for it."""
    height, width = draw(st.integers(1, 23)), draw(st.integers(1, 31))
    x0, x1 = sorted(draw(st.lists(st.integers(0, width), min_size=2, max_size=2)))
    y0, y1 = sorted(draw(st.lists(st.integers(0, height), min_size=2, max_size=2)))
    if draw(st.booleans()):
        y0, y1 = 0, height  # runs that wrap from one column's foot to the next column's head
    fill = draw(st.sampled_from(["random", "empty", "full"]))
    shape = (y1 - y0, x1 - x0)
    crop = draw(arrays(bool, shape)) if fill == "random" else np.full(shape, fill == "full")
    return crop, (x0, y0, x1, y1), height, width


@settings(max_examples=300, deadline=None)
@given(crops_in_frames())
def test_rle_from_a_crop_is_byte_for_byte_pycocotools_of_the_full_frame(case):
    crop, box, height, width = case
    ours = encode_crop(crop, box, height, width)
    theirs = mask_utils.encode(np.asfortranarray(_full_frame(crop, box, height, width).astype(np.uint8)))
    assert ours == {"size": [height, width], "counts": theirs["counts"].decode("ascii")}
    json.dumps(ours)  # JSON-ready: counts are str


@pytest.mark.parametrize("box", [(0, 0, 20, 12), (0, 0, 0, 0), (19, 11, 20, 12), (0, 0, 20, 1), (0, 0, 1, 12)])
@pytest.mark.parametrize("fill", [False, True])
def test_rle_of_frame_corners_empty_and_full(box, fill):
    x0, y0, x1, y1 = box
    crop = np.full((y1 - y0, x1 - x0), fill)
    theirs = mask_utils.encode(np.asfortranarray(_full_frame(crop, box, 12, 20).astype(np.uint8)))
    assert encode_crop(crop, box, 12, 20)["counts"] == theirs["counts"].decode("ascii")


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(0, 4), st.integers(1, 23), st.integers(1, 31))))
def test_rle_round_trip_through_instances(masks):
    n = len(masks)
    found = Instances.from_masks(np.zeros((n, 4), np.float32), np.ones(n, np.float32), np.ones(n, np.int64), masks)
    decoded = decode_masks(encode_masks(found), masks.shape[1], masks.shape[2])
    assert decoded.shape == masks.shape and np.array_equal(decoded, masks)
    assert np.array_equal(found.masks, masks) and np.array_equal(found.areas, masks.sum(axis=(1, 2)))


def _instances(n=2, h=30, w=40, ids=None):
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        masks[i, 2 + i : 10 + i, 3 : 12 + 2 * i] = True
    return Instances.from_masks(
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
