"""A run's output directory: which files are a run's, and making room for a new run.

streamseg removes only what it wrote. A directory is taken for a new run when it is empty or
holds nothing but a run's own files; anything else in it is the user's, and the run is refused
with the directory untouched, ``--overwrite`` or not.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import OutputError
from .export import FORMATS as EXPORT_SUFFIXES

VIDEO_FILE, JSONL_FILE, SUMMARY_FILE = "overlay.mp4", "frames.jsonl", "summary.json"
WRITE_PROBE = ".write-test"
RUN_FILES = frozenset({VIDEO_FILE, JSONL_FILE, SUMMARY_FILE, WRITE_PROBE,
                       *(Path(JSONL_FILE).stem + suffix for suffix in EXPORT_SUFFIXES.values())})
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
