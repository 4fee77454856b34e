"""Tracker time per frame at crowd scale: a synthetic scene's ground truth fed to the tracker as detections.

    .venv/bin/python benchmarks/tracker_speed.py                    # 50 objects, 640x360, 150 frames
    PYTHONPATH=../old .venv/bin/python benchmarks/tracker_speed.py  # the same with another checkout's code

Only ``Tracker.update`` is timed (median and mean over the frames after the first ten); the scene and
its ground truth are made once under runs/tracker-speed/. Ground-truth masks stand in for the model's,
every detection at score 0.9, so the figure is the tracker's alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from streamseg.formats import read_records, record_to_instances
from streamseg.synth import write_clip
from streamseg.track import Tracker

OUT = Path(__file__).resolve().parents[1] / "runs" / "tracker-speed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    clip = OUT / f"crowd-{args.objects}-{args.size}.mp4"
    gt = clip.with_name(clip.stem + ".gt.jsonl")
    if not gt.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        write_clip(clip, args.frames, width, height, seed=50, objects=args.objects)
    frames = []
    for record in read_records(gt):
        found = record_to_instances(record)
        found.scores[:] = 0.9
        found.track_ids = None
        frames.append(found)
    tracker, seconds = Tracker(), []
    for found in frames:
        started = time.perf_counter()
        tracker.update(found)
        seconds.append(time.perf_counter() - started)
    timed = seconds[10:]
    objects = statistics.mean(len(found) for found in frames)
    print(f"{len(frames)} frames, {objects:.1f} objects a frame: tracker median {statistics.median(timed) * 1000:.2f} ms, "
          f"mean {statistics.mean(timed) * 1000:.2f} ms per frame; {tracker.next_id - 1} ids")


if __name__ == "__main__":
    main()
