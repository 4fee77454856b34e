"""Our tracker against SORT, ByteTrack and OC-SORT (the `trackers` package) on identical detections.

    .venv/bin/pip install -e '.[bench]'          # the peers: trackers (and supervision)
    .venv/bin/python benchmarks/tracking.py       # writes runs/bench/trackers.json and prints a table

For each synthetic scenario (seeded clips under runs/bench/trackers/) the shipped model runs once
with tracking off and a low score threshold; every tracker then gets exactly those detections, and
all are scored by the same TrackEval call (`streamseg eval`'s), on masks. Counts are checked too:
distinct objects per class (each id seen in at least `count_hits` frames counted once, under the
class it was seen as most: the rule of our summary's count, applied to every tracker) and crossings
of the centre line, against the clip's true counts (`clip.gt.summary.json`).

(Not named trackers.py: run as a script, that name would shadow the `trackers` package it imports.)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from streamseg.count import LineZoneCounter, parse_lines
from streamseg.evaluate_tracks import evaluate_tracking
from streamseg.formats import instances_to_record
from streamseg.pipeline import segment
from streamseg.sinks import JsonlWriter
from streamseg.synth import CLASS_NAMES, write_clip
from streamseg.track import Tracker, TrackerConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench" / "trackers"
SCENARIOS = {"crossing": 8, "occlusion": 6, "crowd": 14, "enter-exit": 8}  # scenario -> objects
DETECTION_SCORE = 0.3  # low enough for ByteTrack-style second stages to have something to rescue


def detections_of(clip: Path, model: str = "shapes") -> list:
    run = segment(str(clip), model=model, track=False, video=False, json=False, score_threshold=DETECTION_SCORE,
                  device="cpu")
    return [result.instances for result in run]


class PeerTracker:
    """A `trackers` tracker fed our Instances; its ids and our masks come back as Instances."""

    def __init__(self, tracker):
        self.tracker = tracker

    def update(self, found):
        import supervision as sv

        detections = sv.Detections(xyxy=found.boxes.astype(float), confidence=found.scores.astype(float),
                                   class_id=found.class_ids, data={"index": np.arange(len(found))})
        tracked = self.tracker.update(detections)
        ids = np.full(len(found), -1, np.int64)
        for index, track_id in zip(tracked.data["index"], tracked.tracker_id):
            ids[index] = track_id + 1 if track_id >= 0 else -1  # theirs count from 0; ours use -1 for none
        result = found.select(np.arange(len(found)))
        result.track_ids = ids
        return result


def trackers_to_compare() -> dict:
    trackers = {"streamseg": Tracker}
    try:
        from trackers import ByteTrackTracker, OCSORTTracker, SORTTracker
    except ImportError:
        print("the `trackers` package is not installed (pip install -e '.[bench]'): comparing ours alone")
        return trackers
    trackers.update({"sort": lambda: PeerTracker(SORTTracker()), "bytetrack": lambda: PeerTracker(ByteTrackTracker()),
                     "ocsort": lambda: PeerTracker(OCSORTTracker())})
    return trackers


def score(name: str, make, frames: list, gt_path: Path, truth: dict, work: Path) -> dict:
    tracker, counter = make(), LineZoneCounter(parse_lines([truth["line"]]), [], CLASS_NAMES)
    tracked, seconds = [], 0.0
    for found in frames:
        started = time.perf_counter()
        tracked.append(tracker.update(found))
        seconds += time.perf_counter() - started
    pred = work / f"{name}.jsonl"
    with JsonlWriter(pred) as writer:
        for instances in tracked:
            writer.write(instances_to_record(instances, CLASS_NAMES))
            counter.update(instances)
    metrics = evaluate_tracking(pred, gt_path)
    return {
        "hota": round(metrics["hota"], 4), "idf1": round(metrics["idf1"], 4), "mota": round(metrics["mota"], 4),
        "id_switches": metrics["id_switches"], "fps": round(len(frames) / seconds, 1),
        "unique_error": _count_error(_distinct_objects(tracked), truth["counts"]["unique"]),
        "line_error": sum(_count_error(counter.totals().to_dict()["lines"]["centre"][d], truth["counts"]["lines"]["centre"][d])
                          for d in ("in", "out")),
    }


def _distinct_objects(tracked: list, min_frames: int = TrackerConfig().count_hits) -> dict[str, int]:
    seen: dict[int, Counter] = {}
    for instances in tracked:
        for track_id, class_id in zip(instances.track_ids.tolist(), instances.class_ids.tolist()):
            if track_id >= 0:
                seen.setdefault(track_id, Counter())[class_id] += 1
    return dict(Counter(CLASS_NAMES[votes.most_common(1)[0][0]] for votes in seen.values()
                        if votes.total() >= min_frames))


def _count_error(predicted: dict[str, int], true: dict[str, int]) -> int:
    return sum(abs(predicted.get(label, 0) - true.get(label, 0)) for label in predicted.keys() | true.keys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed-base", type=int, default=4242, help="Scenario i uses seed BASE + i (4242: the table's "
                        "first set; 5252: the held-out set).")
    parser.add_argument("--model", default="shapes", help="The detector every tracker is fed (default: the shipped one).")
    args = parser.parse_args()
    out = OUT if args.seed_base == 4242 else OUT.with_name(f"trackers-{args.seed_base}")
    out.mkdir(parents=True, exist_ok=True)
    trackers, results = trackers_to_compare(), {}
    for offset, (scenario, objects) in enumerate(SCENARIOS.items()):
        clip = out / f"{scenario}.mp4"
        gt_path = write_clip(clip, args.frames, seed=args.seed_base + offset, objects=objects, scenario=scenario)
        truth = json.loads(clip.with_name(f"{scenario}.gt.summary.json").read_text())
        frames = detections_of(clip, args.model)
        results[scenario] = {name: score(name, make, frames, gt_path, truth, out) for name, make in trackers.items()}
        for name, row in results[scenario].items():
            print(f"{scenario:11s} {name:10s} " + " ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    names = list(trackers)
    results["mean"] = {name: {key: round(float(np.mean([results[s][name][key] for s in SCENARIOS])), 4)
                              for key in ("hota", "idf1", "mota", "id_switches")} for name in names}
    (out.parent / f"{out.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["mean"], indent=2))


if __name__ == "__main__":
    main()
