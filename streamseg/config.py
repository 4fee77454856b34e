"""Typed settings for a run, from defaults, a TOML file and the command line (in that order).

A TOML file holds the same names as the command-line options, with underscores, and the tracker's
thresholds in a ``[tracker]`` table (the fields of ``TrackerConfig``)::

    model = "shapes"
    score_threshold = 0.6
    inference_size = 288

    [tracker]
    lost_seconds = 5.0

Unknown keys and values of the wrong type or range are errors: a typo must not be silently ignored.
The presets in ``configs/`` are installed with the package, and a bare name such as ``cpu-fast``
that is no file names one.
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, get_args

from .count import parse_lines, parse_zones
from .errors import InputError
from .models.registry import DEFAULT_MODEL
from .runtimes import PRECISIONS, RUNTIMES
from .sources import LATENCIES, Latency
from .track import TrackerConfig

# How a run moves frames through its steps: ``async`` gives each its own thread(s), joined by bounded queues;
# ``sequential`` runs them one after another in the caller's thread (the baseline, same output byte for byte).
Mode = Literal["async", "sequential"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass
class SegmentConfig:
    model: str = DEFAULT_MODEL
    weights: str | None = None
    device: str = "auto"
    runtime: str = "auto"  # "torch" or "openvino"; auto: OpenVINO on CPU where installed, else torch
    precision: str = "fp32"  # or "bf16": OpenVINO on CPUs with bf16, faster but not the same detections
    score_threshold: float = 0.5
    mask_threshold: float | None = None  # unset: the model's own (LoadedModel.default_mask_threshold)
    fragment_overlap: float = 0.8  # drop a detection this much covered by surer masks (a duplicate); 1: off
    classes: list[str] | None = None
    stride: int = 1
    max_frames: int | None = None
    start: float = 0.0
    inference_size: int | None = None
    video: bool = True
    json: bool = True
    mode: Mode = "async"  # or "sequential": every step in the caller's thread, the baseline
    batch: int | None = None  # frames per forward pass [default: 8 on CUDA, 1 on CPU]
    streams: int = 2  # CUDA streams, each with its own inference thread
    track: bool = True  # give detections track ids across frames
    tracker: TrackerConfig = field(default_factory=TrackerConfig)  # its thresholds: a [tracker] table in TOML
    lines: list[str] | None = None  # counting lines, "x1,y1,x2,y2[:name]" each
    zones: list[str] | None = None  # counting zones, "x1,y1,x2,y2,x3,y3,...[:name]" each
    zone_overlap: float = 0.5  # fraction of a mask inside a zone for the object to count as in it
    trail: int = 30  # inferred frames of each track's path drawn on the overlay (0: none)
    duration: float | None = None  # seconds to run: of real time for a live source, of video for a file
    latency: Latency | None = None  # "low" (drop stale frames) or "complete" [default: low live, complete for files]
    reconnect: bool | None = None  # reopen a live source that fails or ends [default: on for network streams]
    reconnect_max: float = 30.0  # most seconds between two reconnection attempts
    timeout: float = 10.0  # seconds a live source may take to open or to deliver data
    reset_gap: float = 5.0  # after an outage this long (seconds), tracking starts afresh with new ids
    camera_size: str | None = None  # "WIDTHxHEIGHT" asked of a camera
    camera_fps: float | None = None  # frame rate asked of a camera

    def __post_init__(self) -> None:
        # Built from Python as well as from TOML and the command line, and held to the same rules:
        # a stride of 0 must fail here with one clear line, not later inside a worker thread.
        values = _checked({f.name: getattr(self, f.name) for f in fields(self)}, "SegmentConfig")
        if isinstance(values["tracker"], dict):
            values["tracker"] = TrackerConfig(**values["tracker"])
        self.__dict__.update(values)
        self.validate()

    def validate(self) -> SegmentConfig:
        for name in ("score_threshold", "mask_threshold", "fragment_overlap"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.stride < 1:
            raise InputError(f"stride must be at least 1, got {self.stride}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {self.max_frames}")
        if self.start < 0:
            raise InputError(f"start must not be negative, got {self.start}")
        if self.inference_size is not None and not 32 <= self.inference_size <= 4096:
            raise InputError(f"inference_size must be between 32 and 4096, got {self.inference_size}")
        if self.runtime not in RUNTIMES:
            raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got '{self.runtime}'")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.precision != "fp32" and self.runtime == "torch":
            raise InputError(f"precision {self.precision} needs the openvino runtime (torch runs fp32 on CPU)")
        if self.mode not in MODES:
            raise InputError(f"mode must be {' or '.join(MODES)}, got '{self.mode}'")
        if self.batch is not None and not 1 <= self.batch <= 64:
            raise InputError(f"batch must be between 1 and 64, got {self.batch}")
        if not 1 <= self.streams <= 8:
            raise InputError(f"streams must be between 1 and 8, got {self.streams}")
        if not 0 <= self.trail <= 1000:
            raise InputError(f"trail must be between 0 and 1000 frames, got {self.trail}")
        if not 0.0 < self.zone_overlap <= 1.0:
            raise InputError(f"zone_overlap must be above 0 and at most 1, got {self.zone_overlap}")
        if self.duration is not None and not self.duration > 0:
            raise InputError(f"duration must be a positive number of seconds, got {self.duration}")
        if self.latency is not None and self.latency not in LATENCIES:
            raise InputError(f"latency must be {' or '.join(LATENCIES)}, got '{self.latency}'")
        for name in ("reconnect_max", "timeout", "reset_gap"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.camera_fps is not None and not self.camera_fps > 0:
            raise InputError(f"camera_fps must be positive, got {self.camera_fps}")
        self.camera_dimensions()  # a malformed size fails here
        if (self.lines or self.zones) and not self.track:
            raise InputError("lines and zones count tracked objects; they need tracking on (drop --no-track)")
        self.tracker.validate()
        parse_lines(self.lines or [])  # a malformed line or zone fails here, before any work starts
        parse_zones(self.zones or [])
        return self

    def camera_dimensions(self) -> tuple[int, int] | None:
        if self.camera_size is None:
            return None
        match = re.fullmatch(r"(\d+)x(\d+)", self.camera_size.strip().lower())
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise InputError(f"camera_size must look like 1280x720, got '{self.camera_size}'")
        return int(match[1]), int(match[2])


def _accepted_types(settings: type) -> dict[str, tuple[type, ...]]:
    """Per setting, the Python types a TOML file may give it, read off the dataclass's annotations:
    a float setting also takes an integer (``start = 2``); lists are lists of strings; a nested
    dataclass (the tracker's settings) is a table."""
    accepted = {}
    for name, hint in typing.get_type_hints(settings).items():
        kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, UnionType) else (hint,)
        kind = next(arg for arg in kinds if arg is not type(None))
        if typing.get_origin(kind) is Literal:  # a choice among strings: a string, checked by validate()
            kind = type(typing.get_args(kind)[0])
        kind = typing.get_origin(kind) or kind
        accepted[name] = (float, int) if kind is float else (dict, kind) if kind is TrackerConfig else (kind,)
        if type(None) in kinds:  # optional: None means "the default" (TOML has no null, Python does)
            accepted[name] += (type(None),)
    return accepted


_TYPES = _accepted_types(SegmentConfig)
_TRACKER_TYPES = _accepted_types(TrackerConfig)


PRESETS = "streamseg.presets"  # the files of configs/, installed as package data


def preset_names() -> list[str]:
    """The shipped presets by name: ``cpu-fast`` for ``configs/cpu-fast.toml``."""
    return sorted(entry.name.removesuffix(".toml") for entry in resources.files(PRESETS).iterdir()
                  if entry.name.endswith(".toml"))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The settings in a TOML file; a bare name that is no file, such as ``cpu-fast``, reads that preset."""
    path = Path(path)
    source: Path | Traversable = path
    if not path.exists() and path.parent == Path(".") and not path.suffix:
        names = preset_names()
        if path.name not in names:
            raise InputError(f"{path}: no such config file or preset (presets: {', '.join(names)})")
        source = resources.files(PRESETS) / f"{path.name}.toml"
    try:
        with source.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def _checked(values: dict[str, Any], origin: str, types: dict[str, tuple[type, ...]] = _TYPES,
             prefix: str = "") -> dict[str, Any]:
    """``values`` with float settings made floats and the tracker's table checked in turn."""
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise InputError(f"{origin}: unknown setting {', '.join(prefix + name for name in unknown)} "
                         f"(known: {', '.join(sorted(types))})")
    checked = {}
    for key, value in values.items():
        # bool is an int in Python; a stride of `true` is still a mistake.
        if isinstance(value, bool) and bool not in types[key] or not isinstance(value, types[key]):
            raise InputError(f"{origin}: {prefix}{key} has the wrong type ({type(value).__name__})")
        if isinstance(value, list) and not all(isinstance(c, str) for c in value):
            raise InputError(f"{origin}: {prefix}{key} must be a list of strings")
        if isinstance(value, dict):
            value = _checked(value, origin, _TRACKER_TYPES, f"{key}.")
        checked[key] = float(value) if float in types[key] and value is not None else value
    return checked


def build_config(config_file: str | Path | None = None, **overrides: Any) -> SegmentConfig:
    """Defaults, then ``config_file``, then the ``overrides`` that are not None; validated.

    ``tracker`` may be a ``TrackerConfig`` or a dict of some of its fields; a dict from the options
    is laid over the file's ``[tracker]`` table.
    """
    values = _checked(read_toml(config_file), str(config_file)) if config_file else {}
    options = _checked({k: v for k, v in overrides.items() if v is not None}, "option")
    from_file, given = values.pop("tracker", {}), options.pop("tracker", {})
    # A copy either way: the run must not change a TrackerConfig its caller goes on using.
    tracker = replace(given) if isinstance(given, TrackerConfig) else TrackerConfig(**{**from_file, **given})
    return SegmentConfig(**{**values, **options}, tracker=tracker)
