"""The issue-5 CPU/GPU pipeline benchmark, reproducible in one command.

    .venv/bin/python benchmarks/pipeline.py                        # shipped model, CPU or GPU, 640x360
    .venv/bin/python benchmarks/pipeline.py --gpu-coco             # R50-FPN (untrained, COCO compute), 1280x720
    .venv/bin/python benchmarks/pipeline.py --gpu-coco --size 1920x1080   # the same at 1080p

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
    parser.add_argument("--gpu-coco", action="store_true", help="maskrcnn_resnet50_fpn at 1280x720 (needs CUDA)")
    parser.add_argument("--size", help="clip size WIDTHxHEIGHT (default: 1280x720 with --gpu-coco, else 640x360)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--streams", type=int)
    args = parser.parse_args()
    size = args.size or ("1280x720" if args.gpu_coco else "640x360")
    clip = OUT / f"clip-{size}.mp4"
    if not clip.exists():
        subprocess.run([sys.executable, "-m", "streamseg", "synth", str(clip), "--frames", str(args.frames),
                        "--size", size, "--seed", "1000", "--objects", "8"], check=True)
    name = f"{'coco-r50' if args.gpu_coco else 'shapes'}-{size}"
    command = [sys.executable, "-m", "streamseg", "bench", str(clip), "--frames", str(args.frames),
               "--json", str(OUT / f"{name}.json")]
    if args.gpu_coco:
        command += ["--model", "maskrcnn_resnet50_fpn", "--weights", "random", "--device", "cuda",
                    "--inference-size", "720"]
    for option in ("batch", "streams"):
        if getattr(args, option):
            command += [f"--{option}", str(getattr(args, option))]
    subprocess.run(command, check=True)
    print(json.dumps(json.loads((OUT / f"{name}.json").read_text()), indent=2))


if __name__ == "__main__":
    main()
