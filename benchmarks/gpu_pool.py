"""Cross-source batching (issue 17): N live sources sending one frame at a time to one inference pool.

Each source is a thread asking the pool for one frame at a time, as a camera's pipeline does (live
sources run at batch 1, marked urgent). With ``--max-batch 1`` every frame is its own forward pass;
with 8, frames of sources waiting together go through one pass. Prints one JSON line per
(sources, max batch): frames a second over all sources, forward passes, frames a pass.

    python benchmarks/gpu_pool.py clip.mp4 --model maskrcnn_resnet50_fpn --weights random --detections 20 \
        --sources 1,4,8 --max-batch 1,8 --json pool.jsonl
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from gpu_sweep import detect_class_one, int_list, model_arguments

from streamseg.bench import decode
from streamseg.engine import Predictor
from streamseg.inference import InferencePool
from streamseg.models import load_model


def measure(predictor: Predictor, frames: list, sources: int, max_batch: int, workers: int) -> dict:
    pool = InferencePool(predictor, workers, None, max_batch)

    def source(offset: int) -> None:
        for frame in frames[offset::sources]:
            pool.infer([frame], urgent=True)

    threads = [threading.Thread(target=source, args=(i,)) for i in range(sources)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    pool.close()
    return {"sources": sources, "max_batch": max_batch, "workers": workers, "frames": len(frames),
            "fps": round(len(frames) / seconds, 1), "passes": pool.passes,
            "frames_per_pass": round(len(frames) / max(1, pool.passes), 2)}


def main() -> None:
    parser = model_arguments(__doc__, 160)
    parser.add_argument("--sources", type=int_list, default=[1, 4, 8])
    parser.add_argument("--max-batch", type=int_list, default=[1, 8])
    parser.add_argument("--workers", type=int, default=2, help="pool workers (CUDA streams)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    model = load_model(args.model, args.weights, args.device)
    if args.detections is not None:
        detect_class_one(model, args.detections)
    predictor = Predictor(model)
    frames, _, info = decode(args.clip, args.frames, 0.0)
    predictor.predict(frames[:4])  # kernels picked, the allocator's pools grown
    for sources in args.sources:
        for max_batch in args.max_batch:
            row = {"model": model.name, "device": str(model.device), "clip": f"{info.width}x{info.height}",
                   **measure(predictor, frames, sources, max_batch, args.workers), "date": time.strftime("%Y-%m-%d")}
            print(json.dumps(row), flush=True)
            with args.json.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
