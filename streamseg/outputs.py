"""A run's output directory: which files are a run's, and making room for a new run.

streamseg removes only what it wrote. A directory is taken for a new run when it is empty or
holds nothing but a run's own files; anything else in it is the user's, and the run is refused
with the directory untouched, ``--overwrite`` or not.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from .errors import OutputError, StreamsegError
from .export import FORMATS as EXPORT_SUFFIXES
from .sinks import JsonlWriter, VideoWriter, write_json_atomic
from .sources import SourceInfo

VIDEO_FILE, JSONL_FILE, SUMMARY_FILE = "overlay.mp4", "frames.jsonl", "summary.json"
WRITE_PROBE = ".write-test"
RUN_FILES = frozenset({VIDEO_FILE, JSONL_FILE, SUMMARY_FILE, WRITE_PROBE,
                       *(Path(JSONL_FILE).stem + suffix for suffix in EXPORT_SUFFIXES.values())})
CHECK_SECONDS = 1.0  # how often a run looks that its output folder and files are still there
# What a run leaves behind if it dies mid-write: write_json_atomic's ".NAME.<hex>.tmp", an export's "NAME.tmp".
_TEMPORARY = re.compile(r"\.(?P<atomic>.+)\.[0-9a-f]{12}\.tmp|(?P<export>.+)\.tmp")


def is_run_file(path: Path) -> bool:
    """Whether ``path`` is a file a run writes (or a temporary one of those)."""
    if not path.is_file() or path.is_symlink():
        return False
    if path.name in RUN_FILES:
        return True
    temporary = _TEMPORARY.fullmatch(path.name)
    return temporary is not None and (temporary["atomic"] or temporary["export"]) in RUN_FILES


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new run.

    An existing run there is refused unless ``overwrite``, then its files (and only those) are removed.
    A directory holding anything else is refused either way: it is not ours to empty.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    entries = list(out.iterdir()) if out.is_dir() else []
    foreign = sorted(entry.name for entry in entries if not is_run_file(entry))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(f"{out}: holds files that are not a streamseg run ({shown}); choose an empty or new --out")
    if entries and not overwrite:
        raise OutputError(f"{out}: already holds a run; pass --overwrite to replace it")
    try:
        for entry in entries:
            entry.unlink()
        out.mkdir(parents=True, exist_ok=True)
        probe = out / WRITE_PROBE
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write there ({exc.strerror or exc})") from None


class RunOutputs:
    """A run's output folder and what writes into it: the overlay video, the JSONL, the summary.

    Opened before the first frame (a bad folder fails at once), checked once a second while written
    (files deleted under a running process stay writable: a removed folder would swallow hours of
    results without a word), closed once.
    """

    def __init__(self, out: Path, overwrite: bool, info: SourceInfo, video: bool, json: bool):
        prepare_output_dir(out, overwrite)
        self.out = out
        self.video: VideoWriter | None = None
        self.jsonl: JsonlWriter | None = None
        self._next_check = 0.0  # time.monotonic() when the files are next looked for
        try:
            if video:
                self.video = VideoWriter(out / VIDEO_FILE, info.width, info.height, info.time_base, info.fps)
            if json:
                self.jsonl = JsonlWriter(out / JSONL_FILE)
        except BaseException:
            self.close()
            raise

    def check(self) -> None:
        """Raise OutputError if the folder or one of the run's open files was removed (looks once a second)."""
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + CHECK_SECONDS
        if not all(path.exists() for path in [self.out] + [sink.path for sink in (self.video, self.jsonl) if sink]):
            raise OutputError(f"{self.out}: the run's directory or files were removed during the run; stopped")

    def write_frame(self, overlay: np.ndarray, pts: int | None, seconds: float) -> None:
        self.video.write(overlay, pts, seconds)

    def write_record(self, record: dict) -> None:
        self.jsonl.write(record)

    def close(self) -> StreamsegError | None:
        """Finish the video and the JSONL; the first error doing so, if any (both are always tried)."""
        closing_error = None
        for sink in (self.video, self.jsonl):
            if sink is not None:
                try:
                    sink.close()
                except StreamsegError as exc:
                    closing_error = closing_error or exc
        return closing_error

    def write_summary(self, summary: dict) -> None:
        """``summary.json``, atomically; not if the folder is gone (a run stopped for that reason)."""
        if self.out.is_dir():
            write_json_atomic(self.out / SUMMARY_FILE, summary)
