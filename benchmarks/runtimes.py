"""Issue 15: the forward pass in torch and in OpenVINO, their agreement, start-up and accuracy, in one command.

    .venv/bin/python benchmarks/runtimes.py                      # everything docs/benchmarks.md reports
    .venv/bin/python benchmarks/runtimes.py --frames 3 --accuracy-frames 3 --r50-size 128   # a smoke test

Every measurement runs in a process of its own (this script, called with ``--measure``), so that no
runtime's thread pool is alive beside another's. Measured:

- start-up of the OpenVINO runtime for the shipped model: with an empty cache (export + compile) and
  again with the cache that run left;
- the shipped model's forward pass (``Predictor.forward``) on the first frames of samples/demo.mp4,
  after warm-up: median ms of one pass alone with every usable core, and ms per frame with the
  pipeline's inference workers side by side (its thread setup: on 2 cores, 2 workers of 1 thread;
  for OpenVINO, a stream per worker). torch, OpenVINO fp32 and OpenVINO bf16;
- the same for torchvision's R50-FPN Mask R-CNN with random weights at ``--r50-size``;
- agreement with torch on those frames, detections as the pipeline gives them: frames with the same
  count and labels, the largest box difference, the smallest mask IoU;
- mask and box AP of each runtime on the model card's clip (``streamseg synth --seed 1000
  --objects 8``), as `streamseg eval` reports them.

Writes runs/bench/runtimes.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"
DEMO = ROOT / "samples" / "demo.mp4"
VARIANTS = {  # name: (model, weights, runtime, precision)
    "shapes torch": ("shapes", None, "torch", "fp32"),
    "shapes openvino fp32": ("shapes", None, "openvino", "fp32"),
    "shapes openvino bf16": ("shapes", None, "openvino", "bf16"),
    "r50 torch": ("maskrcnn_resnet50_fpn", "random", "torch", "fp32"),
    "r50 openvino fp32": ("maskrcnn_resnet50_fpn", "random", "openvino", "fp32"),
}


def _frames(count: int):
    from streamseg.sources import open_source

    with open_source(str(DEMO)) as video:
        return [frame for frame, _ in zip(video, range(count))]


def _predictor(variant: str, args, workers: int, cache: Path):
    from streamseg.engine import Predictor
    from streamseg.models import load_model

    import torch

    model, weights, runtime, precision = VARIANTS[variant]
    size = args.r50_size if model != "shapes" else None
    torch.manual_seed(0)  # random weights: the same ones in every variant's process, or agreement means nothing
    predictor = Predictor(load_model(model, weights, "cpu"), inference_size=size, runtime=runtime,
                          precision=precision, workers=workers, cache_dir=cache)
    predictor.prepare(360, 640)  # as a run of the demo clip does (OpenVINO: a graph for that size)
    return predictor


def _pipeline_ms(predictor, frames, workers: int, threads: int) -> float:
    """ms per frame with ``workers`` threads taking frames from one list, as the pipeline's inference stage does."""
    import torch

    pending, lock = iter(frames), threading.Lock()

    def work() -> None:
        torch.set_num_threads(threads)  # per thread, as the pipeline's workers do (postprocess, torch runtime)
        while True:
            with lock:
                frame = next(pending, None)
            if frame is None:
                return
            predictor.forward([frame])

    pool = [threading.Thread(target=work) for _ in range(workers)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return (time.perf_counter() - started) / len(frames) * 1000


def measure(variant: str, args) -> dict:
    """One variant, in this process: single-pass latency, pipeline ms per frame, and the detections."""
    import torch

    from streamseg.pipeline import CPU_INFER_WORKERS
    from streamseg.system import usable_cpus

    cores = usable_cpus()
    workers = min(cores, CPU_INFER_WORKERS)  # the pipeline's plan (Segmenter)
    threads = max(1, cores // workers)
    frames = _frames(args.warmup + args.frames)
    warm, timed = frames[:args.warmup], frames[args.warmup:]
    cache = Path(args.cache)
    alone = _predictor(variant, args, 1, cache)
    torch.set_num_threads(cores)
    for frame in warm:
        alone.forward([frame])
    latencies = []
    for frame in timed:
        started = time.perf_counter()
        alone.forward([frame])
        latencies.append((time.perf_counter() - started) * 1000)
    found = alone.predict(timed)
    side_by_side = _pipeline_ms(_predictor(variant, args, workers, cache), warm + timed, workers, threads)
    return {"variant": variant, **alone.runtime.describe(), "frames": len(timed), "cores": cores,
            "workers": workers, "threads_per_worker": threads,
            "alone_median_ms": round(statistics.median(latencies), 2),
            "pipeline_ms_per_frame": round(side_by_side, 2), "detections": sum(len(f) for f in found),
            "found": pickle.dumps(found).hex()}


def startup(args) -> dict:
    """Seconds until the shipped model's OpenVINO runtime is ready, in this process."""
    from streamseg.engine import Predictor
    from streamseg.models import load_model

    model = load_model("shapes", device="cpu")
    started = time.perf_counter()
    Predictor(model, runtime="openvino", cache_dir=Path(args.cache))
    return {"seconds": round(time.perf_counter() - started, 2)}


def _in_own_process(what: str, args, cache: Path) -> dict:
    command = [sys.executable, __file__, "--measure", what, "--cache", str(cache), "--frames", str(args.frames),
               "--warmup", str(args.warmup), "--r50-size", str(args.r50_size)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def accuracy(args, runtime: str, precision: str, scratch: Path) -> dict:
    """Mask and box AP of the shipped model on the model card's clip, with this runtime."""
    clip = OUT / f"model-card-{args.accuracy_frames}.mp4"
    if not clip.exists():
        subprocess.run([sys.executable, "-m", "streamseg", "synth", str(clip), "--frames", str(args.accuracy_frames),
                        "--seed", "1000", "--objects", "8"], check=True, capture_output=True)
    out = scratch / f"{runtime}-{precision}"
    subprocess.run([sys.executable, "-m", "streamseg", "segment", str(clip), "--out", str(out), "--no-video", "--quiet",
                    "--runtime", runtime, "--precision", precision], check=True,
                   env={**os.environ, "STREAMSEG_CACHE_DIR": str(scratch / "cache")})  # the entries measured above
    done = subprocess.run([sys.executable, "-m", "streamseg", "eval", str(out / "frames.jsonl"),
                           str(clip.with_suffix(".gt.jsonl")), "--json"], check=True, capture_output=True, text=True)
    metrics = json.loads(done.stdout)
    return {"runtime": runtime, "precision": precision, "mask_ap": round(metrics["mask_ap"], 4),
            "box_ap": round(metrics["box_ap"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="timed frames of samples/demo.mp4")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--r50-size", type=int, default=360, help="input size for R50-FPN (0: skip it)")
    parser.add_argument("--accuracy-frames", type=int, default=300, help="frames of the model card clip (0: skip)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one measurement, in this process
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(startup(args) if args.measure == "startup" else measure(args.measure, args)))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    from streamseg.runtimes.agreement import compare

    with tempfile.TemporaryDirectory(prefix="streamseg-runtimes-") as scratch:
        scratch = Path(scratch)
        cold = _in_own_process("startup", args, scratch / "cold")
        warm = _in_own_process("startup", args, scratch / "cold")
        variants = [v for v in VARIANTS if args.r50_size or not v.startswith("r50")]
        results = {v: _in_own_process(v, args, scratch / "cache") for v in variants}
        found = {name: pickle.loads(bytes.fromhex(result.pop("found"))) for name, result in results.items()}
        for name, result in results.items():
            reference = found[name.split()[0] + " torch"]
            result["agreement_with_torch"] = compare(zip(found[name], reference)).to_dict()
        accuracies = [accuracy(args, *VARIANTS[v][2:], scratch) for v in variants
                      if v.startswith("shapes")] if args.accuracy_frames else []
    report = {"date": time.strftime("%Y-%m-%d"), "startup_seconds": {"empty_cache": cold["seconds"],
                                                                      "cached": warm["seconds"]},
              "forward": list(results.values()), "accuracy": accuracies}
    (OUT / "runtimes.json").write_text(json.dumps(report, indent=2))
    print(_tables(report))


def _tables(report: dict) -> str:
    lines = [f"OpenVINO start-up, shipped model: {report['startup_seconds']['empty_cache']} s with an empty cache, "
             f"{report['startup_seconds']['cached']} s cached", "",
             "| variant | ran as | one pass alone, median ms | pipeline ms/frame | same detections | "
             "max box diff px | min mask IoU |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["forward"]:
        a = r["agreement_with_torch"]
        lines.append(f"| {r['variant']} | {r['runtime']} {r['precision']} | {r['alone_median_ms']} | "
                     f"{r['pipeline_ms_per_frame']} ({r['workers']}x{r['threads_per_worker']}) | "
                     f"{a['same_detections']}/{a['frames']} ({r['detections']} detections) | {a['max_box_diff']} | "
                     f"{a['min_mask_iou']} |")
    if report["accuracy"]:
        lines += ["", "| runtime | mask AP | box AP |", "| --- | ---: | ---: |"]
        lines += [f"| {a['runtime']} {a['precision']} | {a['mask_ap']} | {a['box_ap']} |" for a in report["accuracy"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
