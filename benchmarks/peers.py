"""Issue 15: streamseg against Ultralytics YOLO11n-seg on the demo clip, each in a process of its own.

    .venv/bin/pip install -e ".[bench]"        # Ultralytics: a benchmark dependency, never one of streamseg's
    .venv/bin/python benchmarks/peers.py --rounds 2

What runs, per round, in this order (each in its own process, nothing else on the machine):

- ``streamseg segment samples/demo.mp4`` with its defaults (overlay + JSONL, tracking), once per
  ``--runtime`` asked for; fps is the summary's (decode to last frame written; model loading excluded);
- Ultralytics ``YOLO("yolo11n-seg.yaml").track(clip, imgsz=320, save=True)`` (BoT-SORT, overlay video
  written), random weights since nothing can be downloaded here (``YOLO_OFFLINE=1``), in eager torch;
- the same model exported by Ultralytics to OpenVINO (``format="openvino"``, fp32) and tracked the same
  way. fps for Ultralytics: frames over the seconds from the first result to the last, so that its
  model building and warm-up pass are excluded as streamseg's model loading is.

Random weights make few detections, which flatters Ultralytics' post-processing a little; streamseg
runs its trained model. Writes runs/bench/peers.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"
DEMO = ROOT / "samples" / "demo.mp4"
IMGSZ = 320


def streamseg_fps(runtime: str, scratch: Path) -> float:
    out = scratch / f"streamseg-{runtime}"
    subprocess.run([sys.executable, "-m", "streamseg", "segment", str(DEMO), "--out", str(out), "--overwrite",
                    "--quiet", "--runtime", runtime], check=True, cwd=scratch)
    return json.loads((out / "summary.json").read_text())["run"]["fps"]


def ultralytics_fps(export: bool, scratch: Path) -> float:
    """In a child process: this script with ``--ultralytics``."""
    done = subprocess.run([sys.executable, __file__, "--ultralytics", "openvino" if export else "torch"],
                          check=True, cwd=scratch, capture_output=True, text=True,
                          env={**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"})
    return json.loads(done.stdout.strip().splitlines()[-1])["fps"]


def _track_here(runtime: str) -> dict:
    from ultralytics import YOLO

    model = YOLO("yolo11n-seg.yaml", task="segment")
    if runtime == "openvino":
        model = YOLO(model.export(format="openvino", imgsz=IMGSZ, verbose=False), task="segment")
    results = model.track(str(DEMO), imgsz=IMGSZ, save=True, stream=True, verbose=False,
                          project=str(Path.cwd() / "ultralytics"), name="track")
    times = [time.perf_counter() for _ in results]
    return {"fps": round((len(times) - 1) / (times[-1] - times[0]), 2), "frames": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runtimes", default="openvino,torch", help="streamseg runtimes to run, comma-separated")
    parser.add_argument("--ultralytics", help=argparse.SUPPRESS)  # one Ultralytics run, in this process
    args = parser.parse_args()
    if args.ultralytics:
        print(json.dumps(_track_here(args.ultralytics)))
        return
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="streamseg-peers-") as scratch:
            scratch = Path(scratch)
            for runtime in args.runtimes.split(","):
                rows.setdefault(f"streamseg ({runtime})", []).append(streamseg_fps(runtime, scratch))
            rows.setdefault("Ultralytics YOLO11n-seg track (torch)", []).append(ultralytics_fps(False, scratch))
            rows.setdefault("Ultralytics YOLO11n-seg track (OpenVINO)", []).append(ultralytics_fps(True, scratch))
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{len(os.sched_getaffinity(0))} usable CPUs", "clip": str(DEMO.relative_to(ROOT)), "fps": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "peers.json").write_text(json.dumps(report, indent=2))
    print(f"{report['date']}, {report['machine']}, {report['clip']}\n\n| pipeline | fps per round |\n| --- | --- |")
    for name, values in rows.items():
        print(f"| {name} | {' / '.join(str(v) for v in values)} |")


if __name__ == "__main__":
    main()
