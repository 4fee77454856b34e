"""Live latency: a 30 fps H.264/MPEG-TS loopback stream through the whole pipeline with the shipped model.

    .venv/bin/python benchmarks/live.py                    # 640x360, 20 s per latency mode
    .venv/bin/python benchmarks/live.py --seconds 60 --size 320x240

The stream comes from ``tests/loopback.py`` in a child process on this machine (its painting and
x264 encoding take CPU from the pipeline, as a camera's would not). Two latencies are reported per
frame that reaches the output (overlay encoded, JSONL written):

- capture to output: from when the frame arrived at streamseg's reader (what ``--latency`` controls);
- send to output: from when the server sent it, so FFmpeg's buffering while opening, the network and
  decoding are included (frame i is sent at the server's start + i / fps).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from streamseg.pipeline import segment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the loopback server lives with the tests
from tests.loopback import free_port, start_server  # noqa: E402


def measure(latency: str, seconds: float, fps: float, width: int, height: int, model: str) -> dict:
    port = free_port()
    server = start_server(port, frames=int((seconds + 30) * fps), fps=fps, width=width, height=height)
    try:
        with tempfile.TemporaryDirectory(prefix="streamseg-live-") as scratch:
            run = segment(f"tcp://127.0.0.1:{port}", out=Path(scratch) / "run", model=model, device="cpu",
                          latency=latency, duration=seconds, reconnect=False)
            sent_at = None
            send_to_output = []
            for result in run:
                sent_at = sent_at or float(server.stdout.readline().split()[1])
                send_to_output.append(time.time() - (sent_at + result.frame.index / fps))
    finally:
        server.kill()
        server.wait()
    summary = run.summary
    shown, dropped = summary["run"]["frames_decoded"], summary["source"]["dropped_frames"]
    infer = summary["run"]["stage_seconds"]["infer"] / max(1, summary["run"]["frames_inferred"])
    return {
        "latency_mode": latency,
        "seconds": seconds,
        "frames_out": shown,
        "output_fps": round(shown / summary["run"]["wall_seconds"], 2),
        "dropped_frames": dropped,
        "dropped_rate": round(dropped / (shown + dropped), 3) if shown + dropped else None,
        "inference_ms": round(infer * 1000, 1),
        "capture_to_output_ms": summary["run"]["latency_ms"],
        "send_to_output_ms": {"p50": round(float(np.percentile(send_to_output, 50)) * 1000, 1),
                              "p95": round(float(np.percentile(send_to_output, 95)) * 1000, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--latency", choices=["low", "complete", "both"], default="both")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    modes = ["low", "complete"] if args.latency == "both" else [args.latency]
    results = [measure(mode, args.seconds, args.fps, width, height, args.model) for mode in modes]
    for result in results:
        print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
