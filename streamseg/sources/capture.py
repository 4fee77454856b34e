"""One connection to a camera or network stream: how to tell sources apart, open them and read pictures.

:class:`streamseg.sources.live.LiveSource` keeps calling a :func:`connector`'s function to get a connection,
reads it until it fails or ends, and calls again. FFmpeg (PyAV) opens network protocols and the
platform's camera devices; OpenCV's ``VideoCapture`` is the fallback for cameras.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import av
import cv2
import numpy as np

from ..errors import one_line
from .base import METADATA_ERRORS

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
# Opening a network stream, FFmpeg by default reads up to 5 MB or 5 s of it (for H.264, 20 frames to estimate the
# frame rate) before the first picture, then hands all of that over at once, which low latency drops. These
# stop the probing at the first decodable picture; the frame rate then comes from the codec's header. Not
# "fflags nobuffer": it throws away what probing read, the first keyframe with it, so the first picture waits
# for the next keyframe (measured on the loopback stream: 1.09 s instead of 0.09 s).
LOW_DELAY_OPTIONS = {"probesize": "32768", "analyzeduration": "100000", "fpsprobesize": "0"}


class ConnectionLost(Exception):
    """The stream failed while being read; the reader reconnects or ends."""


def is_camera(spec: str) -> bool:
    if Path(spec).is_file():  # a file that happens to be called cam:0.mp4
        return False
    return spec.startswith("cam:") or re.fullmatch(r"/dev/video\d+", spec) is not None


def is_network(spec: str) -> bool:
    return urlsplit(spec).scheme.lower() in NETWORK_SCHEMES


def is_live(spec: str) -> bool:
    return is_camera(spec) or is_network(spec)


def redact(spec: str) -> str:
    """``spec`` with any password in it replaced by ``***``: safe for logs, JSONL and summaries."""
    parts = urlsplit(spec)
    if not parts.password:
        return spec
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))

class Capture(Protocol):
    """One open connection to a device or stream."""

    container: str
    codec: str
    fps: float | None

    def read(self) -> np.ndarray | None:
        """The next picture, RGB uint8; None at the end of the stream. Raises ConnectionLost."""

    def close(self) -> None: ...


class StreamCapture:
    """A connection through FFmpeg (PyAV): network protocols and the platform's camera devices."""

    def __init__(self, url: str, *, format: str | None = None, options: dict | None = None, timeout: float = 10.0):
        try:
            self._container = av.open(url, "r", format=format, options=options or {}, timeout=(timeout, timeout),
                                      metadata_errors=METADATA_ERRORS)
        except (av.error.FFmpegError, OSError) as exc:
            raise ConnectionLost(_why_lost(exc, timeout)) from None
        videos = self._container.streams.video
        if not videos or videos[0].codec_context is None:
            self._container.close()
            raise ConnectionLost("no decodable video stream")
        stream = videos[0]
        self.container = self._container.format.name
        self.codec = stream.codec_context.codec.canonical_name
        rate = stream.average_rate or stream.codec_context.framerate  # short probing leaves it to the codec's header
        self.fps = float(rate) if rate else None
        self.decode_errors = 0
        self._timeout = timeout
        self._pictures = self._decoded(stream)

    def _decoded(self, stream) -> Iterator[av.VideoFrame]:
        for packet in self._container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                self.decode_errors += 1  # a damaged packet: the stream goes on

    def read(self) -> np.ndarray | None:
        try:
            picture = next(self._pictures, None)
        except av.error.FFmpegError as exc:
            raise ConnectionLost(_why_lost(exc, self._timeout)) from None
        return None if picture is None else picture.to_ndarray(format="rgb24")

    def close(self) -> None:
        self._pictures.close()
        self._container.close()


class OpenCVCapture:
    """A camera through OpenCV's VideoCapture: the fallback where FFmpeg has no device for it."""

    container = "opencv"
    codec = "rawvideo"

    def __init__(self, index: int, size: tuple[int, int] | None, fps: float | None):
        # OpenCV logs every backend it tries to stderr; the one line that matters is ours.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            self._capture = cv2.VideoCapture(index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self._capture.isOpened():
            self._capture.release()
            raise ConnectionLost(f"OpenCV cannot open camera {index}")
        if size:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            self._capture.set(cv2.CAP_PROP_FPS, fps)
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or None

    def read(self) -> np.ndarray | None:
        ok, bgr = self._capture.read()
        if not ok:
            raise ConnectionLost("the camera returned no frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


def open_camera(spec: str, size: tuple[int, int] | None = None, fps: float | None = None, timeout: float = 10.0) -> Capture:
    """``cam:N``, ``cam:NAME`` or ``/dev/videoN`` through the platform's FFmpeg device, else OpenCV."""
    name = spec.removeprefix("cam:")
    device_options = {}
    if size:
        device_options["video_size"] = "{}x{}".format(*size)
    if fps:
        device_options["framerate"] = f"{fps:g}"
    if sys.platform.startswith("linux"):
        device = name if name.startswith("/dev/") else f"/dev/video{name}"
        ffmpeg_device = ("v4l2", device)
    elif sys.platform == "darwin":
        ffmpeg_device = ("avfoundation", name)
    else:  # dshow names devices; an index goes to OpenCV
        ffmpeg_device = None if name.isdigit() else ("dshow", f"video={name}")
    failure = "no FFmpeg device for it"
    if ffmpeg_device:
        try:
            return StreamCapture(ffmpeg_device[1], format=ffmpeg_device[0], options=device_options, timeout=timeout)
        except ConnectionLost as exc:
            failure = str(exc)
    index = re.search(r"\d+$", name)
    if index is None:
        raise ConnectionLost(failure)
    try:
        return OpenCVCapture(int(index.group()), size, fps)
    except ConnectionLost as exc:
        raise ConnectionLost(f"{failure}; {exc}") from None


def connector(spec: str, timeout: float = 10.0, camera_size: tuple[int, int] | None = None,
              camera_fps: float | None = None) -> Callable[[], Capture]:
    """How to (re)open ``spec``: a function that returns a new connection or raises ConnectionLost."""
    if is_camera(spec):
        return lambda: open_camera(spec, camera_size, camera_fps, timeout)
    stream_options = dict(LOW_DELAY_OPTIONS)
    if urlsplit(spec).scheme.lower().startswith("rtsp"):
        # RTSP over TCP: UDP loses packets (grey smears) on any busy network and is blocked by most firewalls.
        stream_options["rtsp_transport"] = "tcp"
    return lambda: StreamCapture(spec, options=stream_options, timeout=timeout)


def is_recording(url: str, timeout: float) -> bool:
    """Whether an http(s) URL is a recording (a file, a finished HLS playlist) rather than a live stream.

    A recording states its duration; read like a file it keeps its own timestamps and every frame,
    and its end is the end of the run, not an outage to reconnect after.
    """
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return False
    try:
        with av.open(url, "r", timeout=(timeout, timeout), metadata_errors=METADATA_ERRORS) as container:
            return container.duration is not None
    except (av.error.FFmpegError, OSError):
        return False  # let the live source's own opening report it

def _why_lost(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, av.error.ExitError):
        return f"no data for {timeout:g} s"  # PyAV's timeout interrupts FFmpeg, which calls that an exit
    return one_line(exc)
