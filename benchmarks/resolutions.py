"""`streamseg segment` at 360p, 720p, 1080p and 4K, for two checkouts back to back in one sitting.

    .venv/bin/python benchmarks/resolutions.py                       # this checkout alone
    .venv/bin/python benchmarks/resolutions.py --baseline ../old     # against another checkout (e.g. a worktree)
    .venv/bin/python benchmarks/resolutions.py --only 1080p-crowd --rounds 2
    .venv/bin/python benchmarks/resolutions.py --baseline ../old --new-torch   # and this checkout with --runtime torch

Each clip is made once (seeded, under runs/resolutions/); each run is the real command line with
the shipped model, overlay and JSONL on, in its own process, so its peak resident memory is the
process's own (``wait4``). fps is the summary's (frames over the run's wall time, model loading
excluded). Rounds alternate baseline and this checkout, so both see the same state of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "runs" / "resolutions"
# name: (size, frames, objects, seed). The first three are the clips; "crowd" has ~11 objects a frame.
SCENES = {
    "360p": ("640x360", 150, 6, 777),
    "720p": ("1280x720", 150, 6, 777),
    "1080p": ("1920x1080", 150, 6, 777),
    "1080p-crowd": ("1920x1080", 60, 11, 778),
    "4k": ("3840x2160", 60, 6, 777),
}


def make_clip(name: str) -> Path:
    size, frames, objects, seed = SCENES[name]
    clip = CLIPS / f"{name}.mp4"
    if not clip.exists():
        CLIPS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "streamseg", "synth", str(clip), "--frames", str(frames), "--size", size,
                        "--seed", str(seed), "--objects", str(objects)], check=True, capture_output=True)
    return clip


def run_segment(checkout: Path, clip: Path, options: tuple[str, ...] = ()) -> dict:
    """One `streamseg segment` of ``clip`` with the code of ``checkout``: the summary's figures and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="streamseg-res-") as scratch:
        out = Path(scratch) / "run"
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        # Run from the scratch folder: `python -m` puts the working directory ahead of PYTHONPATH.
        process = subprocess.Popen([sys.executable, "-m", "streamseg", "segment", str(clip), "--out", str(out),
                                    "--quiet", *options], env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{checkout}: segment {clip} failed: {process.stderr.read().decode()}")
        summary = json.loads((out / "summary.json").read_text())
    run = summary["run"]
    return {"fps": run["fps"], "stage_seconds": run["stage_seconds"], "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "detections": sum(summary["detections"].values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to run alongside this one")
    parser.add_argument("--only", nargs="*", choices=list(SCENES), help="these clips only")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=CLIPS / "results.json")
    parser.add_argument("--new-torch", action="store_true", help="also run this checkout with --runtime torch")
    args = parser.parse_args()
    checkouts = {"new": (ROOT, ())} if args.baseline is None else {"old": (args.baseline.resolve(), ()), "new": (ROOT, ())}
    if args.new_torch:
        checkouts["new-torch"] = (ROOT, ("--runtime", "torch"))
    results: dict = {}
    for name in args.only or SCENES:
        clip = make_clip(name)
        for round_ in range(args.rounds):
            for label, (checkout, options) in checkouts.items():
                figures = run_segment(checkout, clip, options)
                results.setdefault(name, {}).setdefault(label, []).append(figures)
                print(f"{name:12} round {round_ + 1} {label}: {figures['fps']:6.2f} fps, peak RSS "
                      f"{figures['peak_rss_mb']:7.1f} MB, {figures['detections']} detections", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
