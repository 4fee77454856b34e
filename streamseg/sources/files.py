"""File sources: a video file, standard input or a recording on a web server, frames with index and time.

Everything FFmpeg can demux and decode is read through PyAV. Nothing here assumes the input is seekable or of
known length. Cameras and network streams, which need real-time stamps, dropping and reconnection, are
:class:`streamseg.sources.live.LiveSource`.
"""

from __future__ import annotations

import heapq
import io
import math
import os
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.stream import Disposition
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

from ..errors import InputError, one_line
from ..instances import Frame
from ..system import few_cpus
from .base import METADATA_ERRORS, FrameSource, SourceInfo

# H.264 and HEVC hold back at most 16 frames for reordering, so no timestamp can belong further ahead than that.
MAX_LOOKAHEAD = 16
# A decoder that reorders by n frames can still return a frame up to about 4n frames after the one whose timestamp
# it carries (a run of three non-reference B-frames behind a P-frame, or a B-pyramid).
LOOKAHEAD_PER_REORDER = 4
# A frame this many seconds before ``start`` still counts as at ``start`` (float seconds vs. integer ticks).
START_TOLERANCE = 1e-6


class VideoSource(FrameSource):
    """Iterable of :class:`~streamseg.instances.Frame` from anything PyAV opens. A context manager.

    Opening decodes the first frame, so an input without a single decodable frame fails here with
    :class:`InputError` rather than halfway through a run. Iteration is single-pass: a second ``iter()`` continues
    where the first stopped. Packets the decoder rejects are skipped and counted in ``decode_errors``.

    ``Frame.pts`` is in ``info.time_base`` and strictly increasing; ``Frame.time`` is seconds from the start of the
    video stream. See :class:`_Retimer` for how both are derived from the container's timestamps.
    """

    def __init__(self, spec: str | os.PathLike, *, start: float = 0.0, duration: float | None = None):
        self.spec = os.fspath(spec)
        self.duration = duration  # seconds of video after the first frame yielded, then the frames end
        self._first_time: float | None = None
        if not start >= 0:
            raise InputError(f"{self.spec}: start must be a non-negative number of seconds, got {start}")
        self.decode_errors = 0
        self.rotation = 0  # degrees counterclockwise applied to the stored pictures, from the display matrix
        self._container, self._file = _open_container(self.spec)
        try:
            self._stream = _video_stream(self._container, self.spec)
            # Frame threads (several frames decoded at once) are what speed up the decoders of most formats; on
            # few CPUs the other stages need those CPUs, and each frame thread holds frames of its own.
            self._stream.thread_type = "SLICE" if few_cpus() else "AUTO"
            time_base = self._stream.time_base or Fraction(1, av.time_base)
            # Times count from the stream's stated start; a stream that states none starts at its first frame.
            self._origin = self._stream.start_time
            if start > 0:
                self._seek(start, time_base)
            self._frames = self._frames_from(start, time_base)
            self._first = next(self._frames, None)
            if self._first is None:
                after = f" at or after {start:g} s" if start > 0 else ""
                raise InputError(f"{self.spec}: no decodable video frames{after}")
            self.info = _describe(self.spec, self._container, self._stream, time_base, self._first)
            self.info.rotation = self.rotation
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._all():
            if self.duration is not None:
                self._first_time = frame.time if self._first_time is None else self._first_time
                if frame.time - self._first_time >= self.duration:
                    return
            yield frame

    def _all(self) -> Iterator[Frame]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._frames

    def close(self) -> None:
        if hasattr(self, "_frames"):
            self._frames.close()
        self._container.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _seek(self, start: float, time_base: Fraction) -> None:
        target = (self._origin or 0) + math.floor(start / time_base)
        try:
            # To the keyframe at or before ``start``; the frames between it and ``start`` are decoded and dropped.
            self._container.seek(target, stream=self._stream, backward=True)
        except av.error.FFmpegError:
            pass  # not seekable (a pipe, a live stream): decode from here and drop everything before ``start``

    def _frames_from(self, start: float, time_base: Fraction) -> Iterator[Frame]:
        retimer = _Retimer(self._stream.codec_context, _nominal_step(self._stream, time_base), self._origin or 0)
        size = None
        index = 0
        for picture, pts in retimer.retime(self._decoded()):
            if self._origin is None:
                self._origin = pts
            time = float((pts - self._origin) * time_base)
            if time < start - START_TOLERANCE:
                continue
            # A stream may change resolution midway (spliced files, live streams); later stages assume one size.
            size = size or (picture.width, picture.height)
            image = picture.to_ndarray(format="rgb24", width=size[0], height=size[1])
            turns = round(picture.rotation / 90) % 4
            if turns:
                # A phone's portrait video is stored sideways with a display matrix saying how to turn it
                # (counterclockwise degrees); players and FFmpeg's CLI apply it, so the model must see it upright.
                image = np.ascontiguousarray(np.rot90(image, turns))
                self.rotation = turns * 90
            yield Frame(index=index, time=time, image=image, pts=pts, time_base=time_base)
            index += 1

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Every picture the decoder returns, in display order, skipping (and counting) packets it rejects."""
        packets = self._container.demux(self._stream)  # ends with an empty packet, which flushes the decoder
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError:
                # The file cannot be read on (demuxers resync over damage, so this is a file cut short):
                # what came before stands, the rest is counted as lost. With no frame at all, opening fails.
                self.decode_errors += 1
                return
            if packet is None:
                return
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                self.decode_errors += 1


class _Retimer:
    """Gives decoded pictures strictly increasing timestamps, using the container's where they make sense.

    Some files attach timestamps to the wrong pictures: AVI with packed B-frames (Megamind.avi), MP4 muxed with
    decode-order timestamps (box.mp4). The decoder still returns the pictures in display order and the set of
    timestamps is right, so each picture gets the smallest timestamp not yet used among those of the next few
    pictures. For a correctly muxed file that is the picture's own timestamp, so nothing changes. A picture without
    pts takes its dts (as FFmpeg's best-effort timestamp does); one with neither comes one nominal frame duration
    (``step`` ticks) after the previous picture.
    """

    def __init__(self, decoder: VideoCodecContext, step: int, origin: int):
        self.decoder = decoder
        self.step = step
        self.origin = origin  # for a first picture without any timestamp
        self.lookahead = 0
        self.pending: deque[tuple[av.VideoFrame, bool]] = deque()  # pictures, and whether each brought a timestamp
        self.stamps: list[int] = []  # heap of the timestamps the pending pictures brought
        self.last: int | None = None

    def retime(self, pictures: Iterator[av.VideoFrame]) -> Iterator[tuple[av.VideoFrame, int]]:
        for picture in pictures:
            stamp = picture.pts if picture.pts is not None else picture.dts
            if stamp is not None:
                if self.last is not None and stamp < self.last:
                    # It arrived after its place was given away: look further ahead from now on.
                    self.lookahead = min(self.lookahead + 1, MAX_LOOKAHEAD)
                heapq.heappush(self.stamps, stamp)
            self.pending.append((picture, stamp is not None))
            # Read every time: a decoder raises its reorder depth as it learns the stream.
            reorder = self.decoder.reorder_depth * LOOKAHEAD_PER_REORDER
            self.lookahead = max(self.lookahead, min(reorder, MAX_LOOKAHEAD))
            while len(self.pending) > self.lookahead:
                yield self._next()
        while self.pending:
            yield self._next()

    def _next(self) -> tuple[av.VideoFrame, int]:
        picture, stamped = self.pending.popleft()
        if stamped:
            stamp = heapq.heappop(self.stamps)
            if self.last is not None and stamp <= self.last:
                # A duplicate, or a step back that reordering cannot explain. Keep the picture (it is real content)
                # one tick after the previous one; later pictures keep their own timestamps, so nothing shifts.
                stamp = self.last + 1
        else:
            stamp = self.origin if self.last is None else self.last + self.step
        self.last = stamp
        return picture, stamp


class _SequentialFile(io.RawIOBase):
    """A file read front to back, never seeking, as FFmpeg reads a pipe.

    A fragmented MP4 cut off inside a fragment (a recording whose writer crashed) cannot be opened
    seekable: the demuxer indexes every fragment up front and stops at the broken one. Read in
    order, it gives every frame before the cut.
    """

    def __init__(self, path: str):
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close(), with the source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_container(spec: str) -> tuple[InputContainer, _SequentialFile | None]:
    """The opened container, and the file object it reads when it had to be read sequentially."""
    if spec == "-":  # standard input: a stream (MPEG-TS, Matroska, fragmented MP4, ...) piped in
        try:
            return av.open("pipe:0", "r", metadata_errors=METADATA_ERRORS), None
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"standard input: not a video stream FFmpeg can read ({one_line(exc)})") from None
    if "://" not in spec:  # a local path: name the common mistakes more plainly than FFmpeg would
        path = Path(spec)
        if not path.exists():
            raise InputError(f"{spec}: no such file")
        if path.is_dir():
            raise InputError(f"{spec}: is a directory, not a video file")
        if path.stat().st_size == 0:
            raise InputError(f"{spec}: empty file (0 bytes)")
    # FFmpeg reads "name:rest" as protocol "name"; an absolute path cannot be mistaken for one.
    target = spec if "://" in spec else os.path.abspath(spec)
    try:
        return av.open(target, "r", metadata_errors=METADATA_ERRORS), None
    except av.error.EOFError:
        raise InputError(f"{spec}: no video frames: the file ends before its first one") from None
    except av.error.InvalidDataError as exc:
        if "://" in spec:
            raise InputError(f"{spec}: not a video FFmpeg can open ({one_line(exc)})") from None
        sequential = _SequentialFile(spec)
        try:
            return av.open(sequential, "r", metadata_errors=METADATA_ERRORS), sequential
        except (av.error.FFmpegError, OSError):
            sequential.close()
            raise InputError(f"{spec}: not a video FFmpeg can open ({one_line(exc)})") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{spec}: not a video FFmpeg can open ({one_line(exc)})") from None


def _video_stream(container: InputContainer, spec: str) -> VideoStream:
    # Cover art in an audio file is a one-picture "video" stream; it is not a video.
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not container.streams:  # e.g. an MP4 whose only track has no samples
        raise InputError(f"{spec}: no video frames: the file holds no streams")
    if not videos:
        found = ", ".join(sorted({s.type for s in container.streams}))
        raise InputError(f"{spec}: no video stream (found: {found})")
    if videos[0].codec_context is None:
        raise InputError(f"{spec}: no decoder for its video codec, or its header is cut short")
    return videos[0]


def _nominal_step(stream: VideoStream, time_base: Fraction) -> int:
    """One frame's duration in ticks of ``time_base``, from the best frame rate the container suggests."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return max(1, round(1 / (rate * time_base))) if rate else 1


def _describe(spec: str, container: InputContainer, stream: VideoStream, time_base: Fraction, first: Frame) -> SourceInfo:
    if stream.duration is not None:
        duration = float(stream.duration * time_base)
    else:
        duration = container.duration / av.time_base if container.duration is not None else None
    frame_count = stream.frames or None
    if frame_count is None and container.format.name.startswith("mov,"):
        # Fragmented MP4 (what VideoWriter writes) states no frame count, but its sample index is complete.
        frame_count = len(stream.index_entries) or None
    return SourceInfo(
        path=spec,
        container=container.format.name,
        codec=stream.codec_context.codec.canonical_name,  # the format's name (msmpeg4v3), not the decoder's
        width=first.width,
        height=first.height,
        fps=float(stream.average_rate) if stream.average_rate else None,
        frame_count=frame_count,
        duration=duration,
        time_base=time_base,
    )
