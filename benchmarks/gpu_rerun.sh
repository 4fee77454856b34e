#!/usr/bin/env bash
# The short rerun for the GPU day: the CUDA tests again, R50-FPN at the settings that matter, and a
# profile of where the shipped model's forward pass spends its time (the GPU sat 94 % idle for it).
#
#   bash benchmarks/gpu_rerun.sh OUT        (wheels in .whl/ and clips in .gpu/ as for gpu_check.sh)
set -u
out=${1:?usage: gpu_rerun.sh OUT}
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! python3 -c "import av, pycocotools, trackeval" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
echo "=== $(date -u +%H:%M:%S) tests"
timeout 60 python3 -m pytest -p no:cacheprovider -o addopts="" -q -rs tests/test_engine.py tests/test_pipeline.py -k cuda \
    2>&1 | tee "$out/tests.log" | tail -6
for clip in c720 c1080; do
    echo "=== $(date -u +%H:%M:%S) r50 $clip"
    timeout 40 python3 benchmarks/gpu_sweep.py ".gpu/$clip.mp4" --model maskrcnn_resnet50_fpn --weights random \
        --detections 20 --frames 96 --batches 4,8 --streams 2,4 --json "$out/sweep.jsonl"
done
echo "=== $(date -u +%H:%M:%S) profile"
timeout 30 python3 benchmarks/gpu_profile.py .gpu/c720.mp4 > "$out/profile.txt" 2>&1; head -40 "$out/profile.txt"
echo "=== $(date -u +%H:%M:%S) done"
