"""The issue-5 pipeline benchmark, reproducible in one command.

    .venv/bin/python benchmarks/pipeline.py                        # shipped model, CPU or GPU, 640x360
    .venv/bin/python benchmarks/pipeline.py --size 1920x1080       # the same at 1080p

For R50-FPN on a GPU use ``benchmarks/gpu_sweep.py`` (or ``benchmarks/gpu_check.sh``): with random weights
it gives the detector a COCO scene's number of detections, which ``streamseg bench --weights random`` cannot
(nothing passes the threshold, so the mask head never runs).

Makes the synthetic clip it needs (seeded) under runs/bench/, runs `streamseg bench` on it and
writes runs/bench/<name>.json. The figures in docs/benchmarks.md come from here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x360", help="clip size WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--streams", type=int)
    args = parser.parse_args()
    size = args.size
    clip = OUT / f"clip-{size}.mp4"
    if not clip.exists():
        subprocess.run([sys.executable, "-m", "streamseg", "synth", str(clip), "--frames", str(args.frames),
                        "--size", size, "--seed", "1000", "--objects", "8"], check=True)
    name = f"shapes-{size}"
    command = [sys.executable, "-m", "streamseg", "bench", str(clip), "--frames", str(args.frames),
               "--json", str(OUT / f"{name}.json")]
    for option in ("batch", "streams"):
        if getattr(args, option):
            command += [f"--{option}", str(getattr(args, option))]
    subprocess.run(command, check=True)
    print(json.dumps(json.loads((OUT / f"{name}.json").read_text()), indent=2))


if __name__ == "__main__":
    main()
