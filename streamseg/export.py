"""Tracks from ``frames.jsonl`` in the formats other tools read.

- ``mot``: MOTChallenge txt, ``frame,id,x,y,w,h,score,-1,-1,-1`` with 1-based frames.
- ``mots``: MOTS txt (as TrackEval's MOTSChallenge reads it), ``frame id class_id height width rle``
  with 1-based frames; masks of one frame are made disjoint first (the higher score keeps a pixel),
  because MOTS forbids overlaps.
- ``ytvis``: YouTube-VIS results JSON, one entry per track with a mask (or null) for every frame.

Only tracked instances (those with an ``id``) are exported: these formats describe tracks.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .errors import InputError
from .formats import read_records
from .sinks import write_json_atomic

FORMATS = {"mot": ".mot.txt", "mots": ".mots.txt", "ytvis": ".ytvis.json"}


def export(frames_path: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write ``frames_path``'s tracks as ``fmt`` to ``out`` (default: beside it, e.g. frames.mot.txt)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    frames_path = Path(frames_path)
    records = list(read_records(frames_path))
    if not records:
        raise InputError(f"{frames_path}: no frame records to export")
    out = Path(out) if out is not None else frames_path.with_suffix(FORMATS[fmt])
    if fmt == "ytvis":
        write_json_atomic(out, ytvis_results(records))
    else:
        lines = mot_lines(records) if fmt == "mot" else mots_lines(records)
        temporary = out.with_name(out.name + ".tmp")
        temporary.write_text("".join(line + "\n" for line in lines))
        temporary.replace(out)
    return out


def _tracked(record: dict) -> list[dict]:
    return [o for o in record["instances"] if o.get("id") is not None]


def mot_lines(records: list[dict]) -> list[str]:
    lines = []
    for record in records:
        for o in _tracked(record):
            x1, y1, x2, y2 = o["box"]
            lines.append(f"{record['frame'] + 1},{o['id']},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                         f"{o['score']:.4f},-1,-1,-1")
    return lines


def mots_lines(records: list[dict]) -> list[str]:
    lines = []
    for record in records:
        objects = sorted(_tracked(record), key=lambda o: -o["score"])
        taken = np.zeros((record["height"], record["width"]), bool)
        for o in objects:
            mask = mask_utils.decode(_rle(o["mask"])).astype(bool) & ~taken
            if not mask.any():
                continue  # wholly covered by more confident objects: nothing left to report
            taken |= mask
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            lines.append(f"{record['frame'] + 1} {o['id']} {o['class_id']} {record['height']} {record['width']} "
                         f"{rle['counts'].decode()}")
    return lines


def ytvis_results(records: list[dict]) -> list[dict]:
    frames = [r["frame"] for r in records]
    position = {frame: i for i, frame in enumerate(frames)}
    tracks: dict = defaultdict(lambda: {"segmentations": [None] * len(frames), "scores": [], "labels": []})
    for record in records:
        for o in _tracked(record):
            track = tracks[o["id"]]
            track["segmentations"][position[record["frame"]]] = o["mask"]
            track["scores"].append(o["score"])
            track["labels"].append(o["class_id"])
    return [
        {
            "video_id": 1,
            "track_id": track_id,
            "category_id": max(set(t["labels"]), key=t["labels"].count),  # the class it was seen as most
            "score": round(float(np.mean(t["scores"])), 4),
            "segmentations": t["segmentations"],
        }
        for track_id, t in sorted(tracks.items())
    ]


def _rle(mask: dict) -> dict:
    return {"size": mask["size"], "counts": mask["counts"].encode()}
