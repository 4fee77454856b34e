"""``streamseg segment`` with several sources: run them, show progress, report, and give the exit code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..config import SegmentConfig
from ..errors import InputError, StreamsegError
from . import BACKENDS, DEFAULT_MAX_CONCURRENT, FAILED, SKIPPED, plan_jobs, segment_many
from .display import ManyDisplay


@dataclass
class ManyOptions:
    """The command line's options for several sources (None: not given)."""

    backend: str = "local"
    max_concurrent: int | None = None
    resume: bool = False
    ray_address: str | None = None
    workers: int | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float | None = None

    def given(self) -> list[str]:
        """The many-source options set on the command line (for refusing them with one source)."""
        flags = {"--backend": self.backend != "local", "--max-concurrent": self.max_concurrent is not None,
                 "--resume": self.resume, "--ray-address": self.ray_address is not None,
                 "--workers": self.workers is not None, "--cpus-per-worker": self.cpus_per_worker is not None,
                 "--gpus-per-worker": self.gpus_per_worker is not None}
        return [flag for flag, set_ in flags.items() if set_]

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend '{self.backend}' (known: {', '.join(BACKENDS)})")
        ray_only = [f for f in self.given() if f in ("--ray-address", "--workers", "--cpus-per-worker",
                                                     "--gpus-per-worker")]
        if self.backend != "ray" and ray_only:
            raise InputError(f"{', '.join(ray_only)} apply to --backend ray")
        if self.backend == "ray" and self.max_concurrent is not None:
            raise InputError("--max-concurrent applies to the local backend; with ray, --workers sets how many run")


def run_many(sources: list[str], out: Path | None, overwrite: bool, settings: SegmentConfig, options: ManyOptions,
             exports: list[str], console: Console, quiet: bool) -> int:
    """Segment every source into OUT/<name>/; the exit code: 0, or 1 when any source failed."""
    from ..export import export

    options.check()
    out = out or Path("runs")
    jobs = plan_jobs(sources, out)  # the sources' errors (an empty folder, a missing list) before Ray starts
    if options.backend == "ray":
        from .ray_backend import require_ray

        require_ray()  # before the display starts: the error is then the one line on stderr
    results = []
    with ManyDisplay(console, len(jobs), quiet) as display:
        for result in segment_many(
                sources, out, options.backend, overwrite=overwrite, resume=options.resume,
                max_concurrent=options.max_concurrent or DEFAULT_MAX_CONCURRENT, on_progress=display.on_progress,
                config=settings, ray_address=options.ray_address, workers=options.workers,
                cpus_per_worker=1.0 if options.cpus_per_worker is None else options.cpus_per_worker,
                gpus_per_worker=options.gpus_per_worker or 0.0):
            display.on_result(result)
            if result.status != FAILED and result.status != SKIPPED:
                for fmt in exports:
                    try:
                        export(result.out / "frames.jsonl", fmt)
                    except StreamsegError as exc:  # the run itself is complete; say what is missing, go on
                        console.print(f"[yellow]warning[/yellow]: {escape(result.name)}: export {fmt}: "
                                      f"{escape(str(exc))}", soft_wrap=True, highlight=False)
            results.append(result)
    failed = [r for r in results if r.status == FAILED]
    if not quiet:
        done = len(results) - len(failed)
        skipped = sum(r.status == SKIPPED for r in results)
        console.print(f"[green]done[/green]: {done} of {len(jobs)} sources" + (f" ({skipped} skipped, complete before)"
                      if skipped else "") + f"; {sum(r.frames or 0 for r in results if r.status != SKIPPED)} frames")
        console.print(f"  {escape(str(jobs[0].out.parent / 'index.json'))}", highlight=False)
    for result in failed:  # shown even with --quiet: the exit code says something failed, this says what
        console.print(f"[red]failed[/red]: {escape(result.name)}: {escape(result.error or '')}", soft_wrap=True,
                      highlight=False)
    return 1 if failed else 0
