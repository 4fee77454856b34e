"""Threads joined by bounded queues, with results in input order and failures surfaced promptly.

``Stages(items, [Stage("infer", fn, workers=2), Stage("write", fn2)])`` feeds ``items`` through
each stage's function in its own thread(s) and yields the outputs of the last stage in the order the
items came in, whatever order the workers finish in. Memory is bounded by ``queue_size`` per stage
plus the items in flight, never by the number of items. The first exception in any thread stops
every stage and is raised in the consumer; closing the iterator early stops them too.

With ``pull=True`` an item is taken from ``items`` only when a worker of the first stage is free to
start on it, so it waits in no queue: a live source then hands over its newest frame, not one that
aged behind others. ``interrupt`` is called first when the stages close, to end a wait for the next
item that no stop flag here can reach (a live stream that went silent).
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

_END = object()
_POLL = 0.05  # seconds between looks at the stop flag while blocked on a queue


@dataclass
class Stage:
    name: str
    work: Callable[[object], object]
    workers: int = 1
    setup: Callable[[], None] | None = None  # run once in each worker thread before its first item


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Stages:
    """Run ``items`` through ``stages``; iterate for the last stage's outputs, in order."""

    def __init__(self, items: Iterable, stages: list[Stage], queue_size: int = 4, name: str = "streamseg",
                 pull: bool = False, interrupt: Callable[[], None] | None = None):
        self.stop = threading.Event()
        self._interrupt = interrupt  # ends a wait for the next item (a stalled live stream) when closing
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0) if pull else None  # one release per first-stage worker waiting for work
        self._queues = [queue.Queue(queue_size) for _ in range(len(stages) + 1)]
        self._threads = [threading.Thread(target=self._feed, args=(iter(items),), name=f"{name}-source", daemon=True)]
        for index, stage in enumerate(stages):
            inbox, outbox = self._queues[index], self._queues[index + 1]
            self._threads += [
                threading.Thread(target=self._serve, args=(stage, inbox, outbox, index == 0), name=f"{name}-{stage.name}-{w}", daemon=True)
                for w in range(stage.workers)
            ]
        self._remaining = {stage.name: stage.workers for stage in stages}
        for thread in self._threads:
            thread.start()

    def _put(self, box: queue.Queue, entry: tuple) -> bool:
        while not self.stop.is_set():
            try:
                box.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _receive(self, box: queue.Queue, ordered: bool, idle: threading.Semaphore | None = None) -> Iterator[tuple[int, object]]:
        """Entries from ``box``; with ``ordered``, in sequence order (early arrivals wait in a heap).

        Failures jump the queue: the consumer should hear of them at once, not after the backlog.
        ``idle`` is released once each time the caller starts waiting for an entry.
        """
        pending: list = []
        expected = 0
        waiting = False
        while not self.stop.is_set():
            if idle is not None and not waiting:
                idle.release()
                waiting = True
            try:
                entry = box.get(timeout=_POLL)
            except queue.Empty:
                continue
            waiting = False
            if not ordered or isinstance(entry[1], _Failure):
                yield entry
                continue
            heapq.heappush(pending, (entry[0], id(entry[1]), entry[1]))
            while pending and pending[0][0] == expected:
                sequence, _, item = heapq.heappop(pending)
                yield sequence, item
                expected += 1

    def _feed(self, items: Iterator) -> None:
        sequence = 0
        try:
            while not self.stop.is_set():
                if self._idle is not None and not self._idle.acquire(timeout=_POLL):
                    continue  # no worker free yet: leave the item where it is, getting no older
                item = next(items, _END)
                if item is _END:
                    break
                if not self._put(self._queues[0], (sequence, item)):
                    return
                sequence += 1
        except BaseException as exc:  # noqa: BLE001 - handed downstream to the consumer
            self._put(self._queues[0], (sequence, _Failure(exc)))
            return
        self._put(self._queues[0], (sequence, _END))

    def _serve(self, stage: Stage, inbox: queue.Queue, outbox: queue.Queue, first: bool) -> None:
        # One worker keeps the order it is given; several work in parallel and the next one-worker
        # stage (or the consumer) puts their results back in order.
        if stage.setup is not None:
            try:
                stage.setup()
            except BaseException as exc:  # noqa: BLE001 - handed downstream to the consumer
                self._put(outbox, (-1, _Failure(exc)))
                return
        idle = self._idle if first else None
        for sequence, item in self._receive(inbox, ordered=stage.workers == 1, idle=idle):
            if isinstance(item, _Failure):
                self._put(outbox, (sequence, item))
                return
            if item is _END:
                with self._lock:
                    self._remaining[stage.name] -= 1
                    last = self._remaining[stage.name] == 0
                # Siblings still working need to see the end too; the last one out passes it on.
                self._put(outbox if last else inbox, (sequence, item))
                return
            try:
                result = stage.work(item)
            except BaseException as exc:  # noqa: BLE001 - handed downstream to the consumer
                result = _Failure(exc)
            if not self._put(outbox, (sequence, result)) or isinstance(result, _Failure):
                return

    def __iter__(self) -> Iterator:
        try:
            for _, item in self._receive(self._queues[-1], ordered=True):
                if isinstance(item, _Failure):
                    raise item.error
                if item is _END:
                    return
                yield item
        finally:
            self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every thread; waits up to ``timeout`` for work in progress (a forward pass) to end."""
        self.stop.set()
        if self._interrupt is not None:
            self._interrupt()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
