"""Soak: a long synthetic stream through the whole pipeline, watching memory, threads and tracker state.

    .venv/bin/python benchmarks/soak.py                      # 20,000 frames, shipped model, 320x180
    .venv/bin/python benchmarks/soak.py --frames 2000 --model runs/train/model.pt

Frames come from `streamseg.synth.SyntheticSource` (painted, no codec), and go through tracking,
rendering, H.264 encoding and JSONL writing into a scratch run directory, in async mode. Resident
memory is sampled every 100 frames; "growth" is the last sample minus the one at the end of the
warm-up (the first 10% of frames), when every buffer and cache has been allocated once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from streamseg.pipeline import segment
from streamseg.synth import SyntheticSource

PAGE = 4096


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def soak(frames: int, model: str = "shapes", width: int = 320, height: int = 180, **settings) -> dict:
    warmup, samples, threads, most_tracks = max(1, frames // 10), [], set(), 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamseg-soak-") as scratch:
        run = segment(SyntheticSource(frames, width, height, seed=99, objects=8), out=Path(scratch) / "run",
                      model=model, device="cpu", **settings)
        for result in run:
            index = result.frame.index
            if index % 100 == 0:
                samples.append((index, resident_mb()))
                if index >= warmup:
                    threads.add(threading.active_count())
                most_tracks = max(most_tracks, len(run.tracker.tracks))
        lines = sum(1 for _ in (Path(scratch) / "run" / "frames.jsonl").open())
    after_warmup = next(mb for index, mb in samples if index >= warmup)
    return {
        "frames": frames,
        "seconds": round(time.perf_counter() - started, 1),
        "jsonl_lines": lines,
        "rss_after_warmup_mb": round(after_warmup, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_growth_mb": round(samples[-1][1] - after_warmup, 1),
        # The curve, not just its ends: a leak climbs steadily, allocator arenas filling up level off.
        "rss_every_2000_frames_mb": [round(mb, 1) for index, mb in samples if index % 2000 == 0],
        "thread_counts_after_warmup": sorted(threads),
        "most_live_tracks": most_tracks,
        "objects_counted": len(run.tracker.counted_ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--model", default="shapes")
    args = parser.parse_args()
    result = soak(args.frames, args.model)
    out = Path(__file__).resolve().parents[1] / "runs" / "bench" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
