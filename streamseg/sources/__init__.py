"""Where frames come from: one :class:`FrameSource` interface, and :func:`open_source` to pick the kind.

Each kind lives in one module:

- :mod:`.files`: a video file, ``-`` (standard input) or a recording on a web server, read front to back
  with the container's own timestamps (:class:`VideoSource`);
- :mod:`.live`: a camera or live network stream, read by a thread, stamped with real time, dropped
  to stay current and reconnected after outages (:class:`LiveSource`);
- :mod:`.capture`: telling specs apart and opening one connection to a camera or stream (used by ``live``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import InputError
from .base import LATENCIES, METADATA_ERRORS, FrameSource, Latency, SourceInfo
from .capture import is_camera, is_live, is_network, is_recording, redact
from .files import VideoSource
from .live import LiveOptions, LiveSource

__all__ = ["LATENCIES", "METADATA_ERRORS", "FrameSource", "Latency", "LiveOptions", "LiveSource", "SourceInfo",
           "SourceSettings", "VideoSource", "is_camera", "is_live", "is_network", "is_recording", "open_source",
           "redact", "run_name"]


class SourceSettings(Protocol):
    """The settings :func:`open_source` reads (a :class:`streamseg.config.SegmentConfig` has them all)."""

    start: float
    duration: float | None
    latency: Latency | None
    reconnect: bool | None
    reconnect_max: float
    timeout: float
    camera_fps: float | None

    def camera_dimensions(self) -> tuple[int, int] | None: ...


def open_source(spec: str | os.PathLike, config: SourceSettings | None = None, *,
                start: float | None = None) -> FrameSource:
    """Open ``spec``: a file, ``-`` (stdin) or a recording on a web server as a :class:`VideoSource`; a camera
    (``cam:0``, ``/dev/video0``) or live network stream as a :class:`LiveSource`. Raises :class:`InputError`.

    ``config`` brings ``start``, ``duration`` (video time for a file, real time for a live source), the
    latency and the live settings; ``start`` given here wins over the config's. Without ``config``, a file
    is read completely from ``start`` and a live source gets :class:`LiveOptions`' defaults.
    """
    spec = os.fspath(spec)
    if config is None:
        if is_live(spec):
            return LiveSource(spec, LiveOptions(reconnect=is_network(spec)))
        return VideoSource(spec, start=0.0 if start is None else start)
    start = config.start if start is None else start
    if not is_live(spec) or is_recording(spec, config.timeout):
        if config.latency == "low":
            raise InputError(f"{spec}: latency low is for cameras and network streams; a file is read completely")
        return VideoSource(spec, start=start, duration=config.duration)
    if start:
        raise InputError(f"{spec}: start applies to files; a live source starts now")
    reconnect = is_network(spec) if config.reconnect is None else config.reconnect
    return LiveSource(spec, LiveOptions(latency=config.latency or "low", reconnect=reconnect,
                                        reconnect_max=config.reconnect_max, timeout=config.timeout,
                                        camera_size=config.camera_dimensions(), camera_fps=config.camera_fps,
                                        duration=config.duration))


def run_name(spec: str | os.PathLike) -> str:
    """A folder name for a run of ``spec``: the file's stem, ``cam0``, ``stdin``, or a stream's host and path."""
    spec = os.fspath(spec)
    if spec == "-":
        name = "stdin"
    elif spec.startswith("cam:") and is_camera(spec):
        name = "cam" + spec[4:]
    elif is_live(spec) and "://" in spec:
        parts = urlsplit(spec)
        name = "-".join(p for p in (parts.hostname, Path(parts.path).stem) if p)
    else:
        name = Path(spec).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "stream"
