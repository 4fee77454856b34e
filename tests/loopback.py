"""A loopback live stream for tests and the live benchmark: synthetic frames, H.264 in MPEG-TS, served
in real time on ``tcp://127.0.0.1:PORT`` to the first client that connects.

Run as a script (``python tests/loopback.py PORT --frames 90 --fps 30``) so that a test can kill it
mid-stream like a camera losing power, and start it again on the same port.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av

from streamseg.synth import World


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(port: int, frames: int, fps: float, width: int, height: int, seed: int) -> None:
    """Wait for one client, then send ``frames`` frames paced at ``fps`` and end the stream."""
    # flush_packets: each frame leaves at once instead of waiting for the 32 KB output buffer to fill.
    output = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts", options={"flush_packets": "1"})
    stream = output.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # What a camera does: no B-frames or lookahead, a keyframe every second so a client can join quickly.
    stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(round(fps))}
    started = time.monotonic()
    # Frame i leaves at this wall time + i / fps: lets a benchmark measure from send to output.
    print(f"streaming {time.time():.6f}", flush=True)
    try:
        for index, (image, _) in enumerate(World(width, height, seed=seed, fps=fps)):
            if index >= frames:
                break
            picture = av.VideoFrame.from_ndarray(image, format="rgb24")
            picture.pts = index
            for packet in stream.encode(picture):
                output.mux(packet)
            time.sleep(max(0.0, started + (index + 1) / fps - time.monotonic()))
        for packet in stream.encode(None):
            output.mux(packet)
        output.close()
    except (BrokenPipeError, ConnectionResetError):  # PyAV's errors for these subclass the built-in ones
        pass  # the client left first: the end of its run, not a failure of the server


def start_server(port: int, frames: int, fps: float = 30.0, width: int = 320, height: int = 240,
                 seed: int = 7) -> subprocess.Popen:
    """The server as a child process, listening on ``port`` once this returns."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(port), "--frames", str(frames),
                                "--fps", str(fps), "--size", f"{width}x{height}", "--seed", str(seed)],
                               stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # Listening shows as a refused bind; connecting would take the server's one client.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return process
        if process.poll() is not None:
            raise RuntimeError(f"loopback server exited with {process.returncode}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("loopback server did not start listening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    serve(args.port, args.frames, args.fps, width, height, args.seed)


if __name__ == "__main__":
    main()
