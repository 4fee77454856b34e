#!/usr/bin/env bash
# The GPU day in one go (issue 19): CUDA tests, then the batch x streams sweep, the bench's stage table
# and a short CUDA training, each step bounded by its own timeout so one hang does not cost the rest.
#
#   bash benchmarks/gpu_check.sh OUT [STEP ...]     STEP: env tests sweep pool bench train (default: all), or
#                                                   r50-short and profile, the short rerun:
#   bash benchmarks/gpu_check.sh OUT tests r50-short profile      (about 70 s on an H200, 2026-11-30)
#
# DEVICE=cpu FRAMES=8 tries the script's CPU half (a dry run: the shipped model only, a few frames).
#
# Written for a bare GPU machine with Python, torch, torchvision, numpy, scipy, OpenCV, typer, rich,
# pytest and hypothesis but without PyAV, pycocotools or TrackEval: those come as wheels in .whl/
# (cp312 manylinux, see docs/benchmarks.md) and are installed into a scratch folder first. Clips come
# from .gpu/ when made beforehand (`streamseg synth` is CPU work), else are made here. Everything it
# measures lands in OUT: run.log, env.txt, tests.log, pool.jsonl, sweep.jsonl, bench.json, train_log.jsonl.
set -u
out=${1:?usage: gpu_check.sh OUT [STEP ...]}
shift
steps=${*:-env tests pool sweep bench train}
device=${DEVICE:-cuda}
frames=${FRAMES:-120}
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

if [ -d .whl ] && ! python3 -c "import av, pycocotools, trackeval" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
streamseg() { python3 -m streamseg "$@"; }
step() { echo "=== $(date -u +%H:%M:%S) $*"; }

clips=.gpu
mkdir -p "$clips"
for size in 1280x720 1920x1080; do
    [ -f "$clips/c${size#*x}.mp4" ] || streamseg synth "$clips/c${size#*x}.mp4" --frames 300 --size "$size" --seed 777 >/dev/null
done

for s in $steps; do
    case $s in
    env)
        step env
        { nvidia-smi; python3 -c "import torch, torchvision, av, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version()); print('torchvision', torchvision.__version__, 'av', av.__version__, 'numpy', numpy.__version__, 'cv2', cv2.__version__); print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"; nproc; } > "$out/env.txt" 2>&1
        cat "$out/env.txt" ;;
    tests)
        # Every test that skips without CUDA, and the CPU tests of the same files for company.
        step tests
        timeout 240 python3 -m pytest -p no:cacheprovider -o addopts="" -q -rs tests/test_engine.py tests/test_pipeline.py \
            -k cuda 2>&1 | tee "$out/tests.log" | tail -15 ;;
    sweep)
        # R50-FPN (COCO's compute, 20 detections a frame) at 720p and 1080p, every batch x streams, then once without the
        # overlay video (what rendering costs); the shipped model beside it.
        for clip in c720 c1080; do
            step "sweep r50 $clip"
            [ "$device" = cpu ] || timeout 200 python3 benchmarks/gpu_sweep.py "$clips/$clip.mp4" --model maskrcnn_resnet50_fpn \
                --weights random --detections 20 --frames "$frames" --batches 1,4,8 --streams 1,2,4 --json "$out/sweep.jsonl"
            [ "$device" = cpu ] || timeout 60 python3 benchmarks/gpu_sweep.py "$clips/$clip.mp4" --model maskrcnn_resnet50_fpn \
                --weights random --detections 20 --frames "$frames" --batches 8 --streams 2 --no-video --json "$out/sweep.jsonl"
            step "sweep shapes $clip"
            timeout 90 python3 benchmarks/gpu_sweep.py "$clips/$clip.mp4" --device "$device" --frames "$frames" --batches 4,8 \
                --streams 1,2 --json "$out/sweep.jsonl"
        done ;;
    pool)
        # Cross-source batching (issue 17): 1, 4 and 8 live sources, one frame at a time each, passes of 1 or up to 8.
        step pool
        [ "$device" = cpu ] || timeout 90 python3 benchmarks/gpu_pool.py "$clips/c720.mp4" --model maskrcnn_resnet50_fpn \
            --weights random --detections 20 --frames "$frames" --json "$out/pool.jsonl"
        timeout 60 python3 benchmarks/gpu_pool.py "$clips/c720.mp4" --device "$device" --frames "$frames" --json "$out/pool.jsonl" ;;
    r50-short)
        # The settings that matter, for a rerun: R50-FPN at batch 4 and 8 on 2 and 4 streams.
        for clip in c720 c1080; do
            step "r50 $clip"
            timeout 40 python3 benchmarks/gpu_sweep.py "$clips/$clip.mp4" --model maskrcnn_resnet50_fpn --weights random \
                --detections 20 --frames 96 --batches 4,8 --streams 2,4 --json "$out/sweep.jsonl"
        done ;;
    profile)
        # Where a forward pass's host time goes (the shipped model left the GPU 94 % idle).
        step profile
        timeout 30 python3 benchmarks/gpu_profile.py "$clips/c720.mp4" > "$out/profile.txt" 2>&1
        head -40 "$out/profile.txt" ;;
    bench)
        # The whole stage table once: the shipped model at 1080p with the default CUDA settings.
        step bench
        timeout 120 python3 -m streamseg bench "$clips/c1080.mp4" --device "$device" --frames $((frames + 30)) --json "$out/bench.json" ;;
    train)
        step train
        timeout 90 python3 -m streamseg train --device "$device" --minutes 0.75 --out /tmp/gpu-train >/dev/null \
            && cp /tmp/gpu-train/log.jsonl "$out/train_log.jsonl" && tail -2 "$out/train_log.jsonl" ;;
    *) echo "unknown step $s" ;;
    esac
done
step done
