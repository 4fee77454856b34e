"""What every source is: :class:`SourceInfo` before the frames, :class:`FrameSource` while reading them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Literal, Protocol, get_args

from ..instances import Frame

# How a source keeps up when the run falls behind: ``low`` keeps only the newest frame (a live source drops
# the stale ones); ``complete`` keeps every frame, so the source waits (a file) or backs up (a stream).
Latency = Literal["low", "complete"]
LATENCIES: tuple[str, ...] = get_args(Latency)

# How PyAV decodes metadata tags (UTF-8): a damaged or foreign tag is read without its bad bytes rather than
# failing a video whose pictures decode. Every container streamseg reads is opened with it.
METADATA_ERRORS = "ignore"


@dataclass
class SourceInfo:
    """What is known about a source before its frames are read."""

    path: str  # as given
    container: str  # FFmpeg's demuxer name, e.g. "avi" or "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "h264", "msmpeg4v3", "cinepak"
    width: int  # of the frames this source yields
    height: int
    fps: float | None  # average frame rate, if the container states one
    frame_count: int | None  # None when unknown (live, or no index)
    duration: float | None  # seconds, None when unknown
    time_base: Fraction  # the video stream's time base: the unit of Frame.pts
    live: bool = False
    rotation: int = 0  # degrees (counterclockwise) the stored pictures were turned to display upright

    def to_dict(self) -> dict:
        """JSON-ready: the time base as a "num/den" string."""
        return {**asdict(self), "time_base": f"{self.time_base.numerator}/{self.time_base.denominator}"}


@dataclass
class LiveReport:
    """A live source's part of the run summary (docs/format.md, ``source``): frames dropped to stay current,
    its latency policy, every outage, and the seconds from opening each connection to its first frame."""

    dropped_frames: int
    latency: Latency
    outages: list[dict]
    first_frame_seconds: list[float]

    def to_dict(self) -> dict:
        return {"dropped_frames": self.dropped_frames, "outages": list(self.outages), "latency": self.latency,
                "first_frame_seconds": list(self.first_frame_seconds)}


class FrameSource(Protocol):
    """What a run reads: ``info``, frames in order, and the few things it asks of a source besides.

    :class:`~streamseg.sources.files.VideoSource` (files, stdin, recordings) and
    :class:`~streamseg.sources.live.LiveSource` (cameras, live streams) are the built-in ones;
    :func:`streamseg.sources.open_source` picks between them. Any object with these members is a source
    too (:class:`streamseg.synth.SyntheticSource`); subclass this protocol to inherit the defaults below
    and write only ``info`` and ``__iter__``.
    """

    info: SourceInfo
    decode_errors: int = 0  # packets the decoder rejected and skipped (the summary's ``decode_errors``)
    latency: Latency = "complete"  # "low": the run takes one frame at a time, only when a worker is free

    @property
    def live(self) -> bool:
        """Whether the frames come in real time (a camera, a stream) rather than as fast as they are read."""
        return self.info.live

    def __iter__(self) -> Iterator[Frame]: ...

    def stop(self) -> None:
        """End the frames at the next one (``q`` pressed, a time limit): the run then ends as at the source's end."""

    def report(self) -> LiveReport | None:
        """The source's own part of the run summary (a live source's drops and outages); none for a file."""
        return None

    def close(self) -> None:
        """Let go of whatever the source holds open; called once the run ends, however it ends."""
