"""Training data: a COCO-format folder or the endless synthetic world, both as ``(image, Instances)``.

Items are numpy (RGB uint8 image, ground truth with contiguous class ids, 0 = background) so that
datasets stay independent of the model; :func:`collate` turns a batch into the lists of tensors and
target dicts that torchvision's detection models take in training mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from . import synth
from .errors import InputError
from .geometry import boxes_from_masks
from .instances import Instances

ANNOTATIONS_FILE = "annotations.json"
# COCO coordinates refer to the stored pixels; OpenCV would otherwise rotate by the EXIF tag.
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


@dataclass
class _Object:
    label: int  # contiguous class id, 1..K
    segmentation: list | dict


@dataclass
class _Image:
    image_id: Any
    path: Path
    size: tuple[int, int] | None  # (height, width) as declared in the JSON, checked against the file
    objects: list[_Object]


def _field(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise InputError(f"{where} has no '{key}'")
    return record[key]


def _list_field(record: Any, key: str, where: str) -> list:
    value = _field(record, key, where)
    if not isinstance(value, list):
        raise InputError(f"{where}: '{key}' must be a list")
    return value


def _check_segmentation(segmentation: Any, where: str) -> None:
    """Reject what pycocotools could not decode now, at load time, rather than inside a loader worker."""
    if isinstance(segmentation, list):
        if all(isinstance(p, list) and all(isinstance(v, (int, float)) for v in p) for p in segmentation):
            return
    elif isinstance(segmentation, dict) and "size" in segmentation:
        if isinstance(segmentation.get("counts"), (list, str)):
            return
    raise InputError(f"{where}: segmentation is neither polygons nor RLE")


def _decode_segmentation(segmentation: list | dict, height: int, width: int, where: str) -> np.ndarray:
    """One (H, W) bool mask from COCO polygons, uncompressed RLE or compressed RLE."""
    if isinstance(segmentation, list):
        # Fewer than 3 points enclose nothing, and pycocotools would read a 4-number polygon as a box.
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    else:
        if list(segmentation["size"]) != [height, width]:
            raise InputError(f"{where}: RLE size {segmentation['size']} does not match the image ({height}x{width})")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), IMREAD_FLAGS)
    if image is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CocoDataset(Dataset):
    """A COCO-format instance segmentation dataset: DIR/annotations.json and its images.

    An image's ``file_name`` is looked up relative to DIR, then under DIR/images/.
    Category ids are mapped to contiguous 1..K in ascending id order; ``class_names`` is
    "__background__" followed by the category names in that order. Crowd annotations
    (``iscrowd=1``) are skipped: they mark a group of objects as one region, and torchvision's
    Mask R-CNN has no ignore regions, so training on them would teach it to merge objects.
    Annotations whose mask is empty are dropped; images without annotations stay, as negatives.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        path = root / ANNOTATIONS_FILE
        if not root.is_dir():
            raise InputError(f"dataset directory {root} does not exist")
        if not path.is_file():
            raise InputError(f"{root} has no {ANNOTATIONS_FILE}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path} must hold a JSON object with images, annotations and categories")

        categories = _list_field(data, "categories", str(path))
        names_by_id: dict[int, str] = {}
        for k, category in enumerate(categories):
            where = f"{path}: categories[{k}]"
            category_id, name = _field(category, "id", where), _field(category, "name", where)
            if not isinstance(category_id, int):
                raise InputError(f"{where}: category id must be an integer, got {category_id!r}")
            if category_id in names_by_id:
                raise InputError(f"{where}: duplicate category id {category_id}")
            names_by_id[category_id] = str(name)
        ordered_ids = sorted(names_by_id)
        label_of = {category_id: label for label, category_id in enumerate(ordered_ids, start=1)}
        self.class_names: tuple[str, ...] = ("__background__", *(names_by_id[i] for i in ordered_ids))

        self._images: list[_Image] = []
        by_id: dict[Any, _Image] = {}
        for k, record in enumerate(_list_field(data, "images", str(path))):
            where = f"{path}: images[{k}]"
            image_id, file_name = _field(record, "id", where), str(_field(record, "file_name", where))
            if image_id in by_id:
                raise InputError(f"{where}: duplicate image id {image_id}")
            candidates = [root / file_name, root / "images" / file_name]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise InputError(f"image {file_name} not found in {root} or {root / 'images'}")
            size = (int(record["height"]), int(record["width"])) if "height" in record and "width" in record else None
            by_id[image_id] = _Image(image_id, found, size, [])
            self._images.append(by_id[image_id])

        for k, annotation in enumerate(_list_field(data, "annotations", str(path))):
            where = f"{path}: annotations[{k}]"
            image_id = _field(annotation, "image_id", where)
            category_id = _field(annotation, "category_id", where)
            segmentation = _field(annotation, "segmentation", where)
            if image_id not in by_id:
                raise InputError(f"{where}: unknown image_id {image_id}")
            if category_id not in label_of:
                raise InputError(f"{where}: unknown category_id {category_id}")
            if annotation.get("iscrowd", 0):
                continue
            _check_segmentation(segmentation, where)
            by_id[image_id].objects.append(_Object(label_of[category_id], segmentation))

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Instances]:
        entry = self._images[i]
        image = _read_image(entry.path)
        height, width = image.shape[:2]
        if entry.size is not None and entry.size != (height, width):
            raise InputError(
                f"image {entry.path} is {height}x{width} but annotations.json says {entry.size[0]}x{entry.size[1]}"
            )
        where = f"annotations of image {entry.path}"
        masks = [_decode_segmentation(o.segmentation, height, width, where) for o in entry.objects]
        keep = [j for j, mask in enumerate(masks) if mask.any()]
        if not keep:
            gt = Instances.empty(height, width, frame_index=i)
        else:
            stacked = np.stack([masks[j] for j in keep])
            gt = Instances.from_masks(
                boxes=boxes_from_masks(stacked),
                scores=np.ones(len(keep), np.float32),
                class_ids=np.array([entry.objects[j].label for j in keep], np.int64),
                masks=stacked,
                frame_index=i,
            )
        gt.extra["image_id"] = entry.image_id
        return image, gt


class SynthDataset(IterableDataset):
    """Endless independent synthetic scenes, seeded; different DataLoader workers get different streams.

    Each worker draws from a generator seeded with (seed, worker id), and every new iteration
    starts its stream over, so a seed and a worker count reproduce the same batches.
    """

    class_names = synth.CLASS_NAMES

    def __init__(self, seed: int, height: int = 360, width: int = 640):
        if seed < 0:
            raise InputError(f"seed must be non-negative, got {seed}")
        self.seed, self.height, self.width = seed, height, width

    def __iter__(self) -> Iterator[tuple[np.ndarray, Instances]]:
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, 0 if worker is None else worker.id])
        while True:
            yield synth.random_scene(rng, self.height, self.width)


def to_target(gt: Instances) -> dict[str, torch.Tensor]:
    """torchvision's Mask R-CNN training target: boxes float32 (N, 4), labels int64 (N,), masks uint8 (N, H, W)."""
    return {
        "boxes": torch.from_numpy(np.ascontiguousarray(gt.boxes, np.float32)),
        "labels": torch.from_numpy(np.ascontiguousarray(gt.class_ids, np.int64)),
        "masks": torch.from_numpy(np.ascontiguousarray(gt.masks, np.uint8)),
    }


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB to (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


def collate(batch: list[tuple[np.ndarray, Instances]]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """DataLoader ``collate_fn``: images differ in size, so they stay a list, as detection models want."""
    return [to_tensor(image) for image, _ in batch], [to_target(gt) for _, gt in batch]
