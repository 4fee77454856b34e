"""What the SOURCE arguments of a many-source run stand for: files, folders, globs, streams, ``@lists``.

Each argument becomes one or more source specs, in the order given: a folder its videos (sorted, not
recursive), a glob its matches (sorted), ``@list.txt`` the sources listed in it (one a line; blank
lines and ``#`` comments skipped; a line may be a folder or a glob too), anything else itself (a file,
a camera, a stream URL). A spec that names a missing file is kept: its run fails on its own, the others
go on. What cannot mean any source (an empty folder, a glob matching nothing, a missing list) is a
usage error before anything runs.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import InputError
from ..sources import is_live

# Containers a folder is searched for; any file can still be named on its own.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg",
                            ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".y4m", ".h264", ".h265", ".hevc"})
_GLOB_CHARS = frozenset("*?[")


def expand_sources(arguments: list[str]) -> list[str]:
    """The source specs ``arguments`` stand for, in order, each once (the first mention wins)."""
    specs: list[str] = []
    for argument in arguments:
        specs.extend(_expand(argument, from_list=None))
    seen: set[str] = set()
    return [spec for spec in specs if not (spec in seen or seen.add(spec))]


def is_collection(argument: str) -> bool:
    """Whether ``argument`` stands for a set of sources (a folder, a glob, a list) rather than one."""
    if argument.startswith("@"):
        return True
    if is_live(argument):
        return False
    return Path(argument).is_dir() or (_is_glob(argument) and not Path(argument).exists())


def _expand(argument: str, from_list: Path | None) -> list[str]:
    where = f" (in {from_list})" if from_list else ""
    if argument == "-":
        raise InputError(f"'-' (standard input) can only be the one source of a run{where}")
    if argument.startswith("@"):
        if from_list is not None:
            raise InputError(f"{argument}: a list cannot name another list{where}")
        return _read_list(Path(argument[1:]))
    if is_live(argument):
        return [argument]
    path = Path(argument)
    if path.is_dir():
        videos = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise InputError(f"{argument}: folder holds no videos ({', '.join(sorted(VIDEO_SUFFIXES)[:4])}, ...){where}")
        return videos
    if _is_glob(argument) and not path.exists():
        matches = sorted(m for m in glob.glob(os.path.expanduser(argument)) if Path(m).is_file())
        if not matches:
            raise InputError(f"{argument}: matches no files{where}")
        return matches
    return [argument]


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
        raise InputError(f"@{path}: cannot read the list of sources ({reason})") from None
    entries = [line.strip() for line in lines]
    entries = [entry for entry in entries if entry and not entry.startswith("#")]
    if not entries:
        raise InputError(f"@{path}: lists no sources")
    base = path.parent
    specs: list[str] = []
    for entry in entries:
        # A relative path in a list is relative to the list, so a list works from any working directory.
        relative = not (entry.startswith("@") or is_live(entry) or Path(entry).expanduser().is_absolute())
        specs.extend(_expand(str(base / entry) if relative and base != Path(".") else entry, from_list=path))
    return specs


def _is_glob(argument: str) -> bool:
    return any(char in _GLOB_CHARS for char in argument)
