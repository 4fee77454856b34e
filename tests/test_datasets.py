"""Training datasets: COCO folders decode to the exact pixels annotated; the synthetic stream is reproducible."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from streamseg import synth
from streamseg.datasets import CocoDataset, SynthDataset, collate, to_target, to_tensor
from streamseg.errors import InputError
from streamseg.instances import Instances

# Category ids deliberately out of order and with gaps: "boat" (3) must become class 1, "kite" (7) class 2.
CATEGORIES = [{"id": 7, "name": "kite"}, {"id": 3, "name": "boat"}]
BOAT, KITE = 1, 2


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's counts list: alternating run lengths of 0s and 1s in column-major order, starting with 0s."""
    counts, value, run = [], 0, 0
    for pixel in mask.flatten(order="F"):
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.fixture
def coco(tmp_path: Path) -> dict:
    """Three images: polygons (a.png), RLEs and a crowd region (images/b.png), no annotations (c.png)."""
    rng = np.random.default_rng(0)
    pixels = {name: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for name, h, w in
              [("a.png", 12, 16), ("b.png", 10, 14), ("c.png", 8, 8)]}
    _write_png(tmp_path / "a.png", pixels["a.png"])
    _write_png(tmp_path / "images" / "b.png", pixels["b.png"])  # found through the images/ fallback
    _write_png(tmp_path / "c.png", pixels["c.png"])

    kite_a = np.zeros((12, 16), bool)
    kite_a[3:8, 2:10] = True  # the integer-corner polygon below covers pixels [2, 10) x [3, 8)
    boat_a = np.zeros((12, 16), bool)
    boat_a[0:2, 0:2] = True
    boat_a[9:11, 12:15] = True
    boat_b = np.zeros((10, 14), bool)
    boat_b[1:9, 1:3] = True
    boat_b[7:9, 3:8] = True  # an L: its box is not any single rectangle drawn
    kite_b = np.zeros((10, 14), bool)
    kite_b[2:5, 9:13] = True
    kite_b[0, 13] = True

    annotations = [
        {"image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]]},
        {"image_id": 1, "category_id": 3, "iscrowd": 0,
         "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2], [12, 9, 15, 9, 15, 11, 12, 11]]},
        {"image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 1, 3, 3]]},  # encloses nothing
        {"image_id": 2, "category_id": 3, "iscrowd": 0, "segmentation": _uncompressed_rle(boat_b)},
        {"image_id": 2, "category_id": 3, "iscrowd": 1, "segmentation": _uncompressed_rle(np.ones((10, 14), bool))},
        {"image_id": 2, "category_id": 7, "iscrowd": 0, "segmentation": _compressed_rle(kite_b)},
        {"image_id": 2, "category_id": 7, "iscrowd": 0, "segmentation": _compressed_rle(np.zeros((10, 14), bool))},
    ]
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 12, "width": 16},
            {"id": 2, "file_name": "b.png", "height": 10, "width": 14},
            {"id": 5, "file_name": "c.png"},
        ],
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    return {"root": tmp_path, "data": data, "pixels": pixels,
            "masks": {"a.png": [kite_a, boat_a], "b.png": [boat_b, kite_b]}}


def test_class_names_follow_category_ids(coco):
    assert CocoDataset(coco["root"]).class_names == ("__background__", "boat", "kite")


def test_items_decode_to_the_pixels_annotated(coco):
    dataset = CocoDataset(str(coco["root"]))
    assert len(dataset) == 3
    for index, name, labels in [(0, "a.png", [KITE, BOAT]), (1, "b.png", [BOAT, KITE])]:
        image, gt = dataset[index]
        np.testing.assert_array_equal(image, coco["pixels"][name])  # RGB, not OpenCV's BGR
        assert gt.class_ids.tolist() == labels  # crowd and empty annotations are gone, order kept
        np.testing.assert_array_equal(gt.masks, np.stack(coco["masks"][name]))
        assert gt.boxes.dtype == np.float32 and gt.masks.dtype == bool and gt.class_ids.dtype == np.int64
        assert gt.boxes.tolist() == [_box(m) for m in coco["masks"][name]]
        assert gt.frame_index == index
    assert dataset[1][1].extra["image_id"] == 2


def test_image_without_annotations_is_a_negative(coco):
    image, gt = CocoDataset(coco["root"])[2]
    assert image.shape == (8, 8, 3)
    assert len(gt) == 0 and gt.masks.shape == (0, 8, 8) and gt.boxes.shape == (0, 4)


def _rewrite(coco: dict, change) -> Path:
    data = json.loads(json.dumps(coco["data"]))
    change(data)
    (coco["root"] / "annotations.json").write_text(json.dumps(data))
    return coco["root"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("categories"), "no 'categories'"),
        (lambda d: d["images"][0].pop("file_name"), "images[0] has no 'file_name'"),
        (lambda d: d["annotations"][3].pop("segmentation"), "annotations[3] has no 'segmentation'"),
        (lambda d: d["annotations"][0].update(category_id=4), "unknown category_id 4"),
        (lambda d: d["annotations"][0].update(image_id=9), "unknown image_id 9"),
        (lambda d: d["annotations"][0].update(segmentation={"counts": 3}), "neither polygons nor RLE"),
        (lambda d: d["images"][2].update(file_name="missing.png"), "missing.png"),
    ],
)
def test_bad_annotations_are_input_errors(coco, change, message):
    with pytest.raises(InputError, match=re.escape(message)):
        CocoDataset(_rewrite(coco, change))


def test_missing_directory_or_annotations(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        CocoDataset(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no annotations.json"):
        CocoDataset(tmp_path)


def test_broken_json(tmp_path):
    (tmp_path / "annotations.json").write_text('{"images": [')
    with pytest.raises(InputError, match="not valid JSON"):
        CocoDataset(tmp_path)


def test_unreadable_or_mismatched_image_fails_on_access(coco):
    (coco["root"] / "c.png").write_bytes(b"not a png")
    dataset = CocoDataset(coco["root"])
    with pytest.raises(InputError, match="cannot read image .*c.png"):
        dataset[2]
    dataset = CocoDataset(_rewrite(coco, lambda d: d["images"][0].update(height=13)))
    with pytest.raises(InputError, match="a.png is 12x16 but annotations.json says 13x16"):
        dataset[0]


def _first(dataset: SynthDataset, count: int) -> list[tuple[np.ndarray, Instances]]:
    return [item for item, _ in zip(dataset, range(count))]


def _same(a: tuple[np.ndarray, Instances], b: tuple[np.ndarray, Instances]) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1].masks, b[1].masks) and \
        np.array_equal(a[1].class_ids, b[1].class_ids)


def test_synth_stream_is_reproducible():
    dataset = SynthDataset(seed=3, height=48, width=64)
    assert dataset.class_names == synth.CLASS_NAMES
    first, again = _first(dataset, 2), _first(SynthDataset(seed=3, height=48, width=64), 2)
    assert all(_same(a, b) for a, b in zip(first, again))
    assert not _same(first[0], first[1])
    assert not _same(first[0], _first(SynthDataset(seed=4, height=48, width=64), 1)[0])
    image, gt = first[0]
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and gt.masks.shape[1:] == (48, 64)


def _only_item(batch: list) -> tuple[np.ndarray, Instances]:
    return batch[0]


def test_synth_workers_draw_different_streams():
    dataset = SynthDataset(seed=3, height=32, width=48)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=_only_item)
    from_worker0, from_worker1 = _first(loader, 2)  # the loader alternates between workers
    assert not _same(from_worker0, from_worker1)
    assert _same(from_worker0, _first(dataset, 1)[0])  # worker 0 continues the single-process stream


def test_to_tensor():
    image = np.array([[[0, 128, 255]]], np.uint8)
    tensor = to_tensor(image)
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    assert tensor.flatten().tolist() == pytest.approx([0.0, 128 / 255, 1.0])


def test_collate_gives_torchvision_training_targets(coco):
    dataset = CocoDataset(coco["root"])
    images, targets = collate([dataset[1], dataset[2]])
    assert [tuple(i.shape) for i in images] == [(3, 10, 14), (3, 8, 8)]
    assert all(i.dtype == torch.float32 and 0 <= float(i.min()) and float(i.max()) <= 1 for i in images)
    for target, n, size in zip(targets, [2, 0], [(10, 14), (8, 8)]):
        # The documented Mask R-CNN training target: boxes FloatTensor[N, 4], labels Int64Tensor[N],
        # masks UInt8Tensor[N, H, W].
        assert set(target) == {"boxes", "labels", "masks"}
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
        assert target["labels"].dtype == torch.int64 and target["labels"].shape == (n,)
        assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, *size)
    assert targets[0]["labels"].tolist() == [BOAT, KITE]
    assert torch.equal(targets[0]["masks"].bool(), torch.from_numpy(np.stack(coco["masks"]["b.png"])))
    # torchvision's own input stage accepts and rescales the targets consistently with the images.
    transform = GeneralizedRCNNTransform(20, 40, [0.5] * 3, [0.25] * 3)
    batch, resized = transform(images, targets)
    assert resized[0]["masks"].shape[-2:] == tuple(batch.image_sizes[0])


def test_to_target_of_synthetic_scene():
    _, gt = _first(SynthDataset(seed=0, height=40, width=56), 1)[0]
    target = to_target(gt)
    assert target["masks"].shape == (len(gt), 40, 56) and target["labels"].tolist() == gt.class_ids.tolist()
    assert torch.equal(target["boxes"], torch.from_numpy(gt.boxes))
