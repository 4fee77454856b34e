"""Where a forward pass's time goes on CUDA: torch's profiler over batches of 4 frames of a clip,
the ops sorted by their CPU time (the shipped model keeps an H200 busy 6 % of the time: the host
side is the bound). Prints two tables, for the shipped model and for R50-FPN with random weights.

    python benchmarks/gpu_profile.py clip.mp4
"""

from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from streamseg.bench import decode
from streamseg.engine import Predictor
from streamseg.models import load_model


def main() -> None:
    frames, _, _ = decode(sys.argv[1], 24, 0.0)
    for name, weights in (("shapes", None), ("maskrcnn_resnet50_fpn", "random")):
        predictor = Predictor(load_model(name, weights, "cuda"))
        batches = [frames[i:i + 4] for i in range(0, len(frames), 4)]
        for batch in batches[:2]:
            predictor.predict(batch)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for batch in batches[2:]:
                predictor.predict(batch)
            torch.cuda.synchronize()
        print(f"# {name}: {len(batches) - 2} batches of 4")
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30, max_name_column_width=50))


if __name__ == "__main__":
    main()
