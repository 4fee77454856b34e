"""Sweep ``--batch`` × ``--streams`` on a GPU: forward pass alone and the whole async pipeline, one model load.

For each setting: the forward pass alone with the pipeline's workers (CUDA streams) on frames decoded
beforehand, then the async pipeline end to end (decode → model → track → render → encode + JSONL), with
the GPU's busy % (NVML, sampled every 50 ms), peak GPU memory and the per-stage seconds. One JSON line
per setting goes to ``--json`` (appended), so a run cut short keeps what it measured.

torchvision's models with random weights score every class at about 1/91, so nothing passes the usual
threshold and the mask head never runs; at threshold 0 all 1000 proposals x 90 classes reach the NMS,
which then takes seconds (measured on an H200: 3.7 fps). ``--detections N`` makes the box classifier
call every proposal class 1 at 0.62 (its weights zeroed, biases set: the same compute), so the NMS sees
1000 boxes, as a trained model's at threshold 0.05 would, and keeps the N best
(``detections_per_img``): the work of a COCO scene with N objects, masks, paste, overlay and JSON
included (masks of random shapes, boxes of random sizes).

    python benchmarks/gpu_sweep.py clip.mp4 --model maskrcnn_resnet50_fpn --weights random --detections 20 \
        --batches 1,4,8 --streams 1,2,4 --json sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from streamseg.bench import decode, forward_wall_seconds, pipeline_run
from streamseg.config import build_config
from streamseg.models import LoadedModel, load_model
from streamseg.pipeline import Segmenter


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def detect_class_one(model: LoadedModel, detections: int) -> None:
    """Make a random-weights torchvision model find ``detections`` objects a frame (see the description)."""
    heads = model.module.roi_heads
    heads.detections_per_img = detections
    with torch.no_grad():
        heads.box_predictor.cls_score.weight.zero_()
        heads.box_predictor.cls_score.bias.fill_(-10.0)
        heads.box_predictor.cls_score.bias[0] = 0.0  # background
        heads.box_predictor.cls_score.bias[1] = 0.5  # softmax: 0.62 for class 1, the rest below 1e-4


def model_arguments(description: str, frames: int) -> argparse.ArgumentParser:
    """A parser with what every GPU script takes: the clip, the model and its device, frames, --detections."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip")
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--detections", type=int, default=None, help="keep this many per frame at threshold 0")
    return parser


def main() -> None:
    parser = model_arguments(__doc__, 150)
    parser.add_argument("--batches", type=int_list, default=[1, 4, 8])
    parser.add_argument("--streams", type=int_list, default=[1, 2, 4])
    parser.add_argument("--no-video", action="store_true", help="no overlay video (JSONL only): what rendering costs")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    model = load_model(args.model, args.weights, args.device)
    options = {}
    if args.detections is not None:
        detect_class_one(model, args.detections)
    frames, _, info = decode(args.clip, args.frames, 0.0)
    for batch in args.batches:
        for streams in args.streams:
            config = build_config(model=args.model, weights=args.weights, device=args.device, batch=batch,
                                  streams=streams, max_frames=len(frames), video=not args.no_video, **options)
            segmenter = Segmenter(config, model)
            batches = [frames[i:i + batch] for i in range(0, len(frames), batch)]
            for warm in batches[:2]:  # kernels picked, the allocator's pools grown
                segmenter.predictor.predict(warm)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            seconds = forward_wall_seconds(segmenter.predictor, batches, segmenter.infer_workers, None)
            with tempfile.TemporaryDirectory(prefix="gpu-sweep-") as scratch:
                run = pipeline_run(args.clip, config, model, Path(scratch), lambda stage: None)
            forward_fps = round(len(frames) / seconds, 1)
            row = {"model": model.name, "clip": f"{info.width}x{info.height}", "frames": len(frames),
                   "detections": args.detections, "video": not args.no_video, "batch": batch, "streams": streams,
                   "forward_fps": forward_fps, "async_fps": run.fps,
                   "async_over_forward": round(run.fps / forward_fps, 3),
                   "gpu_busy_percent": run.gpu_busy_percent,
                   "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if model.device.type == "cuda" else None,
                   "peak_rss_mb": run.peak_rss_mb, "latency_p50_ms": run.latency_p50_ms,
                   "stage_seconds": run.stage_seconds, "date": time.strftime("%Y-%m-%d")}
            print(json.dumps(row), flush=True)
            with args.json.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
