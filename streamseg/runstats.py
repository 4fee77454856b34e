"""What a run measures as it goes: frames, seconds of work per stage, per-frame latency, detections."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .formats import RunFigures
from .system import peak_rss_mb

LATENCY_WINDOW = 10_000  # frames whose decode-to-output latency is kept for percentiles
STAGES = ("decode", "infer", "postprocess", "track", "count", "render", "encode", "write")


@dataclass
class RunStats:
    frames_decoded: int = 0
    frames_inferred: int = 0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    detections: Counter = field(default_factory=Counter)
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the block's seconds to ``stage``: thread-seconds, so several inference workers add up."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` of work to ``stage`` (from any thread: inference workers share stages)."""
        with self._lock:
            self.stage_seconds[stage] += seconds

    def latency_ms(self, percentile: float) -> float | None:
        return round(float(np.percentile(self.latencies, percentile)) * 1000, 2) if self.latencies else None

    def figures(self) -> RunFigures:
        return RunFigures(
            frames_decoded=self.frames_decoded,
            frames_inferred=self.frames_inferred,
            wall_seconds=round(self.wall_seconds, 3),
            fps=round(self.frames_decoded / self.wall_seconds, 2) if self.wall_seconds else None,
            stage_seconds={k: round(v, 3) for k, v in self.stage_seconds.items()},
            latency_p50_ms=self.latency_ms(50),
            latency_p95_ms=self.latency_ms(95),
            peak_rss_mb=round(peak_rss_mb(), 1),
        )
