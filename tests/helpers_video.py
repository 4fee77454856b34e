"""Small clips for the source and sink tests, written with PyAV directly (not with streamseg's own writer).

Frame ``i`` shows ``i`` in binary as eight black or white stripes, which survive lossy coding, so every decoded
picture can be traced back to the frame it came from.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

WIDTH, HEIGHT = 64, 48  # eight stripes of 8 pixels
OPENCV_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"), Path("/usr/share/doc/opencv-doc/opencv4/html"))


def picture(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An RGB picture of ``index`` (0..255) as stripes, white for a 1 bit, least significant bit on the left."""
    bits = [(index >> bit) & 1 for bit in range(8)]
    row = np.repeat(np.array(bits, np.uint8) * 255, width // 8)
    return np.repeat(np.repeat(row[None, :, None], height, axis=0), 3, axis=2)


def index_of(image: np.ndarray) -> int:
    """The index that :func:`picture` drew into ``image``."""
    stripes = image[:, : image.shape[1] // 8 * 8].mean(axis=(0, 2)).reshape(8, -1).mean(axis=1)
    return sum(1 << bit for bit, value in enumerate(stripes) if value > 128)


def write_mp4(path: Path, pts: Iterable[int], time_base: Fraction, rate: float) -> Path:
    """An H.264 MP4 whose frame ``i`` is ``picture(i)`` at ``pts[i]`` (ticks of ``time_base``)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = _h264_stream(container, time_base, rate, bframes=0)
        for index, stamp in enumerate(pts):
            container.mux(stream.encode(_frame(index, stamp, time_base)))
        container.mux(stream.encode(None))
    return path


def write_decode_order_mp4(path: Path, count: int, fps: int) -> Path:
    """An MP4 with B-frames whose timestamps are in decode order (as some muxers write them; like box.mp4).

    The decoder returns ``picture(0)``, ``picture(1)``, ... in order, but each carries the timestamp of the packet
    that completed it, so the raw timestamps come out of order.
    """
    time_base = Fraction(1, fps)
    with av.open(str(path), "w", format="mp4") as container:
        stream = _h264_stream(container, time_base, fps, bframes=3)
        packets = [packet for index in range(count) for packet in stream.encode(_frame(index, index, time_base))]
        packets += stream.encode(None)
        first_dts = packets[0].dts
        for packet in packets:
            packet.dts -= first_dts
            packet.pts = packet.dts
            container.mux(packet)
    return path


def write_restamped(path: Path, container_format: str, stamps: list[int], time_base: Fraction) -> Path:
    """``picture(i)`` coded as H.264 with ``stamps[i]`` as its packet's pts and dts, in ``container_format``.

    For containers that accept repeated timestamps (Matroska), or that store none at all (raw "h264").
    """
    with av.open(str(path), "w", format=container_format) as container:
        stream = _h264_stream(container, time_base, 1 / time_base, bframes=0)
        frames = [_frame(index, index, time_base) for index in range(len(stamps))]
        packets = [packet for frame in frames for packet in stream.encode(frame)] + stream.encode(None)
        for packet, stamp in zip(packets, stamps, strict=True):
            packet.pts = packet.dts = stamp
            container.mux(packet)
    return path


def write_avi(path: Path, count: int, fps: int = 25, garbage: Iterable[int] = ()) -> Path:
    """An MPEG-4 part 2 AVI of ``count`` frames; the packets of the frames in ``garbage`` are random bytes."""
    garbage, rng = set(garbage), np.random.default_rng(0)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        time_base = Fraction(1, fps)
        packets = [packet for index in range(count) for packet in stream.encode(_frame(index, index, time_base))]
        for packet in packets + stream.encode(None):
            if packet.pts in garbage:
                junk = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base, junk.stream = packet.pts, packet.dts, packet.time_base, stream
                packet = junk
            container.mux(packet)
    return path


def write_audio(path: Path) -> Path:
    """A tenth of a second of silence as a WAV file: a container without video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def real_clip(name: str, tmp_path: Path) -> Path:
    """A clip from Debian's opencv-doc, gunzipped into ``tmp_path`` where needed; skips the test when absent."""
    for directory in OPENCV_DIRS:
        if (directory / name).exists():
            return directory / name
        if (directory / f"{name}.gz").exists():
            with gzip.open(directory / f"{name}.gz") as packed, (tmp_path / name).open("wb") as unpacked:
                shutil.copyfileobj(packed, unpacked)
            return tmp_path / name
    pytest.skip(f"{name} is not installed (apt-get install opencv-doc)")


def _h264_stream(container: av.container.OutputContainer, time_base: Fraction, rate: float, bframes: int):
    stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.codec_context.time_base = time_base
    stream.codec_context.options = {"bf": str(bframes), "preset": "ultrafast" if bframes == 0 else "veryfast"}
    return stream


def _frame(index: int, pts: int, time_base: Fraction) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(picture(index), format="rgb24")
    frame.pts, frame.time_base = pts, time_base
    return frame
