"""Inference shared by runs side by side: one predictor, one set of worker threads, for every source.

Several sources in one process (``segment_many``'s local backend) could each start their own
inference workers, and on two cores four or eight of them would fight for the CPU in whatever order
the OS picks. An :class:`InferencePool` keeps the process's worker count at what one run would use,
and serves the runs' requests in the order they came, so each source gets its turn:

- **Live sources first.** A camera's frame waits behind no file's: a request marked ``urgent`` is
  taken before any other waiting one, and files use what is left.
- **Cross-source batching.** Requests waiting together are merged into one forward pass of up to
  ``max_batch`` frames (on CUDA, eight; on a CPU, one, where a larger pass is no faster): eight cameras
  sending a frame each make one pass of eight, as DeepStream's stream muxer does, here with any
  mix of frame sizes. Postprocessing the merged pass is one batch too (see ``Predictor.postprocess``).

A run asks with :meth:`InferencePool.infer` from its own inference stage threads and waits; the pool's
threads do the work. A run alone needs no pool and calls its predictor in its own threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .engine import Predictor
from .instances import Frame, Instances


@dataclass
class Inferred:
    """A request's instances (one per frame) and the thread-seconds spent on it, for its run's stats."""

    found: list[Instances]
    forward_seconds: float = 0.0
    postprocess_seconds: float = 0.0


def infer_here(predictor: Predictor, frames: Sequence[Frame]) -> Inferred:
    """``frames`` through ``predictor`` in the calling thread."""
    started = time.perf_counter()
    raws = predictor.forward(frames)
    forwarded = time.perf_counter()
    found = predictor.postprocess(raws, frames)
    return Inferred(found, forwarded - started, time.perf_counter() - forwarded)


@dataclass
class _Request:
    frames: Sequence[Frame]
    done: threading.Event = field(default_factory=threading.Event)
    result: Inferred | None = None
    error: BaseException | None = None


class InferencePool:
    """``workers`` threads running ``predictor`` for every run that asks; see the module's description."""

    def __init__(self, predictor: Predictor, workers: int, threads_per_worker: int | None, max_batch: int):
        self.predictor = predictor
        self.workers = max(1, workers)
        self.threads_per_worker = threads_per_worker
        self.max_batch = max(1, max_batch)
        self._urgent: deque[_Request] = deque()
        self._waiting: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.passes = 0  # forward passes run, and how many requests each merged: what batching achieved
        self.merged_requests = 0

    def infer(self, frames: Sequence[Frame], urgent: bool = False) -> Inferred:
        """Instances of ``frames``, once a worker has run them (``urgent``: before any waiting request)."""
        if not frames:  # a batch whose frames a stride skips: nothing to wait for
            return Inferred([])
        request = _Request(frames)
        with self._ready:
            if self._closed:
                raise RuntimeError("inference pool is closed")
            self._start()
            (self._urgent if urgent else self._waiting).append(request)
            self._ready.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        """Stop the workers once the requests already waiting are served."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()

    def _start(self) -> None:
        """The workers, on the first request (under the lock)."""
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._serve, daemon=True, name=f"inference {len(self._threads)}")
            self._threads.append(thread)
            thread.start()

    def _serve(self) -> None:
        if self.threads_per_worker:
            torch.set_num_threads(self.threads_per_worker)
        while True:
            requests = self._take()
            if not requests:
                return
            frames = [frame for request in requests for frame in request.frames]
            try:
                inferred = infer_here(self.predictor, frames)
            except BaseException as exc:  # noqa: BLE001 - the asking runs raise it, as if they had run it themselves
                for request in requests:
                    request.error = exc
                    request.done.set()
                continue
            self._hand_out(requests, inferred, len(frames))

    def _take(self) -> list[_Request]:
        """The next request, and those waiting behind it that fit in one pass with it; [] once closed."""
        with self._ready:
            while not (self._urgent or self._waiting or self._closed):
                self._ready.wait()
            taken: list[_Request] = []
            frames = 0
            for box in (self._urgent, self._waiting):
                while box and (not taken or frames + len(box[0].frames) <= self.max_batch):
                    request = box.popleft()
                    taken.append(request)
                    frames += len(request.frames)
            if taken:
                self.passes += 1
                self.merged_requests += len(taken)
            return taken

    @staticmethod
    def _hand_out(requests: list[_Request], inferred: Inferred, frames: int) -> None:
        """Each request its own instances and its share of the pass's seconds."""
        start = 0
        for request in requests:
            count = len(request.frames)
            share = count / frames
            request.result = Inferred(inferred.found[start:start + count], inferred.forward_seconds * share,
                                      inferred.postprocess_seconds * share)
            request.done.set()
            start += count
