"""The pipeline: source → predictor → renderer → sinks, as a library call.

Decoding runs in its own thread ahead of the model, rendering/encoding/writing in another behind
it, joined by bounded queues: memory is bounded by queue sizes, not by video length, and the model
never waits for disk. ``segment()`` yields one :class:`FrameResult` per decoded frame, in order.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .config import SegmentConfig, build_config
from .engine import Predictor
from .errors import OutputError, PipelineError, StreamsegError
from .formats import instances_to_record
from .instances import Frame, Instances
from .models.registry import LoadedModel, load_model
from .render import OverlayRenderer
from .sinks import JsonlWriter, VideoWriter, write_json_atomic
from .sources import VideoSource, open_source

QUEUE_SIZE = 8
_DONE = object()


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


@dataclass
class RunStats:
    frames_decoded: int = 0
    frames_inferred: int = 0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(
        default_factory=lambda: {"decode": 0.0, "infer": 0.0, "render": 0.0, "encode": 0.0, "write": 0.0}
    )
    detections: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {
            "frames_decoded": self.frames_decoded,
            "frames_inferred": self.frames_inferred,
            "wall_seconds": round(self.wall_seconds, 3),
            "fps": round(self.frames_decoded / self.wall_seconds, 2) if self.wall_seconds else None,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Create ``out`` for a new run; an existing non-empty run is refused unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(f"{out}: already holds a run; pass --overwrite to replace it")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write there ({exc.strerror or exc})") from None


class _Decoder(threading.Thread):
    """Reads the source ahead of the model into a bounded queue."""

    def __init__(self, source: VideoSource, max_frames: int | None, stats: RunStats):
        super().__init__(name="streamseg-decode", daemon=True)
        self.source, self.max_frames, self.stats = source, max_frames, stats
        self.frames: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.stop = threading.Event()

    def run(self) -> None:
        frames = iter(self.source)
        try:
            while not self.stop.is_set() and (self.max_frames is None or self.stats.frames_decoded < self.max_frames):
                started = time.perf_counter()
                frame = next(frames, None)
                self.stats.stage_seconds["decode"] += time.perf_counter() - started
                if frame is None:
                    break
                self.stats.frames_decoded += 1
                self._put(frame)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)
        self._put(_DONE)

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self.frames.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _Writer(threading.Thread):
    """Renders, encodes and writes results behind the model, from a bounded queue."""

    def __init__(self, handle: Callable[[FrameResult], None]):
        super().__init__(name="streamseg-write", daemon=True)
        self.handle = handle
        self.results: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.results.get()) is not _DONE:
            if self.error is None:
                try:
                    self.handle(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the producer on its next put
                    self.error = exc

    def put(self, result: FrameResult) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.results.put(result, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.results.put(_DONE)
        self.join()
        if self.error is not None:
            raise self.error


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
        self.config = config or SegmentConfig()
        self.model = model or load_model(self.config.model, self.config.weights, self.config.device)
        self.predictor = Predictor(
            self.model,
            score_threshold=self.config.score_threshold,
            mask_threshold=self.config.mask_threshold,
            classes=self.config.classes,
            inference_size=self.config.inference_size,
        )
        self.renderer = OverlayRenderer(self.model.class_names)

    def run(self, source: str | VideoSource, out: str | Path | None = None, overwrite: bool = False) -> Run:
        return Run(self, source, Path(out) if out is not None else None, overwrite)


class Run:
    """One source through a :class:`Segmenter`. Iterate for results; ``summary`` when it ends.

    With ``out``, writes ``overlay.mp4``, ``frames.jsonl`` (flushed per frame) and, at the end,
    ``summary.json`` (atomically; ``"complete": false`` with the reason if the run was cut short).
    """

    def __init__(self, segmenter: Segmenter, source: str | VideoSource, out: Path | None, overwrite: bool):
        self.segmenter = segmenter
        config = segmenter.config
        # Open the input before touching the output: a bad source must leave no run directory behind.
        self.source = source if isinstance(source, VideoSource) else open_source(source, start=config.start)
        self.out = out
        self.stats = RunStats()
        self.summary: dict | None = None
        self.video: VideoWriter | None = None
        self.jsonl: JsonlWriter | None = None
        if out is not None:
            prepare_output_dir(out, overwrite)
            info = self.source.info
            if config.video:
                self.video = VideoWriter(out / "overlay.mp4", info.width, info.height, info.time_base, info.fps)
            if config.json:
                self.jsonl = JsonlWriter(out / "frames.jsonl")

    @property
    def total_frames(self) -> int | None:
        count = self.source.info.frame_count
        limit = self.segmenter.config.max_frames
        return min(count, limit) if count is not None and limit is not None else (limit if count is None else count)

    def _write(self, result: FrameResult) -> None:
        seconds = self.stats.stage_seconds
        if self.video is not None:
            started = time.perf_counter()
            image = self.segmenter.renderer.annotate(result.frame.image, result.instances)
            seconds["render"] += time.perf_counter() - started
            started = time.perf_counter()
            self.video.write(image, result.frame.pts, result.frame.time)
            seconds["encode"] += time.perf_counter() - started
        if self.jsonl is not None and result.record is not None:
            started = time.perf_counter()
            self.jsonl.write(result.record)
            seconds["write"] += time.perf_counter() - started

    def __iter__(self) -> Iterator[FrameResult]:
        segmenter, config, stats = self.segmenter, self.segmenter.config, self.stats
        class_names = segmenter.model.class_names
        decoder = _Decoder(self.source, config.max_frames, stats)
        writer = _Writer(self._write)
        started = time.perf_counter()
        decoder.start()
        writer.start()
        body_error: BaseException | None = None
        latest: Instances | None = None
        try:
            for frame in decoder:
                inferred = frame.index % config.stride == 0 or latest is None
                record = None
                if inferred:
                    t0 = time.perf_counter()
                    latest = segmenter.predictor.predict([frame])[0]
                    stats.stage_seconds["infer"] += time.perf_counter() - t0
                    stats.frames_inferred += 1
                    stats.detections.update(class_names[c] for c in latest.class_ids)
                    record = instances_to_record(latest, class_names)
                result = FrameResult(frame, latest, inferred, record)
                writer.put(result)
                yield result
        except BaseException as exc:
            body_error = exc
            if _reportable(exc) is exc:
                raise
            raise _reportable(exc) from exc
        finally:
            decoder.stop.set()
            decoder.join()
            error = body_error
            try:
                writer.finish()
            except BaseException as exc:  # noqa: BLE001 - the first failure is the one to report
                error = error or exc
            self._finalize(started, error)
            if body_error is None and error is not None:
                raise _reportable(error) from error

    def _finalize(self, started: float, error: BaseException | None) -> None:
        for sink in (self.video, self.jsonl):
            if sink is not None:
                try:
                    sink.close()
                except StreamsegError:
                    if error is None:
                        raise
        self.source.close()
        self.stats.wall_seconds = time.perf_counter() - started
        self.summary = {
            "streamseg": __version__,
            "complete": error is None,
            "reason": _reason(error),
            "source": {**self.source.info.to_dict(), "decode_errors": self.source.decode_errors},
            "model": {**self.segmenter.model.describe(), **self.segmenter.predictor.describe()},
            "config": {"stride": self.segmenter.config.stride, "max_frames": self.segmenter.config.max_frames,
                       "start": self.segmenter.config.start},
            "run": self.stats.to_dict(),
            "detections": dict(sorted(self.stats.detections.items())),
        }
        if self.out is not None:
            write_json_atomic(self.out / "summary.json", self.summary)


def segment(source: str | VideoSource, out: str | Path | None = None, overwrite: bool = False, **settings) -> Run:
    """Segment ``source``; iterate the returned run for per-frame results.

    ``settings`` are :class:`SegmentConfig` fields (``model``, ``score_threshold``, ``stride``, ...)::

        for result in streamseg.segment("clip.mp4", score_threshold=0.6):
            print(result.frame.index, len(result.instances))
    """
    return Segmenter(build_config(**settings)).run(source, out, overwrite)
