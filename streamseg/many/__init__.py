"""Many sources in one call: ``segment_many`` and what the ``segment`` command runs for several SOURCEs.

Every source gets a folder ``OUT/<name>/`` holding its own run (``overlay.mp4``, ``frames.jsonl``,
``summary.json``, exactly as a run of that source alone), and ``OUT/index.json`` lists them all.
Sources run on a backend: ``local`` (this process, one model shared) or ``ray`` (a pool of Ray
actors, on this machine or a cluster). One bad source fails alone; the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..config import SegmentConfig, build_config
from ..errors import InputError, OutputError
from ..outputs import is_run_file
from .index import Index, check_index_is_ours
from .jobs import COMPLETE, FAILED, RUNNING, SKIPPED, Job, SourceProgress, SourceResult, completed_summary, skipped
from .names import source_name, unique_names
from .specs import expand_sources, is_collection

BACKENDS = ("local", "ray")
DEFAULT_MAX_CONCURRENT = 2

__all__ = ["COMPLETE", "FAILED", "SKIPPED", "Job", "SourceProgress", "SourceResult", "expand_sources",
           "is_collection", "plan_jobs", "segment_many", "source_name", "unique_names"]


def plan_jobs(sources: Iterable[str | os.PathLike], out: str | Path) -> list[Job]:
    """The jobs for ``sources`` (files, folders, globs, streams, ``@lists``) under ``out``."""
    specs = expand_sources([os.fspath(s) for s in ([sources] if isinstance(sources, str | os.PathLike) else sources)])
    if not specs:
        raise InputError("no sources given")
    root = Path(out).expanduser().absolute()  # absolute: a Ray worker on another node gets the same path
    return [Job(spec, name, root / name) for spec, name in zip(specs, unique_names(specs))]


def segment_many(sources: Iterable[str | os.PathLike] | str, out: str | Path = "runs", backend: str = "local", *,
                 overwrite: bool = False, resume: bool = False, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 on_progress: Callable[[SourceProgress], None] | None = None, config: SegmentConfig | None = None,
                 ray_address: str | None = None, workers: int | None = None, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, **settings) -> Iterator[SourceResult]:
    """Segment every source into ``out/<name>/``; yields a :class:`SourceResult` per source as it ends.

    ``settings`` are :class:`SegmentConfig` fields (or pass ``config``); ``resume`` skips sources whose
    summary says complete and replaces incomplete runs; ``on_progress`` hears of each source's frames::

        for result in streamseg.segment_many(["a.mp4", "recordings/"], out="runs/night"):
            print(result.name, result.status, result.error or result.frames)
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
    if max_concurrent < 1 or (workers is not None and workers < 1) or cpus_per_worker < 0 or gpus_per_worker < 0:
        raise InputError("max_concurrent and workers must be at least 1, cpus and gpus per worker not negative")
    if config is not None and settings:
        raise InputError(f"pass settings in config or as keywords, not both ({', '.join(sorted(settings))})")
    settings_ = config.validate() if config is not None else build_config(**settings)
    jobs = plan_jobs(sources, out)
    root = jobs[0].out.parent
    check_index_is_ours(root / "index.json")
    engine = _backend(backend, settings_, max_concurrent, ray_address, workers, cpus_per_worker, gpus_per_worker)
    try:
        _prepare_root(root)  # once the backend is up: a missing Ray or a bad model leaves no folder behind
        todo, done = _resume(jobs, overwrite, resume)
        index = Index(root, jobs, backend)
        for result in done:
            index.update(result.name, SKIPPED, result)
            yield result
        started: set[str] = set()

        def report(progress: SourceProgress) -> None:
            if (progress.name, progress.attempt) not in started:
                started.add((progress.name, progress.attempt))
                index.update(progress.name, RUNNING)
            if on_progress is not None:
                on_progress(progress)

        if todo:
            yield from engine.run(todo, report, lambda result: index.update(result.name, result.status, result))
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()


def _prepare_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root}: exists and is not a directory")
    check_index_is_ours(root / "index.json")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{root}: cannot create it ({exc.strerror or exc})") from None


def _resume(jobs: list[Job], overwrite: bool, resume: bool) -> tuple[list[tuple[Job, bool]], list[SourceResult]]:
    """(job, overwrite) for each source to run, and the results of those ``resume`` skips.

    Resuming replaces an incomplete run's files (its own files only: anything else there is still refused).
    """
    todo, done = [], []
    for job in jobs:
        summary = completed_summary(job.out) if resume else None
        if summary is not None:
            done.append(skipped(job, summary))
            continue
        partial = resume and job.out.is_dir() and any(is_run_file(entry) for entry in job.out.iterdir())
        todo.append((job, overwrite or partial))
    return todo, done


def _backend(name: str, settings: SegmentConfig, max_concurrent: int, address: str | None, workers: int | None,
             cpus: float, gpus: float):
    if name == "ray":
        from .ray_backend import RayBackend, RayOptions

        return RayBackend(settings, RayOptions(address, workers, cpus, gpus))
    from .local import LocalBackend

    return LocalBackend(settings, max_concurrent)
