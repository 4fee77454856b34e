"""Where a run's "background" detections lie: those no true object overlaps (mask IoU under 0.1).

    .venv/bin/python benchmarks/background_detections.py RUN/frames.jsonl CLIP.gt.jsonl

Prints how many there are by class, how many touch the frame's edge or any true box, their box
areas, and the 20-px cells they gather in (a run of cells along a path is a moving object the
ground truth does not have, e.g. one under the clip's 30-pixel visibility floor). docs/models.md
("Where the background detections come from") reports it for the model card's clips.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
from pycocotools import mask as mask_utils

from streamseg.formats import read_records

BACKGROUND_IOU = 0.1  # the evaluation's breakdown calls a detection "background" below this IoU with every true object
CELL = 20


def _rles(instances: list[dict]) -> list[dict]:
    return [{"size": i["mask"]["size"], "counts": i["mask"]["counts"].encode()} for i in instances]


def background_detections(predictions: str, truth: str) -> list[dict]:
    """The predicted instances (with their frame's size) that overlap no true object."""
    frames = {record["frame"]: record for record in read_records(truth)}
    found = []
    for record in read_records(predictions):
        ours, true = record["instances"], frames.get(record["frame"], {"instances": []})["instances"]
        if not ours:
            continue
        ious = mask_utils.iou(_rles(ours), _rles(true), [0] * len(true)) if true else np.zeros((len(ours), 0))
        for instance, row in zip(ours, np.atleast_2d(ious)):
            if not len(true) or row.max() < BACKGROUND_IOU:
                found.append({**instance, "frame": record["frame"], "width": record["width"],
                              "height": record["height"], "true_boxes": [t["box"] for t in true]})
    return found


def _overlaps(box: list[float], others: list[list[float]]) -> bool:
    return any(min(box[2], o[2]) > max(box[0], o[0]) and min(box[3], o[3]) > max(box[1], o[1]) for o in others)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions")
    parser.add_argument("truth")
    args = parser.parse_args()
    found = background_detections(args.predictions, args.truth)
    print(f"{len(found)} background detections:", dict(collections.Counter(d["label"] for d in found)))
    if not found:
        return
    edge = sum(d["box"][0] < 3 or d["box"][1] < 3 or d["box"][2] > d["width"] - 3 or d["box"][3] > d["height"] - 3
               for d in found)
    touching = sum(_overlaps(d["box"], d["true_boxes"]) for d in found)
    areas = [(d["box"][2] - d["box"][0]) * (d["box"][3] - d["box"][1]) for d in found]
    print(f"at the frame's edge {edge}, touching a true box {touching}, box area quartiles (px²)",
          np.percentile(areas, [25, 50, 75]).round().astype(int).tolist())
    cells = collections.Counter((int((d["box"][0] + d["box"][2]) / 2) // CELL * CELL,
                                 int((d["box"][1] + d["box"][3]) / 2) // CELL * CELL) for d in found)
    print("most frequent cells (x, y): count", cells.most_common(8))


if __name__ == "__main__":
    main()
