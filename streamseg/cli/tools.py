"""The other commands: ``synth``, ``train``, ``calibrate``, ``bench``, ``eval``, ``export`` and ``export-model``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .app import _progress, app, console, reported


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
    from ..errors import InputError
    from ..synth import write_clip

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
    ema: float = typer.Option(0.999, "--ema", help="Decay of the weights' moving average that model.pt holds; 0 for the last step's weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Change a compact model's setting (JSON value), e.g. min_size=312; repeatable. Keys: streamseg/models/compact.py."),
) -> None:
    """Train a Mask R-CNN; Ctrl-C saves and exits cleanly."""
    from ..train import TrainSettings, parse_overrides
    from ..train import train as run_training

    settings = TrainSettings(data=data, model=model, out=str(out), minutes=minutes, iterations=iterations,
                             batch=batch, lr=lr, seed=seed, device=device, ema=ema,
                             config=parse_overrides(overrides or []))
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
def calibrate(
    model: Path = typer.Argument(..., help="Checkpoint (.pt) to calibrate, e.g. a training run's model.pt."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write its calibrated copy (a new file)."),
    seeds: str = typer.Option("3001,3002,3003", "--seeds", help="Seeds of the held-out synthetic clips, comma-separated."),
    frames: int = typer.Option(300, "--frames", "-n", help="Frames per clip."),
) -> None:
    """Find the model's best mask threshold on held-out synthetic clips; write a copy of it that uses it."""
    import tempfile

    from ..calibrate import calibrate_mask_threshold, check_new_path, write_calibrated
    from ..errors import InputError

    check_new_path(out)  # before minutes of work, not after
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds must be integers separated by commas, got '{seeds}'") from None
    with tempfile.TemporaryDirectory(prefix="streamseg-calibrate-") as work:
        calibration = calibrate_mask_threshold(str(model), work, seed_list, frames=frames)
    for threshold, ap in calibration.mask_ap.items():
        console.print(f"mask threshold {threshold:.2f}: mean mask AP {ap:.4f}")
    write_calibrated(model, out, calibration)
    console.print(f"wrote {out} (mask threshold {calibration.mask_threshold})")


@app.command()
@reported
def bench(
    source: str = typer.Argument(..., help="Video file to measure on (e.g. one made by `streamseg synth`)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file with segment options, or a preset's name (default, cpu-fast, accurate, coco-gpu, live-camera); the command line wins."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or checkpoint path (default: shapes)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file, or 'random' for untrained weights (same compute)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: auto)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="auto, torch or openvino: what runs the forward pass; auto takes OpenVINO on CPU for the compact (shipped) models where it is installed, else torch (default: auto)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, or bf16 (OpenVINO on CPUs with bf16: faster, detections differ from fp32) (default: fp32)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Frames per forward pass (default: 8 on CUDA, 1 on CPU)."),
    streams: Optional[int] = typer.Option(None, "--streams", help="CUDA streams (default: 2)."),
    frames: int = typer.Option(300, "--frames", "-n", help="Frames to measure on (the first N of SOURCE)."),
    inference_size: Optional[int] = typer.Option(None, "--inference-size", help="Shorter side the model sees (default: the model's)."),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help="As for segment (default: 0.5)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Measure each stage alone and the whole pipeline in sequential and async mode."""
    from rich.table import Table

    from ..bench import run_benchmark
    from ..config import build_config
    from ..sinks import write_json_atomic

    settings = build_config(config, model=model, weights=weights, device=device, runtime=runtime, precision=precision,
                            batch=batch, streams=streams, inference_size=inference_size, score_threshold=score_threshold)
    with console.status("measuring") as status:
        result = run_benchmark(source, settings, frames, report=lambda stage: status.update(f"measuring {stage}"))
    table = Table(title=f"{result.model} on {result.device} ({result.runtime['runtime']} "
                        f"{result.runtime['precision']}), {result.frames} frames "
                        f"{result.size[0]}x{result.size[1]}, input {result.input_size}, batch {result.batch}")
    table.add_column("stage")
    table.add_column("fps", justify="right")
    table.add_column("ms/frame", justify="right")
    table.add_column("latency p50/p95 ms", justify="right")
    rows = [("decode", result.decode_fps, None), ("model (forward + postprocess)", result.model_fps, None),
            (f"forward, {result.infer_workers} workers", result.forward_fps, None),
            ("render + encode", result.render_encode_fps, None),
            ("pipeline sequential", result.sequential.fps, result.sequential),
            ("pipeline async", result.asynchronous.fps, result.asynchronous)]
    for name, fps, run in rows:
        table.add_row(name, f"{fps:.1f}", f"{1000 / fps:.1f}" if fps else "",
                      f"{run.latency_p50_ms} / {run.latency_p95_ms}" if run else "")
    Console().print(table)
    gpu = (f", peak GPU {result.peak_gpu_mb} MB, GPU busy {result.asynchronous.gpu_busy_percent}%"
           if result.peak_gpu_mb else "")
    Console().print(f"async/sequential {result.async_over_sequential:.2f}, async/forward {result.async_over_forward:.2f}, "
                    f"forward {result.forward_ms} ms + postprocess {result.postprocess_ms} ms per frame, "
                    f"peak RSS (async) {result.asynchronous.peak_rss_mb} MB{gpu}")
    if json_file:
        write_json_atomic(json_file, result.to_dict())


@app.command("eval")
@reported
def evaluate(
    pred: Path = typer.Argument(..., help="Predicted frames.jsonl."),
    gt: Path = typer.Argument(..., help="Ground truth in the same schema (e.g. clip.gt.jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    breakdown: bool = typer.Option(False, "--breakdown", help="Also sort every prediction (correct, wrong class, duplicate, poor mask, on a faint object the ground truth ignores, background) and every missed object (by size, overlapped or alone)."),
) -> None:
    """Box and mask AP of PRED against GT (COCO metrics, each frame an image); with track ids in GT, also
    HOTA, DetA, AssA, IDF1, MOTA and ID switches (TrackEval) on masks and boxes, and unique counts."""
    from ..diagnose import error_breakdown, format_breakdown
    from ..evaluate import evaluate_detections, format_table
    from ..evaluate_tracks import evaluate_tracking, format_tracking_table

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
    from ..export import export

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
    from ..config import build_config
    from ..models.registry import load_model
    from ..runtimes.deploy import export_model as export

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
