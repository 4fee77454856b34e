"""The terminal display of a many-source run: a row per running source and a row for them all."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .jobs import COMPLETE, SKIPPED, SourceProgress, SourceResult

MAX_ROWS = 12  # running sources shown; beyond that only the total moves


class ManyDisplay:
    """Feed it progress and results (from the thread that iterates the run); use as a context manager."""

    def __init__(self, console: Console, sources: int, quiet: bool = False):
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 disable=quiet, transient=False)
        self.total = self.progress.add_task("all sources", total=sources, info="")
        self.rows: dict[str, TaskID] = {}
        self.frames: dict[str, int] = {}
        self.finished: set[str] = set()
        self.done_frames = 0
        self.failed = 0
        self.started = time.monotonic()
        self.shown = False

    def __enter__(self) -> ManyDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.shown:
            self.progress.__exit__(*exc_info)

    def _show(self) -> None:
        """Start drawing at the first news of a source: an error before that (a missing model, no Ray) is then
        the only line on stderr."""
        if not self.shown:
            self.shown = True
            self.started = time.monotonic()
            self.progress.__enter__()

    def on_progress(self, update: SourceProgress) -> None:
        self._show()
        if update.name in self.finished:  # a late report (from a Ray worker that died) of a source that ended
            return
        row = self.rows.get(update.name)
        if row is None and len(self.rows) < MAX_ROWS:
            row = self.rows[update.name] = self.progress.add_task(update.name, total=update.total, info="")
        self.frames[update.name] = update.frames
        if row is not None:
            retry = f"attempt {update.attempt}" if update.attempt > 1 else ""
            self.progress.update(row, completed=update.frames, total=update.total, info=retry)
        self._total()

    def on_result(self, result: SourceResult) -> None:
        self._show()
        self.finished.add(result.name)
        row = self.rows.pop(result.name, None)
        if row is not None:
            self.progress.remove_task(row)
        self.frames.pop(result.name, None)
        if result.status != SKIPPED:
            self.done_frames += result.frames or 0
        self.failed += result.status not in (COMPLETE, SKIPPED)
        if result.status not in (COMPLETE, SKIPPED):
            self.progress.console.print(f"[red]failed[/red] {escape(result.name)}: {escape(result.error or '')}",
                                        soft_wrap=True, highlight=False)
        self.progress.advance(self.total)
        self._total()

    def _total(self) -> None:
        frames = self.done_frames + sum(self.frames.values())
        elapsed = time.monotonic() - self.started
        rate = f", {frames / elapsed:.1f} fps" if elapsed > 0 else ""
        failed = f", {self.failed} failed" if self.failed else ""
        self.progress.update(self.total, info=f"{frames} frames{rate}{failed}")
