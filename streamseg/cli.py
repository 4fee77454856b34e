"""The command line: parse, load settings, build the pipeline, report. No logic of its own."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .errors import StreamsegError

app = typer.Typer(
    name="streamseg",
    help="Instance segmentation, tracking and counting for video files and live streams.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
DEBUG_ENV = "STREAMSEG_DEBUG"


def _fail(message: str, code: int) -> None:
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    print(f"streamseg: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def reported(command: Callable) -> Callable:
    """Map streamseg's errors to one line on stderr and an exit code (2 usage/input, 1 runtime, 130 Ctrl-C)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StreamsegError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the edge of the program: one line, trace with --debug
            _fail(f"unexpected {exc.__class__.__name__}: {exc} (run with --debug for the trace)", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"streamseg {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show the full trace of an error."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Instance segmentation, tracking and counting for video files and live streams."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    # Library warnings (a stream lost and found again) go to stderr beside the progress bar.
    logger = logging.getLogger("streamseg")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=console, show_path=False, show_time=True))
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    # The runtime's one-line notice of a first export (seconds, once) is for a person waiting at a terminal;
    # scripts and services get its warnings only, and their stderr stays errors and warnings.
    notices = logging.INFO if console.is_terminal else logging.WARNING
    logging.getLogger("streamseg.runtimes").setLevel(logging.DEBUG if debug else notices)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )


@app.command()
@reported
def segment(
    sources: list[str] = typer.Argument(..., metavar="SOURCE...", help="Video file (any container and codec FFmpeg decodes), '-' for standard input, a camera (cam:0, /dev/video0) or a stream URL (rtsp://, rtmp://, http(s)://, udp://, tcp://, srt://). Several, a folder (its videos), a glob or @list.txt (one source a line): each source's run goes to OUT/<source name>/, with OUT/index.json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", rich_help_panel="Outputs", help="Output directory (default: runs/<source name>; with several sources, runs)."),
    overwrite: bool = typer.Option(False, "--overwrite", rich_help_panel="Outputs", help="Replace an existing run in --out (its files only; a folder holding anything else is refused)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", rich_help_panel="Outputs", help="TOML file with these options, or a preset's name (default, cpu-fast, accurate, coco-gpu, live-camera); the command line wins."),
    model: Optional[str] = typer.Option(None, "--model", "-m", rich_help_panel="Model", help="Model name (shapes, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2) or checkpoint path (default: shapes)."),
    weights: Optional[str] = typer.Option(None, "--weights", rich_help_panel="Model", help="Local weights file for the model, or 'random' for untrained weights."),
    device: Optional[str] = typer.Option(None, "--device", rich_help_panel="Model", help="auto, cpu, cuda or cuda:N (default: auto)."),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", rich_help_panel="Model", help="Keep detections scoring at least this (default: 0.5)."),
    mask_threshold: Optional[float] = typer.Option(None, "--mask-threshold", rich_help_panel="Model", help="Mask probability that counts as inside (default: 0.5)."),
    classes: Optional[str] = typer.Option(None, "--classes", rich_help_panel="Model", help="Only these classes, comma-separated (e.g. circle,triangle)."),
    fragment_overlap: Optional[float] = typer.Option(None, "--fragment-overlap", rich_help_panel="Model", help="Drop a detection whose mask is more than this fraction covered by surer ones, as the same object reported again; 1 keeps all (default: 0.8)."),
    stride: Optional[int] = typer.Option(None, "--stride", rich_help_panel="Input", help="Infer every Nth frame; the others show the latest result (default: 1)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", rich_help_panel="Input", help="Stop after this many frames."),
    start: Optional[float] = typer.Option(None, "--start", rich_help_panel="Input", help="Start this many seconds into the source."),
    inference_size: Optional[int] = typer.Option(None, "--inference-size", rich_help_panel="Model", help="Shorter side the model sees, in pixels (default: the model's)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", rich_help_panel="Model", help="auto, torch or openvino: what runs the forward pass; auto takes OpenVINO on CPU where it is installed, else torch (default: auto)."),
    precision: Optional[str] = typer.Option(None, "--precision", rich_help_panel="Model", help="fp32, or bf16 (OpenVINO on CPUs with bf16: faster, detections differ from fp32) (default: fp32)."),
    video: Optional[bool] = typer.Option(None, "--video/--no-video", rich_help_panel="Outputs", help="Write overlay.mp4 (default: on)."),
    json_out: Optional[bool] = typer.Option(None, "--json/--no-json", rich_help_panel="Outputs", help="Write frames.jsonl (default: on)."),
    mode: Optional[str] = typer.Option(None, "--mode", rich_help_panel="Speed", help="async (steps in parallel threads) or sequential (one loop, the baseline) (default: async)."),
    batch: Optional[int] = typer.Option(None, "--batch", rich_help_panel="Speed", help="Frames per forward pass (default: 4 on CUDA, 1 on CPU)."),
    streams: Optional[int] = typer.Option(None, "--streams", rich_help_panel="Speed", help="CUDA streams, each with its own inference thread (default: 2)."),
    track: Optional[bool] = typer.Option(None, "--track/--no-track", rich_help_panel="Tracking and counting", help="Track objects across frames: ids in the JSONL and overlay, unique counts in the summary (default: on)."),
    line: Optional[list[str]] = typer.Option(None, "--line", rich_help_panel="Tracking and counting", help="Count tracks crossing x1,y1,x2,y2[:name] (pixels; repeatable); 'in' is the side the overlay's arrow points to."),
    zone: Optional[list[str]] = typer.Option(None, "--zone", rich_help_panel="Tracking and counting", help="Count objects inside the polygon x1,y1,x2,y2,x3,y3,...[:name] (pixels; repeatable)."),
    trail: Optional[int] = typer.Option(None, "--trail", rich_help_panel="Tracking and counting", help="Frames of each track's path drawn on the overlay; 0 for none (default: 30)."),
    zone_overlap: Optional[float] = typer.Option(None, "--zone-overlap", rich_help_panel="Tracking and counting", help="Fraction of a mask inside a zone for it to count as in (default: 0.5)."),
    export_formats: Optional[list[str]] = typer.Option(None, "--export", rich_help_panel="Outputs", help="Also write the tracks as mot, mots or ytvis (repeatable) into --out."),
    duration: Optional[float] = typer.Option(None, "--duration", rich_help_panel="Input", help="Stop after this many seconds (real time for a live source, video time for a file)."),
    latency: Optional[str] = typer.Option(None, "--latency", rich_help_panel="Live sources", help="low: drop stale frames so the output stays current; complete: every frame (default: low for cameras and streams, complete for files)."),
    reconnect: Optional[bool] = typer.Option(None, "--reconnect/--no-reconnect", rich_help_panel="Live sources", help="Reopen a stream that fails or ends, with growing waits (default: on for network streams)."),
    reconnect_max: Optional[float] = typer.Option(None, "--reconnect-max", rich_help_panel="Live sources", help="Most seconds between two reconnection attempts (default: 30)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", rich_help_panel="Live sources", help="Seconds a camera or stream may take to open or to send data (default: 10)."),
    reset_gap: Optional[float] = typer.Option(None, "--reset-gap", rich_help_panel="Live sources", help="After an outage this long (seconds), tracking starts afresh with new ids (default: 5)."),
    camera_size: Optional[str] = typer.Option(None, "--camera-size", rich_help_panel="Live sources", help="Frame size to ask of a camera, WIDTHxHEIGHT (default: the camera's)."),
    camera_fps: Optional[float] = typer.Option(None, "--camera-fps", rich_help_panel="Live sources", help="Frame rate to ask of a camera (default: the camera's)."),
    show: bool = typer.Option(False, "--show", rich_help_panel="Outputs", help="Show the overlay in a window as it is made; q or Esc stops the run cleanly."),
    quiet: bool = typer.Option(False, "--quiet", "-q", rich_help_panel="Outputs", help="No progress bar or report."),
    backend: str = typer.Option("local", "--backend", rich_help_panel="Several sources", help="local (this process, one model shared by all sources) or ray (a pool of Ray actors; pip install 'streamseg[ray]')."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", rich_help_panel="Several sources", help="Local backend: files segmented at once; the others queue, live streams all run (default: 2)."),
    resume: bool = typer.Option(False, "--resume", rich_help_panel="Several sources", help="Skip sources whose summary.json says complete; replace incomplete runs."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", rich_help_panel="Several sources", help="Ray cluster to use: auto, HOST:PORT or ray://HOST:PORT (default: start Ray on this machine)."),
    workers: Optional[int] = typer.Option(None, "--workers", rich_help_panel="Several sources", help="Ray actors, each with a loaded model (default: as many as the free CPUs or GPUs allow)."),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", rich_help_panel="Several sources", help="CPUs reserved per Ray actor (default: 1)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", rich_help_panel="Several sources", help="GPUs per Ray actor, fractions allowed (e.g. 0.25: four actors share a GPU) (default: 0)."),
) -> None:
    """Segment every frame of SOURCE; write overlay.mp4, frames.jsonl and summary.json.

    Several SOURCEs (or a folder, glob or @list) run together, each into OUT/<source name>/; OUT/index.json lists
    them all, and the exit code is 1 if any failed.

    Ctrl-C or SIGTERM (and q in the --show window) end the run cleanly: the video is finished and playable, the JSONL complete and the summary written."""
    from .capture import is_live, redact
    from .config import build_config
    from .errors import InputError
    from .export import FORMATS as EXPORT_FORMATS
    from .export import export
    from .many import is_collection
    from .many.command import ManyOptions, run_many
    from .models.registry import DEFAULT_MODEL
    from .pipeline import Segmenter, open_input, run_name
    from .window import Window

    settings = build_config(
        config,
        model=model,
        weights=weights,
        device=device,
        runtime=runtime,
        precision=precision,
        score_threshold=score_threshold,
        mask_threshold=mask_threshold,
        classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
        fragment_overlap=fragment_overlap,
        stride=stride,
        max_frames=max_frames,
        start=start,
        inference_size=inference_size,
        video=video,
        json=json_out,
        mode=mode,
        batch=batch,
        streams=streams,
        track=track,
        lines=line or None,
        zones=zone or None,
        zone_overlap=zone_overlap,
        trail=trail,
        duration=duration,
        latency=latency,
        reconnect=reconnect,
        reconnect_max=reconnect_max,
        timeout=timeout,
        reset_gap=reset_gap,
        camera_size=camera_size,
        camera_fps=camera_fps,
    )
    unknown = sorted(set(export_formats or []) - set(EXPORT_FORMATS))
    if unknown:
        raise InputError(f"unknown export format {', '.join(unknown)} (known: {', '.join(EXPORT_FORMATS)})")
    if export_formats and not settings.json:
        raise InputError("--export reads frames.jsonl; it cannot be combined with --no-json")
    if quiet:
        logging.getLogger("streamseg.runtimes").setLevel(logging.ERROR)
    many = ManyOptions(backend, max_concurrent, resume, ray_address, workers, cpus_per_worker, gpus_per_worker)
    if len(sources) > 1 or is_collection(sources[0]):
        if show:
            raise InputError("--show shows one source; it cannot be combined with several")
        raise typer.Exit(run_many(sources, out, overwrite, settings, many, export_formats or [], console, quiet))
    if many.given():
        raise InputError(f"{', '.join(many.given())}: for several sources (or a folder, glob or @list)")
    source = sources[0]
    out = out or Path("runs") / run_name(source)
    window = Window(f"streamseg: {redact(source)}") if show else None  # no display: fail now, before the model loads
    try:
        # A file (or standard input) is opened before the model loads, which the first time with new settings
        # means seconds of export: a bad one fails at once, in one line. A live source opens as its run starts,
        # since its clock (--duration, what it drops) starts when it opens.
        frames = source if is_live(source) else open_input(source, settings)
        try:
            segmenter = Segmenter(settings)
        except BaseException:
            if not isinstance(frames, str):
                frames.close()
            raise
        with segmenter.run(frames, out, overwrite, keep_overlays=show) as run:
            if settings.model == DEFAULT_MODEL and not quiet:
                # A newcomer's own video through the demo model gives dozens of false "objects": say why at once.
                console.print(f"note: the default model '{DEFAULT_MODEL}' knows only the synthetic shapes of "
                              "`streamseg synth`; for real objects use --model maskrcnn_resnet50_fpn_v2 (COCO)",
                              soft_wrap=True)
            _consume(run, window, quiet)
    finally:
        if window is not None:
            window.close()
    if not quiet:
        summary = run.summary
        stats = summary["run"]
        console.print(
            f"[green]done[/green]: {stats['frames_decoded']} frames ({stats['frames_inferred']} inferred) "
            f"in {stats['wall_seconds']:.1f} s, {stats['fps']} fps"
        )
        live = summary["source"]
        if live.get("live"):
            outages = live["outages"]
            console.print(f"dropped {live['dropped_frames']} frames to stay current ({live['latency']} latency); "
                          f"{len(outages)} outage{'s' * (len(outages) != 1)}, latency p50/p95 "
                          f"{stats['latency_ms']['p50']}/{stats['latency_ms']['p95']} ms")
        counts = summary.get("counts", {})
        if "unique" in counts:
            console.print(f"objects: {_per_class(counts['unique'])}")
        for name, totals in counts.get("lines", {}).items():
            console.print(f"line {name}: in {_per_class(totals['in'])}; out {_per_class(totals['out'])}")
        for name, totals in counts.get("zones", {}).items():
            console.print(f"zone {name}: entered {_per_class(totals['enter'])}; most inside {_per_class(totals['max_occupancy'])}")
    damaged = run.summary["source"]["decode_errors"]
    if damaged:  # shown even with --quiet: the output is missing what those packets held
        console.print(f"[yellow]warning[/yellow]: {damaged} damaged packet{'s' * (damaged != 1)} skipped "
                      "(decode_errors in summary.json)")
    exported = [export(out / "frames.jsonl", fmt) for fmt in export_formats or []]
    if not quiet:
        for path in [out / name for name in ("overlay.mp4", "frames.jsonl", "summary.json")] + exported:
            if path.exists():
                console.print(f"  {path}")


def _consume(run, window, quiet: bool) -> None:
    """Consume the run: the progress bar, and the window when there is one."""
    detections = 0
    dropped = 0
    with _progress(quiet) as progress:
        task = progress.add_task("segment", total=run.total_frames, rate="", info="")
        for result in run:
            if result.inferred:
                detections += len(result.instances)
            dropped += result.frame.dropped_before
            elapsed = progress.tasks[task].elapsed or 0
            rate = f"{progress.tasks[task].completed / elapsed:.1f} fps" if elapsed else ""
            info = f"{detections} detections" + (f", {dropped} dropped" if dropped else "")
            progress.update(task, advance=1, rate=rate, info=info)
            if window is not None:
                labels = [run.segmenter.model.class_names[c] for c in result.instances.class_ids]
                status = f"{rate}  " + ", ".join(f"{labels.count(n)} {n}" for n in sorted(set(labels)))
                if not window.show(result.overlay, status):
                    run.stop("q pressed in the window")


def _per_class(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {label}" for label, n in counts.items()) or "none"


@app.command()
@reported
def synth(
    out: Path = typer.Argument(..., help="Video file to write (e.g. clip.mp4); ground truth goes to clip.gt.jsonl."),
    frames: int = typer.Option(300, "--frames", "-n", help="Number of frames."),
    size: str = typer.Option("640x360", "--size", help="WIDTHxHEIGHT."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same clip."),
    objects: int = typer.Option(6, "--objects", help="Objects on screen at a time."),
    fps: float = typer.Option(30.0, "--fps", help="Frame rate."),
    scenario: str = typer.Option("random", "--scenario", help="How objects move: random, crossing, occlusion, crowd or enter-exit."),
) -> None:
    """Render a synthetic clip of moving shapes, its ground truth in the frames.jsonl schema, and true counts."""
    from .errors import InputError
    from .synth import write_clip

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like 640x360, got '{size}'") from None
    if width < 16 or height < 16 or frames < 1 or objects < 0 or fps <= 0:
        raise InputError("--size must be at least 16x16, --frames at least 1, --objects not negative, --fps positive")
    gt = write_clip(out, frames, width, height, seed, objects, fps, scenario)
    console.print(f"wrote {out}, {gt} and {gt.with_name(out.stem + '.gt.summary.json')}")


@app.command()
@reported
def train(
    data: str = typer.Option("synth", "--data", help="'synth' for the synthetic world, or a COCO-format folder (annotations.json + images)."),
    model: str = typer.Option("compact", "--model", help="compact, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2, or a checkpoint to fine-tune."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Folder for checkpoint.pt (resumable) and model.pt (fp16)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Train for this long (wall clock)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Train for this many iterations."),
    batch: int = typer.Option(4, "--batch", help="Images per iteration."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW, cosine decay)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
) -> None:
    """Train a Mask R-CNN; Ctrl-C saves and exits cleanly."""
    from .train import TrainSettings
    from .train import train as run_training

    settings = TrainSettings(data=data, model=model, out=str(out), minutes=minutes, iterations=iterations,
                             batch=batch, lr=lr, seed=seed, device=device)
    with _progress(False) as progress:
        task = progress.add_task("train", total=1000, rate="", info="")

        def on_step(step) -> None:
            losses = " ".join(f"{k} {v:.3f}" for k, v in step.losses.items())
            progress.update(task, completed=int(step.progress * 1000), rate=f"{step.its_per_second:.2f} it/s",
                            info=f"it {step.iteration} lr {step.lr:.2e} {losses}")

        path = run_training(settings, resume=resume, on_step=on_step)
    console.print(f"wrote {path} (and {path.with_name('checkpoint.pt')} to resume)")


@app.command()
@reported
def bench(
    source: str = typer.Argument(..., help="Video file to measure on (e.g. one made by `streamseg synth`)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file with segment options, or a preset's name (default, cpu-fast, accurate, coco-gpu, live-camera); the command line wins."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or checkpoint path (default: shapes)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file, or 'random' for untrained weights (same compute)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: auto)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="auto, torch or openvino: what runs the forward pass; auto takes OpenVINO on CPU where it is installed, else torch (default: auto)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, or bf16 (OpenVINO on CPUs with bf16: faster, detections differ from fp32) (default: fp32)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Frames per forward pass (default: 4 on CUDA, 1 on CPU)."),
    streams: Optional[int] = typer.Option(None, "--streams", help="CUDA streams (default: 2)."),
    frames: int = typer.Option(300, "--frames", "-n", help="Frames to measure on (the first N of SOURCE)."),
    inference_size: Optional[int] = typer.Option(None, "--inference-size", help="Shorter side the model sees (default: the model's)."),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help="As for segment (default: 0.5)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Measure each stage alone and the whole pipeline in sequential and async mode."""
    from rich.table import Table

    from .bench import run_benchmark
    from .config import build_config
    from .sinks import write_json_atomic

    settings = build_config(config, model=model, weights=weights, device=device, runtime=runtime, precision=precision,
                            batch=batch, streams=streams, inference_size=inference_size, score_threshold=score_threshold)
    with console.status("measuring") as status:
        result = run_benchmark(source, settings, frames, report=lambda stage: status.update(f"measuring {stage}"))
    table = Table(title=f"{result['model']} on {result['device']} ({result['runtime']['runtime']} "
                        f"{result['runtime']['precision']}), {result['frames']} frames "
                        f"{result['size'][0]}x{result['size'][1]}, input {result['input_size']}, batch {result['batch']}")
    table.add_column("stage")
    table.add_column("fps", justify="right")
    table.add_column("ms/frame", justify="right")
    table.add_column("latency p50/p95 ms", justify="right")
    rows = [("decode", result["decode_fps"], ""), ("model (forward + postprocess)", result["model_fps"], ""),
            (f"forward, {result['infer_workers']} workers", result["forward_fps"], ""),
            ("render + encode", result["render_encode_fps"], ""),
            ("pipeline sequential", result["sequential_fps"], result["latency_ms"]["sequential"]),
            ("pipeline async", result["async_fps"], result["latency_ms"]["async"])]
    for name, fps, latency in rows:
        table.add_row(name, f"{fps:.1f}", f"{1000 / fps:.1f}" if fps else "",
                      f"{latency['p50']} / {latency['p95']}" if latency else "")
    Console().print(table)
    gpu = f", peak GPU {result['peak_gpu_mb']} MB, GPU busy {result['gpu_busy_percent']}%" if result["peak_gpu_mb"] else ""
    Console().print(f"async/sequential {result['async_over_sequential']:.2f}, async/forward {result['async_over_forward']:.2f}, "
                    f"forward {result['forward_ms']} ms + postprocess {result['postprocess_ms']} ms per frame, "
                    f"peak RSS (async) {result['peak_rss_mb']} MB{gpu}")
    if json_file:
        write_json_atomic(json_file, result)


@app.command("eval")
@reported
def evaluate(
    pred: Path = typer.Argument(..., help="Predicted frames.jsonl."),
    gt: Path = typer.Argument(..., help="Ground truth in the same schema (e.g. clip.gt.jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    breakdown: bool = typer.Option(False, "--breakdown", help="Also sort every prediction (correct, wrong class, duplicate, poor mask, background) and every missed object (by size, overlapped or alone)."),
) -> None:
    """Box and mask AP of PRED against GT (COCO metrics, each frame an image); with track ids in GT, also
    HOTA, DetA, AssA, IDF1, MOTA and ID switches (TrackEval) on masks and boxes, and unique counts."""
    from .diagnose import error_breakdown, format_breakdown
    from .evaluate import evaluate_detections, format_table
    from .evaluate_tracks import evaluate_tracking, format_tracking_table

    metrics = evaluate_detections(pred, gt)
    tracking = evaluate_tracking(pred, gt)
    errors = error_breakdown(pred, gt) if breakdown else None
    if as_json:
        print(json.dumps({**metrics, **(tracking or {}), **({"breakdown": errors.to_dict()} if errors else {})},
                         indent=2))
        return
    Console().print(format_table(metrics))
    if tracking:
        Console().print(format_tracking_table(tracking))
    if errors:
        Console().print(format_breakdown(errors), soft_wrap=True, highlight=False)


@app.command("export")
@reported
def export_tracks(
    frames: Path = typer.Argument(..., help="A run's frames.jsonl."),
    fmt: str = typer.Option(..., "--format", "-f", help="mot (MOTChallenge txt), mots (MOTS txt, masks made disjoint) or ytvis (YouTube-VIS results JSON)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default: beside FRAMES, e.g. frames.mot.txt)."),
) -> None:
    """Write the tracks of a run in MOTChallenge, MOTS or YouTube-VIS format."""
    from .export import export

    print(export(frames, fmt, out))


@app.command("export-model")
@reported
def export_model(
    model: str = typer.Argument(..., help="Model name (shapes, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2) or checkpoint path."),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx (model.onnx) or openvino (OpenVINO IR: model.xml and model.bin)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the model and model.json into."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file for the model, or 'random' for untrained weights."),
    inference_size: Optional[int] = typer.Option(None, "--inference-size", help="Shorter side the model sees, in pixels (default: the model's)."),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help="Detections scoring below this never leave the graph (default: 0.5)."),
) -> None:
    """Export MODEL's forward pass for other runtimes: one RGB frame of any size in; boxes in its pixels,
    scores, labels and mask probabilities out (model.json says so), checked against torch on sample frames."""
    from .config import build_config
    from .models.registry import load_model
    from .runtimes.deploy import export_model as export

    settings = build_config(None, model=model, weights=weights, inference_size=inference_size,
                            score_threshold=score_threshold)
    loaded = load_model(settings.model, settings.weights, "cpu")
    with console.status(f"exporting {loaded.name} to {fmt}"):
        description = export(loaded, fmt, out, settings.inference_size, settings.score_threshold)
    checked = description["checked"]
    if checked is None:
        console.print("not checked against torch: neither onnxruntime nor openvino is installed", soft_wrap=True)
    else:
        console.print(f"checked against torch with {checked['with']} on {checked['frames']} sample frames: "
                      f"{checked['detections']} detections, the same ones (boxes within {checked['max_box_diff']} px, "
                      f"mask IoU at least {checked['min_mask_iou']})", soft_wrap=True)
    for name in [*description["files"], "model.json"]:
        print(out / name)


def _stop(signum: int, frame: object) -> None:
    # Ctrl-C and a service manager's stop (SIGTERM) end a run alike: outputs finalized, summary written.
    raise KeyboardInterrupt


def main() -> None:
    # SIGINT too: Python installs its Ctrl-C handler only where SIGINT is not ignored at start, and a
    # non-interactive shell starts background jobs with SIGINT ignored (`streamseg ... & kill -INT $!`).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        app(prog_name="streamseg")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    # Every output is finished and closed by now. Leave without the interpreter's teardown: it walks
    # torch's whole heap (1.5-2 s measured on the 2-core machine), and a live reader still blocked on a
    # silent stream must not hold up, or crash, the exit that Ctrl-C asked for.
    if not isinstance(code, int | None):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
