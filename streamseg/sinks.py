"""Where results go: an H.264 MP4 video, a JSON-lines log, and JSON files replaced atomically.

Each is written so that a crash (even ``kill -9``) leaves something usable: the MP4 is fragmented (playable up to
its last complete fragment), the log is flushed line by line, and a JSON file is either the old or the new one.
"""

from __future__ import annotations

import json
import os
import uuid
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.frame import PictureType
from av.video.stream import VideoStream

from .errors import OutputError, one_line
from .system import few_cpus

# Fragmented MP4: each keyframe starts a fragment written out at once, with no index to finalize at the end.
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
# A keyframe at least this often (seconds): bounds what a crash loses (one fragment) and how far players seek back.
KEYFRAME_INTERVAL = 2.0
# When the input has no clock of its own: MPEG's 90 kHz, fine enough for any frame rate.
DEFAULT_TIME_BASE = Fraction(1, 90000)
# The overlay's x264 settings beyond preset and CRF (and one thread on few CPUs, see system.FEW_CPUS: the same size
# and PSNR; one thread still encodes 60-70 1080p frames a second there). A lookahead of 4 frames instead of
# veryfast's 10: at 1080p 45 MB less memory, 0.2 dB PSNR and 8 % of file size less (2026-12-01, synthetic overlay).
FAST_ENCODER_OPTIONS = {"rc-lookahead": "4"}
# Full-range chroma (0-255 around 128) to the studio range video uses (16-240 around 128).
_STUDIO_CHROMA = np.round(128 + (np.arange(256) - 128) * 224 / 255).astype(np.uint8)
# Only steers rate control and keyframe spacing when the frame rate is unknown; timestamps come from the frames.
DEFAULT_FPS = 30.0


class VideoWriter:
    """H.264 (libx264), yuv420p, fragmented MP4 that browsers play; reuses the input's timestamps.

    With ``time_base`` and a frame's ``pts``, the output frame gets exactly that timestamp (shifted so that the first
    frame is at 0), so a variable frame rate stays variable. Otherwise ``time`` (seconds) is used. Odd sizes are
    padded by one replicated row or column, since yuv420p needs even ones.

    ``fast`` (the default, for overlays) converts colours with OpenCV, looks ahead fewer frames and, on few CPUs,
    encodes in one thread.
    ``fast=False`` leaves all three to FFmpeg and x264 as they come: what ``synth`` uses, so that a clip's pixels,
    and every accuracy figure measured on them, do not move when the overlay's speed settings do.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        time_base: Fraction | None,
        fps: float | None,
        crf: int = 23,
        preset: str = "veryfast",
        fast: bool = True,
    ):
        if width < 1 or height < 1:
            raise ValueError(f"video size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        # Without a time base a pts means nothing, so then every frame is placed by its time.
        self.input_time_base = Fraction(time_base) if time_base else None
        self.time_base = self.input_time_base or DEFAULT_TIME_BASE
        self.fps = fps or DEFAULT_FPS
        self.frames_written = 0
        self.fast = fast
        self._first: tuple[int | None, float] | None = None  # (pts, time) of the first frame: the zero point
        self._last_pts: int | None = None
        self._next_keyframe = 0.0  # seconds since the first frame
        self._step = max(1, round(1 / (self.fps * self.time_base)))  # one nominal frame, in ticks
        try:
            self._container = av.open(str(self.path), "w", format="mp4", options=MP4_OPTIONS)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.path}: cannot create video ({one_line(exc)})") from None
        try:
            self._stream = self._add_stream(crf, preset)
            # Opens the file and the encoder now, so that a bad path or encoder option fails here, not at frame one.
            self._container.start_encoding()
        except (av.error.FFmpegError, OSError) as exc:
            self._container.close()
            raise OutputError(f"{self.path}: cannot start video ({one_line(exc)})") from None

    def _add_stream(self, crf: int, preset: str) -> VideoStream:
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(100000))
        codec = stream.codec_context
        codec.width, codec.height = self.width + self.width % 2, self.height + self.height % 2
        codec.pix_fmt = "yuv420p"
        # The encoder's clock is the input's, so its timestamps pass through without rounding.
        codec.time_base = self.time_base
        codec.gop_size = max(1, int(KEYFRAME_INTERVAL * self.fps))
        # No B-frames: with them the first frame's dts is negative, and fragmented MP4 (which has no edit list)
        # then shifts every timestamp by the reorder delay.
        options = {"crf": str(crf), "preset": preset, "bf": "0"}
        if self.fast:
            options |= FAST_ENCODER_OPTIONS | ({"threads": "1"} if few_cpus() else {})
        codec.options = options
        return stream

    def write(self, image: np.ndarray, pts: int | None, time: float) -> None:
        """Encode one RGB uint8 (height, width, 3) picture shown at ``pts`` (or ``time`` seconds)."""
        if self._container is None:
            raise ValueError(f"{self.path}: write after close")
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected a ({self.height}, {self.width}, 3) uint8 image, got {image.shape} {image.dtype}")
        image = _pad_to_even(image)
        if self.fast:
            frame = av.VideoFrame.from_ndarray(rgb_to_i420(image), format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")  # the encoder converts it with swscale
        frame.time_base = self.time_base
        frame.pts = self._output_pts(pts, time)
        # The muxer takes each frame's duration from the next frame's timestamp; this one only counts for the last.
        frame.duration = self._step
        seconds = float(frame.pts * self.time_base)
        if seconds >= self._next_keyframe:
            # x264 places keyframes by frame count (gop_size); a variable frame rate needs them by time as well.
            frame.pict_type = PictureType.I
            self._next_keyframe = seconds + KEYFRAME_INTERVAL
        self._encode(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file. Safe to call again."""
        if self._container is None:
            return
        try:
            self._encode(None)  # what the encoder still holds
        finally:
            container, self._container = self._container, None
            try:
                container.close()
            except (av.error.FFmpegError, OSError) as exc:
                raise OutputError(f"{self.path}: cannot finish video ({one_line(exc)})") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _output_pts(self, pts: int | None, time: float) -> int:
        if self._first is None:
            self._first = (pts, time)
        first_pts, first_time = self._first
        if pts is not None and first_pts is not None and self.input_time_base is not None:
            out = pts - first_pts
        else:
            out = round((time - first_time) / self.time_base)
        # MP4 needs strictly increasing timestamps; a frame that has none of its own goes one tick after the last,
        # which keeps every frame and leaves later ones on their own timestamps.
        if self._last_pts is not None and out <= self._last_pts:
            out = self._last_pts + 1
        self._last_pts = out
        return out

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            self._container.mux(self._stream.encode(frame))
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.path}: cannot write video ({one_line(exc)})") from None


class JsonlWriter:
    """One JSON object per line, flushed per line (a crash loses at most the line being written)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create ({one_line(exc)})") from None

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"  # before touching the file: a bad record writes nothing
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({one_line(exc)})") from None

    def close(self) -> None:
        """Safe to call again."""
        if self._file.closed:
            return
        try:
            self._file.close()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({one_line(exc)})") from None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_json_atomic(path: str | os.PathLike, obj: dict) -> None:
    """Replace ``path`` by ``obj`` as JSON so that readers, and a crash, see either the old file or the new one."""
    path = Path(path)
    text = json.dumps(obj, indent=2) + "\n"  # before any file exists: an unserializable object leaves nothing behind
    # In the same directory, so that the final rename stays on one filesystem and is atomic.
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # Created by hand rather than with tempfile, whose 0600 mode the final file would keep; this gets the umask's.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({one_line(exc)})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the name points at it
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({one_line(exc)})") from None
        raise


def rgb_to_i420(image: np.ndarray) -> np.ndarray:
    """YUV 4:2:0 planes (I420, BT.601 limited range, the matrix FFmpeg's swscale uses) of an even-sized RGB picture.

    OpenCV's own RGB-to-I420 takes each chroma sample from one pixel of its 2x2 block: at sharp coloured edges
    that is up to ~90 levels off the block's colour, and synthetic clips encoded so scored 0.01-0.02 lower mask
    AP. Here luma comes from that conversion and chroma from each block's mean colour, within one level of the
    exact conversion of the means: 1.8 ms a 1080p frame against swscale's 4.5 (2-CPU Xeon, 2026-12-01).
    """
    height, width = image.shape[:2]
    yuv = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
    means = cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    ycrcb = cv2.cvtColor(means, cv2.COLOR_RGB2YCrCb)  # full range (JPEG's): squeezed to studio range below
    chroma = yuv[height:].reshape(2, height // 2, width // 2)
    chroma[0] = cv2.LUT(ycrcb[..., 2], _STUDIO_CHROMA)  # U (Cb)
    chroma[1] = cv2.LUT(ycrcb[..., 1], _STUDIO_CHROMA)  # V (Cr)
    return yuv


def _pad_to_even(image: np.ndarray) -> np.ndarray:
    """``image`` with its last row and/or column repeated once where height and/or width are odd."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
