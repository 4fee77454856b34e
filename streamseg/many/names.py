"""Folder names for the sources of a many-source run: safe, unique, and free of credentials.

A name is made of ASCII letters, digits, ``_`` and ``-`` only, so it can never be ``..``, hold a
slash or start with a dot: joined to the output folder it stays inside it. A URL gives its host,
port and last path element, never its user or password; a file its stem. Names that collide (also
ignoring case, for case-insensitive filesystems) get ``-2``, ``-3``, ... in the order given, so the
same list of sources gives the same names on every run (which ``--resume`` relies on).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

from ..sources import is_camera, is_network

MAX_LENGTH = 64
RESERVED = frozenset({"index", "con", "prn", "aux", "nul"})  # index.json's stem; names Windows refuses


def source_name(spec: str) -> str:
    """A safe folder name for ``spec`` (not yet made unique)."""
    if spec.startswith("cam:") and is_camera(spec):
        raw = "cam" + spec[4:]
    elif is_network(spec):
        parts = urlsplit(spec)
        try:
            port = parts.port
        except ValueError:  # a port that is not a number
            port = None
        last = PurePosixPath(parts.path).name
        stem = PurePosixPath(last).stem if last not in (".", "..") else ""
        raw = "-".join(str(p) for p in (parts.hostname, port, stem) if p) or parts.scheme
    else:
        # Either separator: a Windows path named on Linux still gives its file's stem.
        raw = PureWindowsPath(PurePosixPath(spec).name).stem
    name = _clean(raw)
    if not name:  # nothing ASCII in it (a name in another script): a short digest keeps it apart from others
        name = "source-" + hashlib.sha1(spec.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if name.lower() in RESERVED:
        name += "_"
    return name


def unique_names(specs: list[str]) -> list[str]:
    """One name per spec, in order; a name taken before (ignoring case) gets the next free ``-N``."""
    taken: set[str] = set()
    names = []
    for spec in specs:
        base = source_name(spec)
        name, number = base, 1
        while name.lower() in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add(name.lower())
        names.append(name)
    return names


def _clean(raw: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_text)
    return name.strip("_-")[:MAX_LENGTH].strip("_-")
