"""Live streams through the whole pipeline with the shipped model: latency, and start-up after a connect.

    .venv/bin/python benchmarks/live.py                    # latency: 640x360 at 30 fps, 20 s per latency mode
    .venv/bin/python benchmarks/live.py --seconds 60 --size 320x240
    .venv/bin/python benchmarks/live.py --startup          # start-up: 25 fps, 320x240, a connect and a reconnect

The stream comes from ``tests/loopback.py`` in a child process on this machine (its painting and
x264 encoding take CPU from the pipeline, as a camera's would not).

Latency: two figures per frame that reaches the output (overlay encoded, JSONL written):

- capture to output: from when the frame arrived at streamseg's reader (what ``--latency`` controls);
- send to output: from when the server sent it, so FFmpeg's buffering while opening, the network and
  decoding are included (frame i is sent at the server's start + i / fps).

Start-up (``--startup``, low latency): the server sends ``--seconds`` of stream and ends, is started
again on the same port after ``--gap`` seconds and sends as much again; the run reconnects. For the
first connection and the reconnection: seconds from starting to open the connection to its first
frame at the reader (``first_frame_seconds`` of the summary) and to the first segmented frame out of
the pipeline; then the share of all frames sent that were segmented rather than dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streamseg.config import build_config
from streamseg.pipeline import Segmenter, segment
from streamseg.sources.capture import connector
from streamseg.sources.live import LiveOptions, LiveSource

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
    summary = run.summary.to_dict()
    shown, dropped = summary["run"]["frames_decoded"], summary["source"]["dropped_frames"]
    return {
        "latency_mode": latency,
        "seconds": seconds,
        "frames_out": shown,
        "output_fps": round(shown / summary["run"]["wall_seconds"], 2),
        "dropped_frames": dropped,
        "dropped_rate": round(dropped / (shown + dropped), 3) if shown + dropped else None,
        "inference_ms": inference_ms(summary),
        "capture_to_output_ms": summary["run"]["latency_ms"],
        "send_to_output_ms": {"p50": round(float(np.percentile(send_to_output, 50)) * 1000, 1),
                              "p95": round(float(np.percentile(send_to_output, 95)) * 1000, 1)},
    }


def inference_ms(summary: dict) -> float:
    """One forward pass, on average over the run."""
    return round(1000 * summary["run"]["stage_seconds"]["infer"] / max(1, summary["run"]["frames_inferred"]), 1)


class TimedConnector:
    """The live source's own connector, noting when each successful connection began to open."""

    def __init__(self, url: str, timeout: float):
        self._connect = connector(url, timeout)
        self.opened_since: list[float] = []  # time.perf_counter() at the start of each successful open

    def __call__(self):
        started = time.perf_counter()
        capture = self._connect()
        self.opened_since.append(started)
        return capture


def measure_startup(seconds: float, gap: float, fps: float, width: int, height: int, model: str,
                    inference_size: int | None) -> dict:
    """Two connections of ``seconds`` of stream each, ``gap`` seconds apart, in low latency."""
    frames = round(seconds * fps)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    segmenter = Segmenter(build_config(model=model, device="cpu", latency="low", inference_size=inference_size))
    servers = [start_server(port, frames=frames, fps=fps, width=width, height=height)]
    connect = TimedConnector(url, timeout=10.0)
    outputs: list[float] = []  # time.perf_counter() when each connection's first segmented frame came out
    try:
        with tempfile.TemporaryDirectory(prefix="streamseg-live-") as scratch:
            run = segmenter.run(LiveSource(url, LiveOptions(latency="low"), connect=connect), Path(scratch) / "run")

            def second_connection() -> None:
                try:
                    servers[0].wait()
                    time.sleep(gap)
                    servers.append(start_server(port, frames=frames, fps=fps, width=width, height=height))
                    servers[1].wait()
                    time.sleep(2.0)  # the last frames through the pipeline
                finally:
                    run.stop("benchmark over")

            threading.Thread(target=second_connection, daemon=True).start()
            segmented = 0
            for result in run:
                segmented += 1
                if segmented == 1 or result.frame.events:
                    outputs.append(time.perf_counter())
    finally:
        for server in servers:
            server.kill()
            server.wait()
    summary = run.summary.to_dict()
    return {
        "fps": fps,
        "size": f"{width}x{height}",
        "frames_sent": 2 * frames,
        "segmented": segmented,
        "segmented_share": round(segmented / (2 * frames), 3),
        "dropped_frames": summary["source"]["dropped_frames"],
        "first_frame_seconds": summary["source"]["first_frame_seconds"],
        "first_segmented_seconds": [round(out - since, 3) for out, since in zip(outputs, connect.opened_since)],
        "connections": len(connect.opened_since),
        "inference_ms": inference_ms(summary),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float,
                        help="Per latency mode (default 20), or per connection with --startup (default 4).")
    parser.add_argument("--fps", type=float, help="Default 30, or 25 with --startup.")
    parser.add_argument("--size", help="Default 640x360, or 320x240 with --startup.")
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--inference-size", type=int, help="Shorter side the model sees; default the model's own.")
    parser.add_argument("--latency", choices=["low", "complete", "both"], default="both")
    parser.add_argument("--startup", action="store_true", help="Measure start-up after a connect and a reconnect.")
    parser.add_argument("--gap", type=float, default=1.0, help="With --startup: seconds the server is away.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    size = args.size or ("320x240" if args.startup else "640x360")
    width, height = (int(v) for v in size.split("x"))
    if args.startup:
        results = [measure_startup(args.seconds or 4.0, args.gap, args.fps or 25.0, width, height, args.model,
                                   args.inference_size)]
    else:
        modes = ["low", "complete"] if args.latency == "both" else [args.latency]
        results = [measure(mode, args.seconds or 20.0, args.fps or 30.0, width, height, args.model) for mode in modes]
    for result in results:
        print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
