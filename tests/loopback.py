"""A loopback live stream for tests and the live benchmark: synthetic frames, H.264 in MPEG-TS, served
in real time on ``tcp://127.0.0.1:PORT`` to the first client that connects.

Run as a script (``python tests/loopback.py PORT --frames 90 --fps 30``) so that a test can kill it
mid-stream like a camera losing power, and start it again on the same port. With ``--stall`` it
keeps the connection open after its frames and sends nothing more, like a camera that hangs.
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


class Client:
    """The file FFmpeg writes the stream to. The first write, once the first frame is encoded (a camera that
    is up has its pictures ready), listens on ``port``, says ``listening`` and waits for one client; every
    write then leaves whole and at once."""

    def __init__(self, port: int):
        self._port = port
        self._connection: socket.socket | None = None

    def write(self, data: bytes) -> int:
        if self._connection is None:
            # Listening here rather than in FFmpeg (tcp://...?listen=1): FFmpeg stops listening as soon as a
            # client connects, so from outside, a server that already has its client looks like one not started.
            with socket.create_server(("127.0.0.1", self._port)) as listener:
                print("listening", flush=True)
                self._connection, _ = listener.accept()
        self._connection.sendall(data)
        return len(data)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def serve(port: int, frames: int, fps: float, width: int, height: int, seed: int, stall: bool = False) -> None:
    """Say ``listening``, wait for one client, then send ``frames`` frames paced at ``fps`` and end the
    stream (or, with ``stall``, fall silent until killed)."""
    client = Client(port)
    try:
        stream_to(client, frames, fps, width, height, seed, stall)
    finally:
        client.close()


def stream_to(client: Client, frames: int, fps: float, width: int, height: int, seed: int, stall: bool) -> None:
    # flush_packets: each frame leaves at once instead of waiting for the 32 KB output buffer to fill.
    output = av.open(client, "w", format="mpegts", options={"flush_packets": "1"})
    stream = output.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # What a camera does: no B-frames or lookahead, a keyframe every second so a client can join quickly.
    stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(round(fps))}
    started = None
    try:
        for index, (image, _) in enumerate(World(width, height, seed=seed, fps=fps)):
            if index >= frames:
                break
            picture = av.VideoFrame.from_ndarray(image, format="rgb24")
            picture.pts = index
            for packet in stream.encode(picture):
                output.mux(packet)
            if started is None:
                # Paced from the first frame's departure, so that the encoder's slow start does not send the
                # next frames in a burst to catch up, as no camera would.
                started = time.monotonic()
                # Frame i leaves at this wall time + i / fps: lets a benchmark measure from send to output.
                print(f"streaming {time.time():.6f}", flush=True)
            time.sleep(max(0.0, started + (index + 1) / fps - time.monotonic()))
        while stall:
            time.sleep(60)
        for packet in stream.encode(None):
            output.mux(packet)
        output.close()
    except (BrokenPipeError, ConnectionResetError):  # PyAV's errors for these subclass the built-in ones
        pass  # the client left first: the end of its run, not a failure of the server


def start_server(port: int, frames: int, fps: float = 30.0, width: int = 320, height: int = 240,
                 seed: int = 7, stall: bool = False) -> subprocess.Popen:
    """The server as a child process, listening on ``port`` once this returns."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(port), "--frames", str(frames),
                                "--fps", str(fps), "--size", f"{width}x{height}", "--seed", str(seed),
                                *(["--stall"] if stall else [])], stdout=subprocess.PIPE, text=True, encoding="utf-8")
    if process.stdout.readline() != "listening\n":  # nothing: it failed before listening
        process.kill()
        raise RuntimeError(f"loopback server did not start listening (exit code {process.wait()})")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stall", action="store_true", help="After the frames, keep the connection open, silent.")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    serve(args.port, args.frames, args.fps, width, height, args.seed, args.stall)


if __name__ == "__main__":
    main()
