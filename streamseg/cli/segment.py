"""``streamseg segment``: options to settings, the run with its progress bar and window, the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from .app import _progress, app, console, reported


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
    mask_threshold: Optional[float] = typer.Option(None, "--mask-threshold", rich_help_panel="Model", help="Mask probability that counts as inside (default: the model's calibrated one; 0.5 if it has none)."),
    classes: Optional[str] = typer.Option(None, "--classes", rich_help_panel="Model", help="Only these classes, comma-separated (e.g. circle,triangle)."),
    fragment_overlap: Optional[float] = typer.Option(None, "--fragment-overlap", rich_help_panel="Model", help="Drop a detection whose mask is more than this fraction covered by surer ones, as the same object reported again; 1 keeps all (default: 0.8)."),
    stride: Optional[int] = typer.Option(None, "--stride", rich_help_panel="Input", help="Infer every Nth frame; the others show the latest result (default: 1)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", rich_help_panel="Input", help="Stop after this many frames."),
    start: Optional[float] = typer.Option(None, "--start", rich_help_panel="Input", help="Start this many seconds into the source."),
    inference_size: Optional[int] = typer.Option(None, "--inference-size", rich_help_panel="Model", help="Shorter side the model sees, in pixels (default: the model's)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", rich_help_panel="Model", help="auto, torch or openvino: what runs the forward pass; auto takes OpenVINO on CPU for the compact (shipped) models where it is installed, else torch (default: auto)."),
    precision: Optional[str] = typer.Option(None, "--precision", rich_help_panel="Model", help="fp32, or bf16 (OpenVINO on CPUs with bf16: faster, detections differ from fp32) (default: fp32)."),
    video: Optional[bool] = typer.Option(None, "--video/--no-video", rich_help_panel="Outputs", help="Write overlay.mp4 (default: on)."),
    json_out: Optional[bool] = typer.Option(None, "--json/--no-json", rich_help_panel="Outputs", help="Write frames.jsonl (default: on)."),
    mode: Optional[str] = typer.Option(None, "--mode", rich_help_panel="Speed", help="async (steps in parallel threads) or sequential (one loop, the baseline) (default: async)."),
    batch: Optional[int] = typer.Option(None, "--batch", rich_help_panel="Speed", help="Frames per forward pass (default: 8 on CUDA, 1 on CPU)."),
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
    from ..config import build_config
    from ..errors import InputError
    from ..many import is_collection
    from ..many.command import ManyOptions, run_many
    from ..sources import run_name

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
    _check_exports(export_formats or [], settings.json)
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
    run = _run(source, settings, out, overwrite, show, quiet)
    _finish(run, out, export_formats or [], quiet)


def _check_exports(export_formats: list[str], json_out: bool) -> None:
    from ..errors import InputError
    from ..export import FORMATS as EXPORT_FORMATS

    unknown = sorted(set(export_formats) - set(EXPORT_FORMATS))
    if unknown:
        raise InputError(f"unknown export format {', '.join(unknown)} (known: {', '.join(EXPORT_FORMATS)})")
    if export_formats and not json_out:
        raise InputError("--export reads frames.jsonl; it cannot be combined with --no-json")


def _run(source: str, settings, out: Path, overwrite: bool, show: bool, quiet: bool):
    """The run, from opening the source to the summary, with the window and the progress bar."""
    from ..models.registry import DEFAULT_MODEL
    from ..pipeline import Segmenter
    from ..sources import is_live, open_source, redact
    from ..window import Window

    window = Window(f"streamseg: {redact(source)}") if show else None  # no display: fail now, before the model loads
    try:
        # A file (or standard input) is opened before the model loads, which the first time with new settings
        # means seconds of export: a bad one fails at once, in one line. A live source opens as its run starts,
        # since its clock (--duration, what it drops) starts when it opens.
        frames = source if is_live(source) else open_source(source, settings)
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
    return run


def _finish(run, out: Path, export_formats: list[str], quiet: bool) -> None:
    """After the run: the report, a warning for damaged input, the exports, the files written."""
    from ..export import export

    if not quiet:
        _report(run.summary)
    damaged = run.summary.source.decode_errors
    if damaged:  # shown even with --quiet: the output is missing what those packets held
        console.print(f"[yellow]warning[/yellow]: {damaged} damaged packet{'s' * (damaged != 1)} skipped "
                      "(decode_errors in summary.json)")
    exported = [export(out / "frames.jsonl", fmt) for fmt in export_formats]
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


def _report(summary) -> None:
    """The lines printed after a run: frames and speed, a live source's drops, the counts."""
    figures = summary.run
    console.print(
        f"[green]done[/green]: {figures.frames_decoded} frames ({figures.frames_inferred} inferred) "
        f"in {figures.wall_seconds:.1f} s, {figures.fps} fps"
    )
    live = summary.source.report  # a live source's LiveReport; None for a file
    if live is not None:
        outages = live.outages
        console.print(f"dropped {live.dropped_frames} frames to stay current ({live.latency} latency); "
                      f"{len(outages)} outage{'s' * (len(outages) != 1)}, latency p50/p95 "
                      f"{figures.latency_p50_ms}/{figures.latency_p95_ms} ms")
    if summary.counts is None:
        return
    console.print(f"objects: {_per_class(summary.counts.unique)}")
    for name, line in (summary.counts.totals.lines or {}).items():
        console.print(f"line {name}: in {_per_class(line.crossed_in)}; out {_per_class(line.crossed_out)}")
    for name, zone in (summary.counts.totals.zones or {}).items():
        console.print(f"zone {name}: entered {_per_class(zone.entered)}; most inside {_per_class(zone.max_occupancy)}")


def _per_class(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {label}" for label, n in counts.items()) or "none"
