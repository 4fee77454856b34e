"""The issue-17 benchmark: many sources at once, locally and on Ray, against one source alone.

    .venv/bin/python benchmarks/many.py                  # 8 clips 640x360 x 150 frames, shipped model
    .venv/bin/python benchmarks/many.py --kill           # also SIGKILL a Ray worker mid-run
    .venv/bin/python benchmarks/many.py --clips 3 --frames 20 --size 160x90   # a quick correctness check

Makes its seeded clips under runs/bench/many/, then measures:
  alone   every clip segmented alone, one after another (the reference outputs; fps of one clip alone)
  local   all clips through the local backend (one model, --max-concurrent files at once)
  ray     all clips through the Ray backend on a local Ray (--workers actors of --cpus-per-worker CPUs)
  resume  the Ray run again with --resume: every source skipped
Each run's frames.jsonl must be byte for byte the clip's alone; the table says so. Aggregate fps is all
frames over the wall time from the first frame of any source to the end (model loading and Ray
start-up are shown apart). Writes runs/bench/many/many.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamseg import __version__
from streamseg.config import build_config
from streamseg.many import segment_many
from streamseg.pipeline import Segmenter
from streamseg.synth import write_clip
from streamseg.system import usable_cpus

OUT = ROOT / "runs" / "bench" / "many"


@dataclass
class Phase:
    name: str
    frames: int = 0
    startup_s: float = 0.0  # from the call to the first frame: model load, Ray and its actors
    wall_s: float = 0.0  # from the first frame of any source to the last result
    identical: str = "-"  # frames.jsonl byte-identical to alone: "8/8"
    statuses: dict = field(default_factory=dict)
    note: str = ""

    @property
    def fps(self) -> float:
        return round(self.frames / self.wall_s, 2) if self.wall_s else 0.0


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node(), "cpu": model,
            "cpus_usable": usable_cpus(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "streamseg": __version__}


def make_clips(count: int, frames: int, size: str) -> list[Path]:
    width, height = (int(v) for v in size.split("x"))
    folder = OUT / f"clips-{count}x{frames}-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for seed in range(count):
        clip = folder / f"clip{seed}.mp4"
        if not clip.exists():
            write_clip(clip, frames=frames, width=width, height=height, seed=1000 + seed, objects=6)
        clips.append(clip)
    return clips


def run_alone(clips: list[Path], settings: dict) -> tuple[Phase, Phase, dict[str, bytes]]:
    """Each clip alone on one Segmenter: the first clip's fps, all clips' total, and the reference outputs."""
    started = time.perf_counter()
    segmenter = Segmenter(build_config(**settings))
    load_s = time.perf_counter() - started
    one, total, reference = Phase("one clip alone", startup_s=load_s), Phase("all clips, one by one"), {}
    for index, clip in enumerate(clips):
        out = OUT / "alone" / clip.stem
        with segmenter.run(clip, out, overwrite=True) as run:
            began = time.perf_counter()
            frames = sum(1 for _ in run)
            wall = time.perf_counter() - began
        reference[clip.stem] = (out / "frames.jsonl").read_bytes()
        total.frames, total.wall_s = total.frames + frames, total.wall_s + wall
        if index == 0:
            one.frames, one.wall_s = frames, wall
    total.statuses = {"complete": len(clips)}
    one.statuses = {"complete": 1}
    return one, total, reference


def run_many(name: str, clips: list[Path], reference: dict[str, bytes], settings: dict, kill: bool = False,
             **options) -> Phase:
    phase, first_frame, killed = Phase(name), [], []

    def on_progress(progress) -> None:
        if not first_frame and progress.frames:
            first_frame.append(time.perf_counter())
        if kill and progress.worker and progress.attempt == 1 and not killed and progress.frames:
            killed.append(progress.name)
            os.kill(progress.worker, signal.SIGKILL)

    started = time.perf_counter()
    results = list(segment_many([str(c) for c in clips], out=OUT / name, on_progress=on_progress,
                                overwrite=not options.get("resume"), **options, **settings))
    ended = time.perf_counter()
    begin = first_frame[0] if first_frame else ended
    phase.startup_s, phase.wall_s = begin - started, ended - begin
    phase.frames = sum(r.frames or 0 for r in results if r.status == "complete")
    for result in results:
        phase.statuses[result.status] = phase.statuses.get(result.status, 0) + 1
    same = sum((r.out / "frames.jsonl").read_bytes() == reference[r.name] for r in results if r.status != "failed")
    phase.identical = f"{same}/{len(clips)}"
    if killed:
        retried = [r.name for r in results if r.attempts > 1]
        phase.note = f"SIGKILLed the worker of {killed[0]}; re-run: {', '.join(retried) or 'none'}"
    return phase


def print_table(phases: list[Phase], info: dict) -> None:
    print(f"\nstreamseg {info['streamseg']} on {info['host']}: {info['cpu']} ({info['cpus_usable']} usable CPUs"
          f"{', ' + info['gpu'] if info['gpu'] else ''}), torch {info['torch']}, {info['date']}")
    print(f"{info['clips']} clips {info['size']} x {info['frames']} frames, model {info['model']}\n")
    header = f"{'run':<28}{'frames':>8}{'fps':>9}{'x alone':>9}{'wall s':>9}{'start s':>9}  {'identical':<10}statuses"
    print(header)
    print("-" * len(header))
    alone = phases[0].fps or 1.0
    for p in phases:
        ratio = f"{p.fps / alone:.2f}" if p.frames else "-"
        statuses = ", ".join(f"{n} {s}" for s, n in p.statuses.items())
        print(f"{p.name:<28}{p.frames:>8}{p.fps:>9.2f}{ratio:>9}{p.wall_s:>9.2f}{p.startup_s:>9.2f}  "
              f"{p.identical:<10}{statuses}{'  ' + p.note if p.note else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--model", help="model name or checkpoint (default: the shipped shapes model)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="local backend: files at once")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--no-ray", action="store_true", help="the local backend only")
    parser.add_argument("--kill", action="store_true", help="SIGKILL one Ray worker mid-run (a fault, not a speed)")
    args = parser.parse_args()
    settings = {"model": args.model} if args.model else {}
    clips = make_clips(args.clips, args.frames, args.size)
    one, total, reference = run_alone(clips, settings)
    phases = [one, total, run_many("local", clips, reference, settings, max_concurrent=args.max_concurrent)]
    if not args.no_ray:
        import ray

        began = time.perf_counter()
        ray.init(num_cpus=max(1, round(args.workers * args.cpus_per_worker)), include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
        ray_start = time.perf_counter() - began
        ray_options = {"backend": "ray", "workers": args.workers, "cpus_per_worker": args.cpus_per_worker}
        phases.append(run_many("ray", clips, reference, settings, kill=args.kill, **ray_options))
        phases[-1].note = (phases[-1].note + f"  Ray start {ray_start:.1f} s").strip()
        phases.append(run_many("ray", clips, reference, settings, resume=True, **ray_options))
        phases[-1].name = "ray --resume"
        ray.shutdown()
    info = {**machine(), "clips": args.clips, "frames": args.frames, "size": args.size,
            "model": args.model or "shapes (shipped)"}
    print_table(phases, info)
    (OUT / "many.json").write_text(json.dumps({**info, "phases": [{**asdict(p), "fps": p.fps} for p in phases]},
                                              indent=2) + "\n")
    print(f"\nwrote {OUT / 'many.json'}")


if __name__ == "__main__":
    main()
