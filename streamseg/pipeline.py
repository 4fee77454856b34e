"""The pipeline: source → predictor → renderer → sinks, as a library call.

A run moves batches of frames through five steps: decode, infer (the device's work), postprocess
(masks pasted and thresholded, JSONL record made), render (the overlay) and write (encode and
JSONL). In ``async`` mode each step has its own thread(s), joined by bounded queues
(:mod:`streamseg.stages`): the model never waits for decoding or disk, memory is bounded by queue
sizes, not by video length, and results still leave in frame order. ``sequential`` runs the same
steps one after another in the caller's thread: the baseline, and the same output byte for byte.
``segment()`` yields one :class:`FrameResult` per decoded frame, in order.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from . import __version__
from .capture import is_camera, is_live, is_network, is_recording
from .config import SegmentConfig, build_config
from .system import peak_rss_mb, usable_cpus
from .count import LineZoneCounter, parse_lines, parse_zones
from .engine import Predictor
from .errors import InputError, OutputError, PipelineError, StreamsegError
from .formats import encode_masks, instances_to_record
from .instances import Frame, Instances
from .live import LiveOptions, LiveSource, iso_utc
from .models.registry import LoadedModel, load_model
from .outputs import JSONL_FILE, SUMMARY_FILE, VIDEO_FILE, prepare_output_dir
from .render import OverlayRenderer
from .sinks import JsonlWriter, VideoWriter, write_json_atomic
from .sources import FrameSource, open_source
from .stages import Stage, Stages
from .track import Tracker

QUEUE_SIZE = 2  # batches waiting between two steps
CPU_INFER_WORKERS = 4  # at most this many CPU inference threads in async mode
OUTPUT_CHECK_SECONDS = 1.0  # how often a run checks that its output directory is still there
LATENCY_WINDOW = 10_000  # frames whose decode-to-output latency is kept for percentiles
STAGES = ("decode", "infer", "postprocess", "track", "count", "render", "encode", "write")


@dataclass
class FrameResult:
    """A decoded frame and the instances that belong to it.

    With ``stride`` > 1, frames between inferences carry the latest inferred instances
    (``inferred`` is False and ``instances.frame_index`` names the frame they came from).
    """

    frame: Frame
    instances: Instances
    inferred: bool
    record: dict | None = None  # the JSONL record, for inferred frames
    overlay: np.ndarray | None = None  # the rendered frame, when the run writes a video
    tally: dict | None = None  # line and zone counters as they stand at this frame (for the overlay)
    trails: dict[int, list] | None = None  # recent mask centroids of the tracks in view (for the overlay)
    decoded_at: float = 0.0  # perf_counter() when the frame left the decoder


@dataclass
class _Batch:
    frames: list[Frame]
    infer: list[bool]  # which frames go through the model (``stride``)
    decoded_at: float
    found: list[Instances] = field(default_factory=list)  # what the model found in each inferred frame
    masks: list[list[dict] | None] = field(default_factory=list)  # their masks as RLE, when a record is wanted
    results: list[FrameResult] = field(default_factory=list)


@dataclass
class RunStats:
    frames_decoded: int = 0
    frames_inferred: int = 0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    detections: Counter = field(default_factory=Counter)
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the block's seconds to ``stage``: thread-seconds, so several inference workers add up."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:  # inference workers time the same stage from several threads
                self.stage_seconds[stage] += elapsed

    def latency_ms(self, percentile: float) -> float | None:
        return round(float(np.percentile(self.latencies, percentile)) * 1000, 2) if self.latencies else None

    def to_dict(self) -> dict:
        return {
            "frames_decoded": self.frames_decoded,
            "frames_inferred": self.frames_inferred,
            "wall_seconds": round(self.wall_seconds, 3),
            "fps": round(self.frames_decoded / self.wall_seconds, 2) if self.wall_seconds else None,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "latency_ms": {"p50": self.latency_ms(50), "p95": self.latency_ms(95)},
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def run_name(spec: str | os.PathLike) -> str:
    """A folder name for a run of ``spec``: the file's stem, ``cam0``, ``stdin``, or a stream's host and path."""
    spec = os.fspath(spec)
    if spec == "-":
        name = "stdin"
    elif spec.startswith("cam:") and is_camera(spec):
        name = "cam" + spec[4:]
    elif is_live(spec) and "://" in spec:
        parts = urlsplit(spec)
        name = "-".join(p for p in (parts.hostname, Path(parts.path).stem) if p)
    else:
        name = Path(spec).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "stream"


def _reportable(error: BaseException) -> BaseException:
    """The error to raise: ours and interruptions as they are, anything else as a PipelineError."""
    if isinstance(error, (StreamsegError, KeyboardInterrupt, GeneratorExit)):
        return error
    return PipelineError(f"{error.__class__.__name__}: {error}")


def _reason(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, GeneratorExit):
        return "stopped by the caller before the end of the source"
    return str(error) or error.__class__.__name__


class Segmenter:
    """A model with its settings, ready to segment any number of sources one after another.

    Holds no global state, so several can live in one process (one per stream, or per Ray actor).
    """

    def __init__(self, config: SegmentConfig | None = None, model: LoadedModel | None = None):
        self.config = (config or SegmentConfig()).validate()  # again: a caller may have changed it since
        self.model = model or load_model(self.config.model, self.config.weights, self.config.device)
        self.renderer = OverlayRenderer(self.model.class_names)
        cuda = self.model.device.type == "cuda"
        # A GPU wants several frames per pass and a pass in flight per stream. A CPU wants one frame per
        # pass and several passes side by side, each on a share of the cores: on 2 cores, two 1-thread
        # workers beat one 2-thread worker (27-31 vs 33-41 ms/frame measured), and a 1-thread pass is
        # not stalled when the render or encode thread takes a core away from it. OpenVINO gets the same
        # plan: a stream per worker, the usable cores shared among them.
        self.batch_size = self.config.batch or (4 if cuda else 1)
        cores = usable_cpus()
        self.infer_workers = self.config.streams if cuda else min(cores, CPU_INFER_WORKERS)
        self.threads_per_worker = None if cuda else max(1, cores // self.infer_workers)
        self.predictor = Predictor(
            self.model,
            score_threshold=self.config.score_threshold,
            mask_threshold=self.config.mask_threshold,
            classes=self.config.classes,
            inference_size=self.config.inference_size,
            fragment_overlap=self.config.fragment_overlap,
            runtime=self.config.runtime,
            precision=self.config.precision,
            workers=self.infer_workers if self.config.mode == "async" else 1,
        )

    def run(self, source: str | os.PathLike | FrameSource, out: str | Path | None = None, overwrite: bool = False,
            keep_overlays: bool = False) -> Run:
        return Run(self, source, Path(out) if out is not None else None, overwrite, keep_overlays)


def open_input(spec: str | os.PathLike, config: SegmentConfig) -> FrameSource:
    """A file, ``-`` (stdin) or a recording on a web server as a :class:`VideoSource`; a camera or live network
    stream as a :class:`LiveSource`."""
    spec = os.fspath(spec)
    if not is_live(spec) or is_recording(spec, config.timeout):
        if config.latency == "low":
            raise InputError(f"{spec}: latency low is for cameras and network streams; a file is read completely")
        return open_source(spec, start=config.start)
    if config.start:
        raise InputError(f"{spec}: start applies to files; a live source starts now")
    reconnect = is_network(spec) if config.reconnect is None else config.reconnect
    return LiveSource(spec, LiveOptions(latency=config.latency or "low", reconnect=reconnect,
                                        reconnect_max=config.reconnect_max, timeout=config.timeout,
                                        camera_size=config.camera_dimensions(), camera_fps=config.camera_fps,
                                        duration=config.duration))


class Run:
    """One source through a :class:`Segmenter`. Iterate for results; ``summary`` when it ends.

    With ``out``, writes ``overlay.mp4``, ``frames.jsonl`` (flushed per frame) and, at the end,
    ``summary.json`` (atomically; ``"complete": false`` with the reason if the run was cut short).
    ``keep_overlays`` renders every frame and leaves it on the result (for a window), video or not.
    """

    def __init__(self, segmenter: Segmenter, source: str | os.PathLike | FrameSource, out: Path | None, overwrite: bool,
                 keep_overlays: bool = False):
        self.segmenter = segmenter
        config = segmenter.config
        # Open the input before touching the output: a bad source must leave no run directory behind.
        self.source = open_input(source, config) if isinstance(source, (str, os.PathLike)) else source
        self.keep_overlays = keep_overlays
        # Low latency: one frame per pass, taken from the source only when a worker is free to start on it.
        self.low_latency = isinstance(self.source, LiveSource) and self.source.options.latency == "low"
        self.batch_size = 1 if self.low_latency else segmenter.batch_size
        self.stopped_by: str | None = None
        self._next_output_check = 0.0  # time.monotonic() when _write next checks that the outputs still exist
        self._dropped = 0  # frames the source dropped since the last JSONL record
        self._events: list[dict] = []  # source events since the last JSONL record
        self.out = out
        self.stats = RunStats()
        self.summary: dict | None = None
        self._latest: Instances | None = None
        self.tracker = Tracker(config.tracker) if config.track else None  # one per run: ids start at 1 for every source
        self.counter = LineZoneCounter(parse_lines(config.lines or []), parse_zones(config.zones or []),
                                       segmenter.model.class_names, min_overlap=config.zone_overlap)
        self._tally: dict | None = None
        self._paths: dict[int, deque] = {}  # track id -> its last ``trail`` centroids
        self._trails: dict[int, list] | None = None
        self.video: VideoWriter | None = None
        self.jsonl: JsonlWriter | None = None
        self._results: Iterator[FrameResult] | None = None
        if out is not None:
            try:
                self._open_outputs(out, overwrite)
            except BaseException:
                self._close_sinks()
                self.source.close()  # a live source's reader thread and connection go with the failed run
                raise

    def _open_outputs(self, out: Path, overwrite: bool) -> None:
        config, info = self.segmenter.config, self.source.info
        prepare_output_dir(out, overwrite)
        if config.video:
            self.video = VideoWriter(out / VIDEO_FILE, info.width, info.height, info.time_base, info.fps)
        if config.json:
            self.jsonl = JsonlWriter(out / JSONL_FILE)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the run now: threads stopped, source closed, outputs finished and the summary written.

        Iterating to the end does this too; a run left before its end, or never iterated, needs it.
        """
        if self._results is not None:
            self._results.close()  # the iteration's own clean-up, if it started
        if self.summary is None:
            self._finalize(time.perf_counter(), GeneratorExit())

    @property
    def total_frames(self) -> int | None:
        count = self.source.info.frame_count
        limit = self.segmenter.config.max_frames
        return min(count, limit) if count is not None and limit is not None else (limit if count is None else count)

    def stop(self, reason: str) -> None:
        """End the run at the next frame as if the source had ended (a window closed, a time limit)."""
        self.stopped_by = reason
        self._stop_source()

    def _stop_source(self) -> None:
        if isinstance(self.source, LiveSource):
            self.source.stop()

    # The five steps. Each runs in one thread at a time (infer in one per CUDA stream), in order.

    def _batches(self) -> Iterator[_Batch]:
        config, stats = self.segmenter.config, self.stats
        frames = iter(self.source)
        size = self.batch_size
        first_time = None
        while config.max_frames is None or stats.frames_decoded < config.max_frames:
            batch: list[Frame] = []
            with stats.timed("decode"):
                while len(batch) < size and (config.max_frames is None or stats.frames_decoded < config.max_frames):
                    frame = None if self.stopped_by else next(frames, None)
                    if frame is not None and config.duration is not None:
                        first_time = frame.time if first_time is None else first_time
                        if frame.time - first_time >= config.duration:
                            frame = None
                    if frame is None:
                        break
                    batch.append(frame)
                    stats.frames_decoded += 1
            if not batch:
                return
            yield _Batch(batch, [f.index % config.stride == 0 for f in batch], time.perf_counter())
            if len(batch) < size:
                return

    def _infer(self, batch: _Batch) -> _Batch:
        """The model's work and what needs no order: runs in every inference worker at once."""
        predictor, stats = self.segmenter.predictor, self.stats
        frames = [f for f, infer in zip(batch.frames, batch.infer) if infer]
        with stats.timed("infer"):
            raws = predictor.forward(frames)
        with stats.timed("postprocess"):
            batch.found = [predictor.postprocess(raw, frame) for raw, frame in zip(raws, frames)]
            # The masks' RLE depends on nothing later steps do (tracking only adds ids): encode it here, in parallel.
            batch.masks = [encode_masks(found) if self.segmenter.config.json else None for found in batch.found]
        return batch

    def _in_order(self, batch: _Batch) -> _Batch:
        """What must see frames in order: tracking, counting, the JSONL record."""
        found, masks = iter(batch.found), iter(batch.masks)
        for frame, infer in zip(batch.frames, batch.infer):
            self._dropped += frame.dropped_before
            self._events += frame.events
            # Frame indices count from 0 at the first decoded frame, so the first is inferred.
            record = self._analyse(next(found), next(masks), frame) if infer else None
            batch.results.append(FrameResult(frame, self._latest, infer, record, tally=self._tally,
                                             trails=self._trails, decoded_at=batch.decoded_at))
        batch.found, batch.masks = [], []
        return batch

    def _analyse(self, found: Instances, masks: list[dict] | None, frame: Frame) -> dict | None:
        """One inferred frame's instances tracked and counted; returns its JSONL record (None without JSON).

        Each part is timed as its own stage, none inside another, so the stage times add up.
        """
        segmenter, stats, config = self.segmenter, self.stats, self.segmenter.config
        self._latest = found
        (dropped, self._dropped), (events, self._events) = (self._dropped, 0), (self._events, [])
        if self.tracker is not None:
            if any((e.get("gap_seconds") or 0) >= config.reset_gap for e in events):
                self.tracker.reset()  # after a long outage the scene has changed: no id carries over
            with stats.timed("track"):
                self._latest = self.tracker.update(self._latest)
                if config.trail and (config.video or self.keep_overlays):  # trails are for drawing
                    self._trails = self._follow(self._latest)
        stats.frames_inferred += 1
        stats.detections.update(segmenter.model.class_names[c] for c in self._latest.class_ids)
        record = None
        if masks is not None:
            with stats.timed("write"):
                record = instances_to_record(self._latest, segmenter.model.class_names, masks)
                if frame.wall_time is not None:
                    record["wall_time"] = iso_utc(frame.wall_time)
                    record["dropped_before"] = dropped
                if events:
                    record["source_events"] = events
        if self.counter:
            with stats.timed("count"):
                counts, events = self.counter.update(self._latest)
                self.counter.forget({track.id for track in self.tracker.tracks})
                self._tally = self.counter.state()
            if record is not None:
                record["counts"], record["events"] = counts, events
        return record

    def _follow(self, instances: Instances) -> dict[int, list]:
        """Extend each visible track's path; forget the paths of tracks the tracker has dropped."""
        length = self.segmenter.config.trail
        visible = {}
        for track_id, centroid in zip(instances.track_ids.tolist(), instances.centroids):
            if track_id >= 0 and not np.isnan(centroid[0]):
                path = self._paths.setdefault(track_id, deque(maxlen=length))
                path.append(tuple(centroid))
                visible[track_id] = list(path)
        alive = {track.id for track in self.tracker.tracks}
        self._paths = {k: v for k, v in self._paths.items() if k in alive}
        return visible

    def _render(self, batch: _Batch) -> _Batch:
        if self.video is not None or self.keep_overlays:
            with self.stats.timed("render"):
                for result in batch.results:
                    result.overlay = self.segmenter.renderer.annotate(result.frame.image, result.instances)
                    if result.trails:
                        self.segmenter.renderer.draw_trails(result.overlay, result.trails)
                    if self.counter:
                        self.segmenter.renderer.draw_counting(result.overlay, self.counter.lines, self.counter.zones,
                                                              result.tally)
        return batch

    def _write(self, batch: _Batch) -> _Batch:
        stats = self.stats
        if self.out is not None and time.monotonic() >= self._next_output_check:
            # Deleted files stay writable while open, so a removed run directory would swallow hours of
            # results without a word: look once a second, and stop.
            self._next_output_check = time.monotonic() + OUTPUT_CHECK_SECONDS
            if not all(path.exists() for path in [self.out] + [s.path for s in (self.video, self.jsonl) if s]):
                raise OutputError(f"{self.out}: the run's directory or files were removed during the run; stopped")
        for result in batch.results:
            if self.video is not None:
                with stats.timed("encode"):
                    self.video.write(result.overlay, result.frame.pts, result.frame.time)
                if not self.keep_overlays:
                    result.overlay = None  # not kept alive by a caller holding results
            if self.jsonl is not None and result.record is not None:
                with stats.timed("write"):
                    self.jsonl.write(result.record)
            # From when the frame arrived (a live source stamps that) or else left the decoder.
            stats.latencies.append(time.perf_counter() - (result.frame.captured_at or result.decoded_at))
        return batch

    def _steps(self) -> Iterator[_Batch]:
        batches = self._batches()
        steps = (self._infer, self._in_order, self._render, self._write)
        if self.segmenter.config.mode == "sequential":
            for batch in batches:
                for step in steps:
                    batch = step(batch)
                yield batch
            return
        threads = self.segmenter.threads_per_worker
        setup = (lambda: torch.set_num_threads(threads)) if threads else None  # per thread: the caller's stays as it was
        stages = [Stage("infer", self._infer, workers=self.segmenter.infer_workers, setup=setup),
                  Stage("in-order", self._in_order), Stage("render", self._render), Stage("write", self._write)]
        yield from Stages(batches, stages, QUEUE_SIZE, pull=self.low_latency)

    def __iter__(self) -> Iterator[FrameResult]:
        """The results, once: a second ``iter()`` continues where the first stopped, as a source does."""
        if self._results is None:
            self._results = self._iterate()
        return self._results

    def _iterate(self) -> Iterator[FrameResult]:
        started = time.perf_counter()
        error: BaseException | None = None
        steps = self._steps()
        try:
            for batch in steps:
                yield from batch.results
        except BaseException as exc:
            error = exc
            if _reportable(exc) is exc:
                raise
            raise _reportable(exc) from exc
        finally:
            # The source first: a stage thread waiting on a stalled live stream would hold up the rest.
            self._stop_source()
            steps.close()  # stops the stage threads before the sinks close
            self._finalize(started, error)

    def _close_sinks(self) -> StreamsegError | None:
        """Close the video and JSONL; the first error closing them, if any."""
        closing_error = None
        for sink in (self.video, self.jsonl):
            if sink is not None:
                try:
                    sink.close()
                except StreamsegError as exc:
                    closing_error = closing_error or exc
        return closing_error

    def _finalize(self, started: float, error: BaseException | None) -> None:
        closing_error = self._close_sinks()
        error = error or closing_error
        self.source.close()
        self.stats.wall_seconds = time.perf_counter() - started
        config = self.segmenter.config
        self.summary = {
            "streamseg": __version__,
            "complete": error is None,
            "reason": _reason(error),
            "stopped_by": self.stopped_by,
            "source": {**self.source.info.to_dict(), "decode_errors": self.source.decode_errors,
                       **(self.source.report() if isinstance(self.source, LiveSource) else {})},
            "model": {**self.segmenter.model.describe(), **self.segmenter.predictor.describe()},
            "config": {"stride": config.stride, "max_frames": config.max_frames, "start": config.start,
                       "mode": config.mode, "batch": self.batch_size,
                       "infer_workers": self.segmenter.infer_workers if config.mode == "async" else 1,
                       "track": config.track, "duration": config.duration,
                       "tracker": asdict(config.tracker) if config.track else None},
            "run": self.stats.to_dict(),
            "detections": dict(sorted(self.stats.detections.items())),
        }
        if self.tracker is not None:
            names = self.segmenter.model.class_names
            unique = Counter(names[c] for c in self.tracker.counted_ids.values())
            self.summary["counts"] = {"unique": dict(sorted(unique.items())), **self.counter.totals()}
        if self.out is not None and self.out.is_dir():
            write_json_atomic(self.out / SUMMARY_FILE, self.summary)
        if closing_error is not None and closing_error is error:
            raise closing_error


def segment(source: str | os.PathLike | FrameSource, out: str | Path | None = None, overwrite: bool = False, **settings) -> Run:
    """Segment ``source``; iterate the returned run for per-frame results.

    ``settings`` are :class:`SegmentConfig` fields (``model``, ``score_threshold``, ``stride``, ...)::

        for result in streamseg.segment("clip.mp4", score_threshold=0.6):
            print(result.frame.index, len(result.instances))
    """
    return Segmenter(build_config(**settings)).run(source, out, overwrite)
