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
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from . import __version__
from .config import SegmentConfig, build_config
from .engine import Predictor
from .errors import PipelineError, StreamsegError, ending_reason
from .formats import (
    CountTotals,
    FrameRecord,
    RunSettings,
    RunSummary,
    SourceSummary,
    SummaryCounts,
    encode_masks,
    frame_record,
)
from .inference import InferencePool, Inferred, infer_here
from .instances import Frame, FrameNotes, Instances
from .models.registry import LoadedModel, load_model
from .outputs import RunOutputs
from .render import OverlayRenderer
from .results import Batch, FrameResult
from .runstats import RunStats
from .sources import FrameSource, is_live, open_source
from .stages import Stage, Stages
from .steps import Step, standard_steps
from .system import usable_cpus

QUEUE_SIZE = 2  # batches waiting between two steps
# Frames waiting in all queues together may hold at most this much; past it (1080p and up on the CPU) each queue
# holds one batch: a 1080p frame is 6 MB, with its overlay 12, and a second one waiting made no run faster but
# held 60-90 MB more (1080p, 2 CPUs, 2026-12-01).
QUEUED_FRAME_BYTES = 64 << 20
CPU_INFER_WORKERS = 4  # at most this many CPU inference threads in async mode
CUDA_BATCH = 8  # frames per forward pass on CUDA unless --batch says otherwise


def _reportable(error: BaseException) -> BaseException:
    """The error to raise: ours and interruptions as they are, anything else as a PipelineError."""
    if isinstance(error, (StreamsegError, KeyboardInterrupt, GeneratorExit)):
        return error
    return PipelineError(f"{error.__class__.__name__}: {error}")


class Segmenter:
    """A model with its settings, ready to segment any number of sources one after another.

    Holds no global state, so several can live in one process (one per stream, or per Ray actor).
    """

    def __init__(self, config: SegmentConfig | None = None, model: LoadedModel | None = None,
                 pool: InferencePool | None = None):
        """``model``: one already loaded; ``pool``: inference shared with other segmenters (its
        predictor, made for the same settings, and its workers; see :mod:`streamseg.inference`)."""
        self.config = (config or SegmentConfig()).validate()  # again: a caller may have changed it since
        self.model = pool.predictor.model if pool else model or load_model(self.config.model, self.config.weights,
                                                                           self.config.device)
        self.pool = pool
        self.renderer = OverlayRenderer(self.model.class_names)
        cuda = self.model.device.type == "cuda"
        # A GPU wants several frames per pass and a pass in flight per stream. A CPU wants one frame per
        # pass and several passes side by side, each on a share of the cores: on 2 cores, two 1-thread
        # workers beat one 2-thread worker (27-31 vs 33-41 ms/frame measured), and a 1-thread pass is
        # not stalled when the render or encode thread takes a core away from it. OpenVINO gets the same
        # plan: a stream per worker, the usable cores shared among them. On an H200, 8 frames a pass on 2
        # streams ran R50-FPN fastest end to end (docs/benchmarks.md, "Pipeline, GPU").
        self.batch_size = self.config.batch or (CUDA_BATCH if cuda else 1)
        cores = usable_cpus()
        self.infer_workers = self.config.streams if cuda else min(cores, CPU_INFER_WORKERS)
        self.threads_per_worker = None if cuda else max(1, cores // self.infer_workers)
        self.predictor = pool.predictor if pool else Predictor(
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

    def shared(self) -> InferencePool:
        """An inference pool on this segmenter's predictor, with the workers and batch one run would use,
        for segmenters of runs side by side: ``Segmenter(config, pool=first.shared())``."""
        return InferencePool(self.predictor, self.infer_workers, self.threads_per_worker, self.batch_size)

    def infer(self, frames: Sequence[Frame], urgent: bool = False) -> Inferred:
        """``frames`` through the model: in the pool when there is one, else in the calling thread."""
        return self.pool.infer(frames, urgent) if self.pool else infer_here(self.predictor, frames)

    def run(self, source: str | os.PathLike | FrameSource, out: str | Path | None = None, overwrite: bool = False,
            keep_overlays: bool = False, steps: Sequence[Step] = ()) -> Run:
        """A run of ``source``; ``steps`` (see :mod:`streamseg.steps`) see each frame's instances first."""
        return Run(self, source, Path(out) if out is not None else None, overwrite, keep_overlays, steps)


class Run:
    """One source through a :class:`Segmenter`. Iterate for results; ``summary`` when it ends.

    With ``out``, writes ``overlay.mp4``, ``frames.jsonl`` (flushed per frame) and, at the end,
    ``summary.json`` (atomically; ``"complete": false`` with the reason if the run was cut short).
    ``keep_overlays`` renders every frame and leaves it on the result (for a window), video or not.
    """

    def __init__(self, segmenter: Segmenter, source: str | os.PathLike | FrameSource, out: Path | None, overwrite: bool,
                 keep_overlays: bool = False, steps: Sequence[Step] = ()):
        self.segmenter = segmenter
        config = segmenter.config
        spec = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        if spec is not None and is_live(spec):
            # Before connecting: a live source reads from the moment it opens, and the frames that came while
            # a graph compiled would be dropped (low latency) or late.
            segmenter.predictor.prepare()
        # Open the input before touching the output: a bad source must leave no run directory behind.
        self.source = open_source(spec, config) if spec is not None else source
        self.keep_overlays = keep_overlays
        # Low latency: one frame per pass, taken from the source only when a worker is free to start on it.
        self.low_latency = self.source.latency == "low"
        self.batch_size = 1 if self.low_latency else segmenter.batch_size
        info = self.source.info
        if not info.live and info.width > 0:
            segmenter.predictor.prepare(info.height, info.width)  # a file's frames all have its size
        else:
            segmenter.predictor.prepare()  # a live source's frames may change size (compiled already if opened here)
        self.stopped_by: str | None = None
        self._pending = FrameNotes()  # what the source reported since the last inferred frame
        self.stats = RunStats()
        self.summary: RunSummary | None = None
        self._latest: Instances | None = None
        self._notes = FrameNotes()  # the latest inferred frame's
        chain = standard_steps(config.track, config.tracker, config.lines or [], config.zones or [], config.zone_overlap,
                               config.trail, config.video or keep_overlays, config.reset_gap,
                               segmenter.model.class_names)
        # The caller's own steps come first, on the model's instances: filters, relabelling (see steps.py).
        self.steps: list[Step] = [*steps, *chain.steps]
        self.tracker, self.counter = chain.tracker, chain.counter
        self._results: Iterator[FrameResult] | None = None
        self.outputs: RunOutputs | None = None
        if out is not None:
            try:
                self.outputs = RunOutputs(out, overwrite, self.source.info, config.video, config.json)
            except BaseException:
                self.source.close()  # a live source's reader thread and connection go with the failed run
                raise

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: object) -> None:
        self.close(interrupted=isinstance(exc, KeyboardInterrupt))

    def close(self, interrupted: bool = False) -> None:
        """End the run now: threads stopped, source closed, outputs finished and the summary written.

        Iterating to the end does this too; a run left before its end, or never iterated, needs it.
        ``interrupted``: the caller's loop ended with a Ctrl-C (or SIGTERM). It lands there rather than
        inside the run whenever it comes while the caller holds a result; the summary says
        "interrupted" either way, not "stopped by the caller".
        """
        ending = KeyboardInterrupt() if interrupted else GeneratorExit()
        if self._results is not None:  # the iteration's own clean-up, if it started
            if interrupted:
                try:
                    self._results.throw(ending)
                except KeyboardInterrupt:
                    pass  # the caller is raising its own already
            else:
                self._results.close()
        if self.summary is None:
            self._finalize(time.perf_counter(), ending)

    @property
    def total_frames(self) -> int | None:
        count = self.source.info.frame_count
        limit = self.segmenter.config.max_frames
        return min(count, limit) if count is not None and limit is not None else (limit if count is None else count)

    def stop(self, reason: str) -> None:
        """End the run at the next frame as if the source had ended (a window closed, a time limit)."""
        self.stopped_by = reason
        self.source.stop()

    # The five steps. Each runs in one thread at a time (infer in one per CUDA stream), in order.

    def _batches(self) -> Iterator[Batch]:
        config, stats = self.segmenter.config, self.stats
        frames = iter(self.source)
        size = self.batch_size
        while config.max_frames is None or stats.frames_decoded < config.max_frames:
            batch: list[Frame] = []
            with stats.timed("decode"):
                while len(batch) < size and (config.max_frames is None or stats.frames_decoded < config.max_frames):
                    frame = None if self.stopped_by else next(frames, None)
                    if frame is None:
                        break
                    batch.append(frame)
                    stats.frames_decoded += 1
            if not batch:
                return
            yield Batch(batch, [f.index % config.stride == 0 for f in batch], time.perf_counter())
            if len(batch) < size:
                return

    def _infer(self, batch: Batch) -> Batch:
        """The model's work and what needs no order: runs in every inference worker at once."""
        frames = [f for f, infer in zip(batch.frames, batch.infer) if infer]
        inferred = self.segmenter.infer(frames, urgent=self.low_latency)
        self.stats.add("infer", inferred.forward_seconds)
        batch.found = inferred.found
        with self.stats.timed("postprocess"):
            # The masks' RLE depends on nothing later steps do (tracking only adds ids): encode it here, in parallel.
            batch.masks = [encode_masks(found) if self.segmenter.config.json else None for found in batch.found]
        self.stats.add("postprocess", inferred.postprocess_seconds)
        return batch

    def _in_order(self, batch: Batch) -> Batch:
        """What must see frames in order: the steps (tracking, counting, ...), the JSONL record."""
        found, masks = iter(batch.found), iter(batch.masks)
        for frame, infer in zip(batch.frames, batch.infer):
            self._pending.dropped_before += frame.dropped_before
            self._pending.source_events += frame.events
            # Frame indices count from 0 at the first decoded frame, so the first is inferred.
            record = self._analyse(next(found), next(masks), frame) if infer else None
            batch.results.append(FrameResult(frame, self._latest, infer, record, tally=self._notes.tally,
                                             trails=self._notes.trails, decoded_at=batch.decoded_at))
        batch.found, batch.masks = [], []
        return batch

    def _analyse(self, found: Instances, masks: list[dict] | None, frame: Frame) -> FrameRecord | None:
        """One inferred frame through the steps; returns its JSONL record (None without JSON).

        Each step is timed under its own stage, none inside another, so the stage times add up.
        """
        stats, names = self.stats, self.segmenter.model.class_names
        notes, self._pending = self._pending, FrameNotes()
        for step in self.steps:
            with stats.timed(step.stage):
                found = step(found, frame, notes)
        self._latest, self._notes = found, notes
        stats.frames_inferred += 1
        stats.detections.update(names[c] for c in found.class_ids)
        if masks is None:
            return None
        with stats.timed("write"):
            return frame_record(found, names, masks, frame, notes)

    def _render(self, batch: Batch) -> Batch:
        if (self.outputs is not None and self.outputs.video is not None) or self.keep_overlays:
            with self.stats.timed("render"):
                for result in batch.results:
                    result.overlay = self.segmenter.renderer.annotate(result.frame.image, result.instances)
                    if result.trails:
                        self.segmenter.renderer.draw_trails(result.overlay, result.trails)
                    if self.counter is not None:
                        self.segmenter.renderer.draw_counting(result.overlay, self.counter.lines, self.counter.zones,
                                                              result.tally)
        return batch

    def _write(self, batch: Batch) -> Batch:
        stats = self.stats
        outputs = self.outputs
        if outputs is not None:
            outputs.check()
        for result in batch.results:
            if outputs is not None and outputs.video is not None:
                with stats.timed("encode"):
                    outputs.write_frame(result.overlay, result.frame.pts, result.frame.time)
                if not self.keep_overlays:
                    result.overlay = None  # not kept alive by a caller holding results
            if outputs is not None and outputs.jsonl is not None and result.record is not None:
                with stats.timed("write"):
                    outputs.write_record(result.record.to_dict())
            # From when the frame arrived (a live source stamps that) or else left the decoder.
            stats.latencies.append(time.perf_counter() - (result.frame.captured_at or result.decoded_at))
        return batch

    def _steps(self) -> Iterator[Batch]:
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
        yield from Stages(batches, stages, self._queue_size(len(stages) + 1), pull=self.low_latency,
                          interrupt=self.source.stop)

    def _queue_size(self, queues: int) -> int:
        info = self.source.info
        batch_bytes = info.width * info.height * 3 * 2 * self.batch_size  # each frame, and its overlay
        return max(1, min(QUEUE_SIZE, QUEUED_FRAME_BYTES // max(1, batch_bytes * queues)))

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
            self.source.stop()
            steps.close()  # stops the stage threads before the sinks close
            self._finalize(started, error)

    def _finalize(self, started: float, error: BaseException | None) -> None:
        closing_error = self.outputs.close() if self.outputs is not None else None
        error = error or closing_error
        self.source.close()
        self.stats.wall_seconds = time.perf_counter() - started
        self.summary = self._summary(error)
        if self.outputs is not None:
            self.outputs.write_summary(self.summary.to_dict())
        if closing_error is not None and closing_error is error:
            raise closing_error


    def _summary(self, error: BaseException | None) -> RunSummary:
        """The run as it ended: ``summary.json``'s content (see :class:`streamseg.formats.RunSummary`)."""
        config, segmenter = self.segmenter.config, self.segmenter
        settings = RunSettings(stride=config.stride, max_frames=config.max_frames, start=config.start, mode=config.mode,
                               batch=self.batch_size,
                               infer_workers=segmenter.infer_workers if config.mode == "async" else 1,
                               track=config.track, duration=config.duration,
                               tracker=asdict(config.tracker) if config.track else None)
        counts = None
        if self.tracker is not None:
            names = segmenter.model.class_names
            unique = Counter(names[c] for c in self.tracker.counted_ids.values())
            counts = SummaryCounts(dict(sorted(unique.items())),
                                   self.counter.totals() if self.counter is not None else CountTotals())
        return RunSummary(
            streamseg=__version__, complete=error is None, reason=ending_reason(error), stopped_by=self.stopped_by,
            source=SourceSummary(self.source.info, self.source.decode_errors, self.source.report()),
            model={**segmenter.model.describe(), **segmenter.predictor.describe()}, config=settings,
            run=self.stats.figures(), detections=dict(sorted(self.stats.detections.items())), counts=counts)


def segment(source: str | os.PathLike | FrameSource, out: str | Path | None = None, overwrite: bool = False,
            steps: Sequence[Step] = (), **settings) -> Run:
    """Segment ``source``; iterate the returned run for per-frame results.

    ``settings`` are :class:`SegmentConfig` fields (``model``, ``score_threshold``, ``stride``, ...);
    ``steps`` are per-frame steps of your own, run on the model's instances before tracking::

        for result in streamseg.segment("clip.mp4", score_threshold=0.6):
            print(result.frame.index, len(result.instances))
    """
    return Segmenter(build_config(**settings)).run(source, out, overwrite, steps=steps)
