"""The local backend: every source in this process, on one loaded model.

Each running source has a :class:`~streamseg.pipeline.Segmenter` of its own (its tracker, counters,
latency policy and reconnects live in its run); all share one predictor and one
:class:`~streamseg.inference.InferencePool`: the weights are loaded (and an OpenVINO graph compiled)
once, and the process runs as many forward passes at once as one source alone would. Segmenters are
reused from source to source. File sources queue
for ``max_concurrent`` slots; live sources cannot wait, and all run at once, each in its thread.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator

from ..config import SegmentConfig
from ..pipeline import Segmenter
from .jobs import Cancel, Job, SourceProgress, SourceResult, run_job

POLL_SECONDS = 0.2
JOIN_SECONDS = 30.0  # how long an interrupted run waits for its sources to write their summaries


class SegmenterPool:
    """Segmenters on one model and one inference pool: one is taken per running source and given back
    when it ends. The sources' forward passes share the pool's workers, live sources first, and on CUDA
    frames of several sources go through one pass (see :mod:`streamseg.inference`)."""

    def __init__(self, settings: SegmentConfig):
        self.settings = settings
        first = Segmenter(settings)  # loads the model: a bad model fails here, before any source starts
        self.model = first.model
        self.inference = first.shared()
        self._idle: list[Segmenter] = []
        self._lock = threading.Lock()

    def take(self) -> Segmenter:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Segmenter(self.settings, pool=self.inference)

    def give_back(self, segmenter: Segmenter) -> None:
        with self._lock:
            self._idle.append(segmenter)

    def close(self) -> None:
        self.inference.close()


class LocalBackend:
    """Runs jobs in threads of this process; see the module's description."""

    name = "local"

    def __init__(self, settings: SegmentConfig, max_concurrent: int = 2):
        self.pool = SegmenterPool(settings)
        self.max_concurrent = max(1, max_concurrent)

    def run(self, jobs: list[tuple[Job, bool]], report: Callable[[SourceProgress], None],
            record: Callable[[SourceResult], None]) -> Iterator[SourceResult]:
        """Run each (job, overwrite); yields each result as its source ends, after ``record``-ing it."""
        events: queue.Queue = queue.Queue()
        cancel = Cancel()
        files = deque(item for item in jobs if not item[0].live)
        threads = [threading.Thread(target=self._one, args=(item, events, cancel), daemon=True,
                                    name=f"source {item[0].name}") for item in jobs if item[0].live]
        threads += [threading.Thread(target=self._files, args=(files, events, cancel), daemon=True,
                                     name=f"files {n}") for n in range(min(self.max_concurrent, len(files)))]
        for thread in threads:
            thread.start()
        remaining = len(jobs)
        try:
            while remaining:
                try:
                    event = events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if isinstance(event, SourceProgress):
                    report(event)
                    continue
                remaining -= 1
                record(event)
                yield event
        finally:
            if remaining:
                self._wind_down(threads, events, cancel, record)

    def close(self) -> None:
        self.pool.close()

    def _files(self, files: deque, events: queue.Queue, cancel: Cancel) -> None:
        while not cancel:
            try:
                item = files.popleft()  # deque.popleft is atomic: threads never take the same job
            except IndexError:
                return
            self._one(item, events, cancel)

    def _one(self, item: tuple[Job, bool], events: queue.Queue, cancel: Cancel) -> None:
        job, overwrite = item
        segmenter = self.pool.take()
        try:
            events.put(run_job(segmenter, job, overwrite, events.put, cancel))
        finally:
            self.pool.give_back(segmenter)

    @staticmethod
    def _wind_down(threads: list[threading.Thread], events: queue.Queue, cancel: Cancel,
                   record: Callable[[SourceResult], None]) -> None:
        """Stopped early (Ctrl-C, or the caller left): end running sources, record how they ended."""
        cancel.set()
        for thread in threads:
            thread.join(JOIN_SECONDS)
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, SourceResult):
                record(event)
