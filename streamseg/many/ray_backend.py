"""The Ray backend: a pool of Ray actors, each with a loaded model, running whole sources.

A source is a unit of work (tracking needs its frames in order, in one place): the driver hands
each idle actor the next source, the actor writes that source's run under the output folder (a path
every node must see), and sends its frame counts back through a Ray queue for the driver's display.
An actor that dies (its process killed, its node lost) is replaced, and its source is run again from
the start into the same folder, its partial files replaced: a source is reported complete only by a
run that ended complete. Ray is an optional extra, imported only here.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..config import SegmentConfig
from ..errors import InputError, PipelineError, StreamsegError
from .jobs import FAILED, Job, SourceProgress, SourceResult, run_job

MAX_ATTEMPTS = 3  # runs of one source whose worker died, before it is reported failed
POLL_SECONDS = 0.05
MISSING = "--backend ray needs Ray, which is not installed: pip install 'streamseg[ray]'"


def require_ray():
    """The ``ray`` module, or an InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(MISSING) from None
    return ray


class SourceWorker:
    """A Ray actor's state: a Segmenter (a loaded model) kept across the sources it is given."""

    def __init__(self, settings: SegmentConfig):
        from ..pipeline import Segmenter

        self.segmenter = Segmenter(settings)

    def ready(self) -> int:
        return os.getpid()

    def run(self, job: Job, overwrite: bool, attempt: int, progress) -> SourceResult:
        return run_job(self.segmenter, job, overwrite, progress.put_nowait, attempt=attempt)


@dataclass
class _Task:
    job: Job
    overwrite: bool
    attempt: int = 1


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: a local Ray; "auto", "HOST:PORT" or "ray://HOST:PORT": a cluster's
    workers: int | None = None  # None: as many as the cluster's free CPUs (GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


class RayBackend:
    """Runs jobs on Ray actors; see the module's description. Close it (or use ``with``) to free the actors."""

    name = "ray"

    def __init__(self, settings: SegmentConfig, options: RayOptions):
        self.ray = require_ray()
        self.settings, self.options = settings, options
        self.started_ray = False
        if not self.ray.is_initialized():
            self._init()
        from ray.util.queue import Queue

        self.progress = Queue(actor_options={"num_cpus": 0})
        self.actor_class = self.ray.remote(SourceWorker).options(
            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker, max_restarts=0)
        self.actors: list = []
        self.opened: set[tuple[str, int]] = set()

    def _init(self) -> None:
        address = self.options.address
        try:
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False,
                          logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address}" if address else "locally"
            raise InputError(f"cannot start or reach Ray {where}: {' '.join(str(exc).split())[:200]}") from None
        self.started_ray = True

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def worker_count(self, jobs: int) -> int:
        if self.options.workers:
            return max(1, min(self.options.workers, jobs))
        free = self.ray.available_resources()
        count = int(free.get("CPU", 1) // self.options.cpus_per_worker) if self.options.cpus_per_worker else jobs
        if self.options.gpus_per_worker:
            count = min(count, int(free.get("GPU", 0) // self.options.gpus_per_worker))
        return max(1, min(count, jobs))

    def _start_actor(self):
        actor = self.actor_class.remote(self.settings)
        self.actors.append(actor)
        return actor

    def _check_started(self, actors: list) -> None:
        """Wait for the first actors' models: a model that cannot load is one error, not a failure per source."""
        try:
            self.ray.get([actor.ready.remote() for actor in actors])
        except self.ray.exceptions.RayError as exc:
            raise _cause(exc) from None

    def run(self, jobs: list[tuple[Job, bool]], report: Callable[[SourceProgress], None],
            record: Callable[[SourceResult], None]) -> Iterator[SourceResult]:
        """Run each (job, overwrite); yields each result as its source ends, after ``record``-ing it."""
        ray = self.ray
        pending = deque(_Task(job, overwrite) for job, overwrite in jobs)
        idle = [self._start_actor() for _ in range(self.worker_count(len(jobs)))]
        self._check_started(idle)
        running: dict = {}
        self.opened: set[tuple[str, int]] = set()  # (source, attempt) whose run had made its folder
        try:
            while pending or running:
                while idle and pending:
                    actor, task = idle.pop(), pending.popleft()
                    running[actor.run.remote(task.job, task.overwrite, task.attempt, self.progress)] = (actor, task)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                self._drain(report)
                for ref in ready:
                    actor, task = running.pop(ref)
                    result = self._outcome(ref, actor, task, idle, pending)
                    if result is not None:
                        self._drain(report)
                        record(result)
                        yield result
        finally:
            for actor, task in running.values():  # stopped early: what was running ends here, incomplete
                ray.kill(actor)
                record(SourceResult(task.job.shown, task.job.name, task.job.out, FAILED,
                                    error="interrupted", attempts=task.attempt))

    def _outcome(self, ref, actor, task: _Task, idle: list, pending: deque) -> SourceResult | None:
        """The task's result; None when its worker died and the source goes back in the queue."""
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.ray.kill(actor)
            self.actors.remove(actor)
            idle.append(self._start_actor())
            if task.attempt < MAX_ATTEMPTS:  # again from the start, replacing its own partial files (if it made any)
                opened = (task.job.name, task.attempt) in self.opened
                pending.appendleft(_Task(task.job, task.overwrite or opened, task.attempt + 1))
                return None
            reason = f"its Ray worker died {task.attempt} times; last: {' '.join(str(exc).split())[:160]}"
            return SourceResult(task.job.shown, task.job.name, task.job.out, FAILED, error=reason,
                                attempts=task.attempt)
        except self.ray.exceptions.RayError as exc:
            idle.append(actor)
            return SourceResult(task.job.shown, task.job.name, task.job.out, FAILED, error=str(_cause(exc)),
                                attempts=task.attempt)
        idle.append(actor)
        return result

    def _drain(self, report: Callable[[SourceProgress], None]) -> None:
        waiting = self.progress.qsize()
        if waiting:
            for progress in self.progress.get_nowait_batch(waiting):
                self.opened.add((progress.name, progress.attempt))  # a run reports once its folder is ready
                report(progress)


def _cause(exc: BaseException) -> StreamsegError:
    """The streamseg error behind a Ray error, if there is one; else a PipelineError with its first line."""
    seen = exc
    for _ in range(5):
        seen = getattr(seen, "cause", None) or seen.__cause__
        if seen is None:
            break
        if isinstance(seen, StreamsegError):
            return seen
    first = next((line for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
    return PipelineError(f"a Ray worker failed: {first.strip()[:200]}")
