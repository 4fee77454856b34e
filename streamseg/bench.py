"""``streamseg bench``: every stage of the pipeline measured alone, then the whole in both modes.

All measurements run in one process on the same frames: decoding alone; the model alone
(forward + postprocess) on frames decoded beforehand, in one thread; the forward pass alone with
the async pipeline's inference workers; rendering + encoding alone; then the full pipeline (decode
→ model → render → encode + JSONL) in ``sequential`` and in ``async`` mode, sampling resident memory.
The ratios say how much the threads buy (``async_over_sequential``) and how close the whole run
comes to the model's own speed (``async_over_forward``; 1.0 means everything else, postprocessing
included, is hidden behind the forward passes).
"""

from __future__ import annotations

import resource
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .config import SegmentConfig
from .errors import InputError
from .instances import Frame
from .models.registry import load_model
from .pipeline import Segmenter
from .sinks import VideoWriter
from .sources import SourceInfo, open_source
from .system import peak_rss_mb

WARMUP_FRAMES = 3


@dataclass
class PipelineFigures:
    """One whole run of the pipeline in one mode."""

    fps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    gpu_busy_percent: float | None  # the GPU's mean utilisation while it ran (NVML); None off CUDA
    peak_rss_mb: float  # resident memory sampled every 50 ms while it ran
    stage_seconds: dict[str, float]


@dataclass
class BenchResult:
    """What ``streamseg bench`` measured; ``to_dict`` is its ``--json`` file."""

    device: str
    model: str
    runtime: dict  # which ran the forward pass, in what precision (the runtime's own description)
    source: str
    frames: int
    size: list[int]  # width, height
    input_size: int
    batch: int
    infer_workers: int  # in async mode: CUDA streams, or CPU threads side by side
    decode_fps: float
    model_fps: float  # forward + postprocess, one thread
    forward_fps: float  # forward alone, with the async pipeline's workers
    forward_ms: float
    postprocess_ms: float
    render_encode_fps: float
    sequential: PipelineFigures
    asynchronous: PipelineFigures
    peak_gpu_mb: float | None
    date: str

    @property
    def async_over_sequential(self) -> float:
        return round(self.asynchronous.fps / self.sequential.fps, 3)

    @property
    def async_over_model(self) -> float:
        return round(self.asynchronous.fps / self.model_fps, 3)

    @property
    def async_over_forward(self) -> float:
        """1.0: everything but the forward pass, postprocessing included, hidden behind it."""
        return round(self.asynchronous.fps / self.forward_fps, 3)

    def to_dict(self) -> dict:
        fields = asdict(self)
        runs = {"sequential": fields.pop("sequential"), "async": fields.pop("asynchronous")}
        return {
            **fields,
            "sequential_fps": runs["sequential"]["fps"],
            "async_fps": runs["async"]["fps"],
            "async_over_sequential": self.async_over_sequential,
            "async_over_model": self.async_over_model,
            "async_over_forward": self.async_over_forward,
            "latency_ms": {mode: {"p50": r["latency_p50_ms"], "p95": r["latency_p95_ms"]} for mode, r in runs.items()},
            "gpu_busy_percent": runs["async"]["gpu_busy_percent"],
            "stage_seconds": {mode: r["stage_seconds"] for mode, r in runs.items()},
            "peak_rss_mb": runs["async"]["peak_rss_mb"],  # while the async pipeline ran
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else float("inf")


def decode(source: str, frames: int, start: float) -> tuple[list[Frame], float, SourceInfo]:
    with open_source(source, start=start) as video:
        decoded, started = [], time.perf_counter()
        for frame in video:
            decoded.append(frame)
            if len(decoded) == frames:
                break
        return decoded, time.perf_counter() - started, video.info


class _Sampler:
    """Calls ``read`` every 50 ms while a block runs (in a thread); ``samples`` holds what it returned."""

    def __init__(self, read: Callable[[], float] | None):
        self.read, self.samples, self.stop = read, [], threading.Event()

    def _sample(self) -> None:
        while True:
            self.samples.append(self.read())
            if self.stop.wait(0.05):
                return

    def __enter__(self) -> _Sampler:
        if self.read is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        if self.read is not None:
            self.thread.join()


def _gpu_busy_reader(device: torch.device) -> Callable[[], float] | None:
    """The GPU's utilisation (NVML through torch), or None where it cannot be read."""
    if device.type != "cuda":
        return None
    try:
        torch.cuda.utilization(device)
    except Exception:  # noqa: BLE001 - pynvml missing or no NVML: leave it unmeasured
        return None
    return lambda: torch.cuda.utilization(device)


def _resident_mb() -> float:
    """This process's resident memory now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


def forward_wall_seconds(predictor, batches: list[list[Frame]], workers: int, threads: int | None) -> float:
    """Wall time of the forward pass alone over ``batches``, with the async pipeline's inference workers."""
    pending = iter(batches)
    lock = threading.Lock()

    def work() -> None:
        if threads:
            torch.set_num_threads(threads)
        while True:
            with lock:
                batch = next(pending, None)
            if batch is None:
                return
            predictor.forward(batch)
            _sync(predictor.model.device)

    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(workers)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def _model_pass(predictor, batches: list[list[Frame]]) -> tuple[float, float, list]:
    """Seconds of forward passes and of postprocessing over ``batches``, one after the other; the instances."""
    forward_seconds, post_seconds, instances = 0.0, 0.0, []
    for batch in batches:
        started = time.perf_counter()
        raws = predictor.forward(batch)
        _sync(predictor.model.device)
        forward_seconds += time.perf_counter() - started
        started = time.perf_counter()
        instances += predictor.postprocess(raws, batch)
        post_seconds += time.perf_counter() - started
    return forward_seconds, post_seconds, instances


def _render_pass(segmenter: Segmenter, decoded: list[Frame], instances: list, info: SourceInfo, path: Path) -> float:
    """Seconds to draw every overlay and encode it into ``path``."""
    started = time.perf_counter()
    with VideoWriter(path, info.width, info.height, info.time_base, info.fps) as writer:
        for frame, found in zip(decoded, instances):
            writer.write(segmenter.renderer.annotate(frame.image, found), frame.pts, frame.time)
    return time.perf_counter() - started


def pipeline_run(source: str, config: SegmentConfig, model, out: Path,
                 report: Callable[[str], None]) -> PipelineFigures:
    """One whole run of the pipeline in ``config.mode``: its speed, latency, GPU use, memory and stage times."""
    report(f"pipeline ({config.mode})")
    run = Segmenter(config, model).run(source, out)
    with _Sampler(_gpu_busy_reader(model.device)) as busy, _Sampler(_resident_mb) as resident:
        started = time.perf_counter()
        done = sum(1 for _ in run)
        seconds = time.perf_counter() - started
    return PipelineFigures(
        fps=_rate(done, seconds), latency_p50_ms=run.stats.latency_ms(50), latency_p95_ms=run.stats.latency_ms(95),
        gpu_busy_percent=round(sum(busy.samples) / len(busy.samples), 1) if busy.samples else None,
        peak_rss_mb=round(max(resident.samples), 1),
        stage_seconds={k: round(v, 3) for k, v in run.stats.stage_seconds.items()})


def run_benchmark(source: str, config: SegmentConfig, frames: int = 300,
                  report: Callable[[str], None] = lambda stage: None) -> BenchResult:
    """Measure ``source``'s first ``frames`` frames through each stage and both pipeline modes."""
    if frames < WARMUP_FRAMES + 1:
        raise InputError(f"--frames must be at least {WARMUP_FRAMES + 1}")
    report("decode")
    decoded, decode_seconds, info = decode(source, frames, config.start)
    count = len(decoded)
    model = load_model(config.model, config.weights, config.device)
    device = model.device
    segmenter = Segmenter(config, model)
    predictor, size = segmenter.predictor, segmenter.batch_size
    batches = [decoded[i:i + size] for i in range(0, count, size)]
    for frame in decoded[:WARMUP_FRAMES]:  # first passes allocate and pick kernels
        predictor.predict([frame])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    report("model")
    forward_seconds, post_seconds, instances = _model_pass(predictor, batches)
    report("forward (async workers)")
    workers_seconds = forward_wall_seconds(predictor, batches, segmenter.infer_workers, segmenter.threads_per_worker)
    report("render + encode")
    with tempfile.TemporaryDirectory(prefix="streamseg-bench-") as scratch:
        render_encode_seconds = _render_pass(segmenter, decoded, instances, info, Path(scratch) / "overlay.mp4")
        size_of_frames = [decoded[0].image.shape[1], decoded[0].image.shape[0]]
        del decoded, instances, batches  # the pipelines' memory is measured next, without these frames held
        runs = {mode: pipeline_run(source, replace(config, mode=mode, max_frames=count), model,
                                    Path(scratch) / mode, report) for mode in ("sequential", "async")}

    return BenchResult(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        model=model.name,
        runtime=predictor.runtime.describe(),
        source=str(source),
        frames=count,
        size=size_of_frames,
        input_size=predictor.inference_size,
        batch=size,
        infer_workers=segmenter.infer_workers,
        decode_fps=_rate(count, decode_seconds),
        model_fps=_rate(count, forward_seconds + post_seconds),
        forward_fps=_rate(count, workers_seconds),
        forward_ms=round(forward_seconds / count * 1000, 2),
        postprocess_ms=round(post_seconds / count * 1000, 2),
        render_encode_fps=_rate(count, render_encode_seconds),
        sequential=runs["sequential"],
        asynchronous=runs["async"],
        peak_gpu_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        date=time.strftime("%Y-%m-%d"),
    )
