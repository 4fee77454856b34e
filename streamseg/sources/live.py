"""Live sources: cameras and network streams, read by a thread that never waits for the pipeline.

A live source is stamped with real time as frames arrive, so the overlay of a ten-minute run lasts ten
minutes whatever the camera's own clock says. Two policies decide what happens when inference falls
behind: ``low`` latency keeps only the newest frame (older ones are dropped and counted, so what is
shown is at most about one frame old); ``complete`` keeps every frame, letting the stream back up.
A connection that fails or ends is opened again with exponential backoff; each outage is recorded,
and so is how long each connection took from starting to open to its first frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from ..errors import InputError
from ..formats import iso_utc
from ..instances import Frame
from .base import LATENCIES, FrameSource, Latency, LiveReport, SourceInfo
from .capture import Capture, ConnectionLost, connector, is_camera, redact

log = logging.getLogger("streamseg.live")

TIME_BASE = Fraction(1, 1000)  # live frames are stamped in milliseconds of real time
COMPLETE_BUFFER = 64  # frames a ``complete`` run holds before the reader stops reading and the stream backs up
FIRST_RETRY = 0.5  # seconds before the first reconnection attempt; doubles up to ``reconnect_max``
_WAKE = 0.1  # seconds between looks at the stop flag and the deadline while waiting
CLOSE_WAIT = 0.5  # seconds close() gives the reader to let go of its connection


@dataclass
class LiveOptions:
    latency: Latency = "low"
    reconnect: bool = True
    reconnect_max: float = 30.0  # most seconds between two reconnection attempts
    timeout: float = 10.0  # seconds an open or a read may wait for data
    camera_size: tuple[int, int] | None = None
    camera_fps: float | None = None
    duration: float | None = None  # seconds of real time after which the source ends

class LiveSource(FrameSource):
    """Frames of a camera or network stream, read by a background thread, stamped with real time.

    ``Frame.index`` counts every frame received, dropped ones included, so gaps in the indices of what
    is yielded are the drops; ``Frame.dropped_before`` says how many, ``Frame.events`` carries the
    outages that ended just before it. Opening fails with :class:`InputError` when the first
    connection or its first frame cannot be had within the timeout.
    """

    def __init__(self, spec: str, options: LiveOptions | None = None, connect: Callable[[], Capture] | None = None):
        self.spec = spec
        self.name = redact(spec)
        self.options = options or LiveOptions()
        if self.options.latency not in LATENCIES:
            raise InputError(f"latency must be {' or '.join(LATENCIES)}, got '{self.options.latency}'")
        self._connect = connect or connector(spec, self.options.timeout, self.options.camera_size, self.options.camera_fps)
        self.dropped = 0
        self.outages: list[dict] = []
        # Per connection (the first, then each reconnection): seconds from starting to open it to its first frame.
        self.first_frame_seconds: list[float] = []
        self._opening_since: float | None = None  # when the connection still waiting for its first frame began to open
        self._closed_errors = 0  # decode errors of connections already closed
        self._capture: Capture | None = None
        self._buffer: deque[Frame] = deque()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._ended = False
        self._failure: BaseException | None = None
        self._pending_drops = 0
        self._pending_events: list[dict] = []
        self._next_index = 0
        self._last_pts = -1
        try:
            self._opening_since = time.monotonic()
            self._capture = self._connect()
            image = self._capture.read()
        except ConnectionLost as exc:
            self.close()
            kind = "camera" if is_camera(spec) else "stream"
            raise InputError(f"{self.name}: cannot open {kind} ({_scrub(str(exc), spec)})") from None
        if image is None:
            self.close()
            raise InputError(f"{self.name}: the stream ended before its first frame")
        self._size = (image.shape[1], image.shape[0])
        self.info = SourceInfo(path=self.name, container=self._capture.container, codec=self._capture.codec,
                               width=self._size[0], height=self._size[1], fps=self._capture.fps, frame_count=None,
                               duration=None, time_base=TIME_BASE, live=True)
        self._started = time.monotonic()
        self._push(image)
        self._reader = threading.Thread(target=self._read_all, name="streamseg-live-reader", daemon=True)
        self._reader.start()

    @property
    def latency(self) -> Latency:
        return self.options.latency

    @property
    def decode_errors(self) -> int:
        return self._closed_errors + getattr(self._capture, "decode_errors", 0)

    def report(self) -> LiveReport:
        """For the run summary: what was dropped, every outage, how fast each connection gave its first frame."""
        return LiveReport(self.dropped, self.options.latency, list(self.outages), list(self.first_frame_seconds))

    def __iter__(self) -> Iterator[Frame]:
        deadline = self._started + self.options.duration if self.options.duration is not None else None
        while True:
            with self._changed:
                while not self._buffer and not self._ended and not self._stopping.is_set():
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                    self._changed.wait(_WAKE)
                if self._failure is not None:
                    raise self._failure
                if not self._buffer or self._stopping.is_set():
                    return
                frame = self._buffer.popleft()
                frame.dropped_before, self._pending_drops = self._pending_drops, 0
                frame.events, self._pending_events = self._pending_events, []
                self._changed.notify_all()  # a ``complete`` reader may be waiting for room
            if deadline is not None and frame.time >= self.options.duration:
                return
            yield frame

    def stop(self) -> None:
        """End the frames now (``q`` pressed, duration reached); the reader stops at its next frame."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """Stop, and return within about ``CLOSE_WAIT`` seconds even if the stream has stalled.

        The reader closes its own connection, never this thread. A read or an open of a stalled stream
        cannot be cut short from here (PyAV offers no way to fire FFmpeg's interrupt callback before the
        timeout), so a reader still waiting on one closes its connection when that returns; it is a
        daemon thread, so it keeps no program alive meanwhile.
        """
        self.stop()
        reader = getattr(self, "_reader", None)
        if reader is not None and reader is not threading.current_thread():
            reader.join(CLOSE_WAIT)
        elif self._capture is not None:
            self._capture.close()

    def _push(self, image: np.ndarray) -> None:
        if self._opening_since is not None:
            self.first_frame_seconds.append(round(time.monotonic() - self._opening_since, 3))
            self._opening_since = None
        if (image.shape[1], image.shape[0]) != self._size:
            # A camera or stream may come back at another resolution; later stages assume one size.
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        pts = max(round((time.monotonic() - self._started) / TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        frame = Frame(self._next_index, float(pts * TIME_BASE), image, pts, TIME_BASE,
                      captured_at=time.perf_counter(), wall_time=time.time())
        self._next_index += 1
        with self._changed:
            if self.options.latency == "complete":
                while len(self._buffer) >= COMPLETE_BUFFER and not self._stopping.is_set():
                    self._changed.wait(_WAKE)
            elif self._buffer:  # low latency: the waiting frame is stale now that a newer one is here
                self._buffer.popleft()
                self.dropped += 1
                self._pending_drops += 1
            self._buffer.append(frame)
            self._changed.notify_all()

    def _read_all(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    image = self._capture.read()
                    reason = "the stream ended"
                except ConnectionLost as exc:
                    image, reason = None, _scrub(str(exc), self.spec) or "read failed"
                if image is not None:
                    self._push(image)
                    continue
                self._release()
                if not self.options.reconnect or not self._reconnect(reason):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._failure = exc
        finally:
            self._release()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _release(self) -> None:
        if self._capture is not None:
            self._closed_errors += getattr(self._capture, "decode_errors", 0)
            self._capture.close()
            self._capture = None

    def _reconnect(self, reason: str) -> bool:
        """Open the stream again, waiting longer after each failure. False when stopped first."""
        lost_wall, lost = time.time(), time.monotonic()
        outage = {"event": "outage", "lost_at": iso_utc(lost_wall), "reason": reason, "gap_seconds": None, "attempts": 0}
        self.outages.append(outage)
        log.warning("%s: %s; reconnecting", self.name, reason)
        delay = FIRST_RETRY
        while not self._stopping.wait(delay):
            outage["attempts"] += 1
            self._opening_since = time.monotonic()
            try:
                self._capture = self._connect()
            except ConnectionLost as exc:
                log.info("%s: reconnection attempt %d failed (%s)", self.name, outage["attempts"], _scrub(str(exc), self.spec))
                delay = min(delay * 2, self.options.reconnect_max)
                continue
            outage["gap_seconds"] = round(time.monotonic() - lost, 3)
            log.warning("%s: reconnected after %.1f s", self.name, outage["gap_seconds"])
            with self._changed:
                self._pending_events.append(dict(outage))
            return True
        return False


def _scrub(text: str, spec: str) -> str:
    """``text`` without the credentials of ``spec``, should FFmpeg have quoted the URL."""
    return text.replace(spec, redact(spec))
