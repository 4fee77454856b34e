"""The async pipeline against the sequential baseline, and its failure modes."""

import json
import shutil
import time
from collections import Counter

import numpy as np
import pytest
import torch

from streamseg.config import build_config
from streamseg.count import parse_zones
from streamseg.errors import OutputError, PipelineError
from streamseg.formats import read_records, record_to_instances
from streamseg.models import load_model
from streamseg import pipeline
from streamseg.pipeline import Segmenter
from streamseg.runtimes.agreement import pixels_off_edge
from streamseg.synth import SyntheticSource


def _segmenter(checkpoint, **settings):
    config = build_config(model=str(checkpoint), device="cpu", score_threshold=0.05, **settings)
    return Segmenter(config, load_model(str(checkpoint), device="cpu"))


@pytest.mark.parametrize("settings", [{}, {"stride": 3, "batch": 4}])
def test_async_and_sequential_write_identical_jsonl(tmp_path, synth_clip, tiny_checkpoint, settings):
    lines = {}
    for mode in ("sequential", "async"):
        run = _segmenter(tiny_checkpoint, mode=mode, **settings).run(str(synth_clip), tmp_path / mode)
        assert [r.frame.index for r in run] == list(range(40))
        lines[mode] = (tmp_path / mode / "frames.jsonl").read_text()
        summary = json.loads((tmp_path / mode / "summary.json").read_text())
        assert summary["complete"] and summary["config"]["mode"] == mode
        assert summary["run"]["latency_ms"]["p95"] >= summary["run"]["latency_ms"]["p50"] > 0
    assert lines["async"] == lines["sequential"]
    assert len(lines["async"].splitlines()) == (40 if not settings else 14)


def test_a_failing_model_stops_the_run_promptly_with_a_clear_error(tmp_path, synth_clip, tiny_checkpoint):
    segmenter = _segmenter(tiny_checkpoint)
    real_forward, calls = segmenter.predictor.forward, []

    def forward(frames):
        calls.append(len(frames))
        if len(calls) == 6:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return real_forward(frames)

    segmenter.predictor.forward = forward
    started = time.monotonic()
    run = segmenter.run(str(synth_clip), tmp_path / "run")
    seen = []
    with pytest.raises(PipelineError, match="RuntimeError: CUDA error"):
        for result in run:
            seen.append(result.frame.index)
    assert time.monotonic() - started < 30
    # The failure overtakes work in flight: the frames that came out are a prefix, never past the sixth call's.
    assert seen == list(range(len(seen))) and len(seen) <= 5
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["complete"] is False and "CUDA error" in summary["reason"]
    records = [json.loads(line) for line in (tmp_path / "run" / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(len(records))) and len(records) <= 5


def test_a_failing_writer_surfaces_in_the_consumer(tmp_path, synth_clip, tiny_checkpoint):
    run = _segmenter(tiny_checkpoint).run(str(synth_clip), tmp_path / "run")

    def broken(image, pts, seconds):
        raise OSError("No space left on device")

    run.outputs.video.write = broken
    with pytest.raises(PipelineError, match="No space left on device"):
        list(run)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["complete"] is False


def test_results_are_released_behind_the_writer(synth_clip, tiny_checkpoint, tmp_path):
    run = _segmenter(tiny_checkpoint).run(str(synth_clip), tmp_path / "run")
    results = list(run)
    assert all(r.overlay is None for r in results)  # rendered frames are not kept alive by the caller
    assert all(isinstance(r.instances.masks, np.ndarray) for r in results)


def test_large_frames_wait_one_batch_per_queue_with_the_same_results(tmp_path, synth_clip, tiny_checkpoint, monkeypatch):
    sizes = []

    class Recording(pipeline.Stages):
        def __init__(self, items, stages, queue_size, **options):
            sizes.append(queue_size)
            super().__init__(items, stages, queue_size, **options)

    monkeypatch.setattr(pipeline, "Stages", Recording)
    for name, budget in (("default", pipeline.QUEUED_FRAME_BYTES), ("small", 1 << 20)):
        monkeypatch.setattr(pipeline, "QUEUED_FRAME_BYTES", budget)
        list(_segmenter(tiny_checkpoint).run(str(synth_clip), tmp_path / name))
    assert sizes == [pipeline.QUEUE_SIZE, 1]
    assert (tmp_path / "small" / "frames.jsonl").read_text() == (tmp_path / "default" / "frames.jsonl").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_streams_and_batches_keep_every_frame_in_order(tmp_path, synth_clip, tiny_checkpoint):
    config = build_config(model=str(tiny_checkpoint), device="cuda", score_threshold=0.05, batch=3, streams=2)
    run = Segmenter(config).run(str(synth_clip), tmp_path / "run")
    assert [r.frame.index for r in run] == list(range(40))
    records = [json.loads(line) for line in (tmp_path / "run" / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(40))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["infer_workers"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_batches_on_two_streams_finds_what_the_cpu_finds(tmp_path, synth_clip):
    # fp16 moves a mask's edge by a pixel at most, which costs a small shape several points of IoU (a
    # 15x15 square is 0.88): so every pixel where the GPU's mask differs from the CPU's must lie on the
    # CPU mask's edge (within one pixel of it). A frame whose results came from another frame of its
    # batch, or were read before its stream finished, would differ far inside the shapes.
    found = {}
    for device, options in (("cpu", {"runtime": "torch"}), ("cuda", {"batch": 4, "streams": 2})):
        config = build_config(device=device, track=False, video=False, **options)
        list(Segmenter(config).run(str(synth_clip), tmp_path / device))
        found[device] = [record_to_instances(r) for r in read_records(tmp_path / device / "frames.jsonl")]
    assert [f.frame_index for f in found["cuda"]] == [f.frame_index for f in found["cpu"]] == list(range(40))
    same, off_edge, changed, ious = 0, 0, 0, []
    for cpu, gpu in zip(found["cpu"], found["cuda"]):
        same += len(cpu) == len(gpu) and sorted(cpu.class_ids) == sorted(gpu.class_ids)
        for mask in cpu.masks:
            overlaps = [np.logical_and(mask, other).sum() / np.logical_or(mask, other).sum() for other in gpu.masks]
            if not overlaps:
                continue
            best = gpu.masks[int(np.argmax(overlaps))]
            changed += (mask != best).sum()
            off_edge += pixels_off_edge(mask, best)
            ious.append(max(overlaps))
    assert same >= 38 and len(ious) > 40
    assert np.mean(ious) >= 0.97 and off_edge <= 0.01 * changed, (np.mean(ious), off_edge, changed)


def test_tracking_can_be_switched_off(tmp_path, synth_clip, tiny_checkpoint):
    run = _segmenter(tiny_checkpoint, track=False, max_frames=5).run(str(synth_clip), tmp_path / "run")
    assert all(r.instances.track_ids is None for r in run)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "counts" not in summary and summary["config"]["track"] is False
    for line in (tmp_path / "run" / "frames.jsonl").read_text().splitlines():
        assert all(o["id"] is None for o in json.loads(line)["instances"])


def test_lines_and_zones_count_the_true_objects_of_a_clip(tmp_path, synth_clip, tiny_checkpoint):
    # Feed the pipeline the clip's ground truth as its detections: the counts are then checkable.
    truth = {r["frame"]: record_to_instances(r) for r in read_records(synth_clip.with_name("clip.gt.jsonl"))}
    zone_spec = "0,0,160,0,160,180,0,180:left"
    segmenter = _segmenter(tiny_checkpoint, lines=["160,0,160,180:middle"], zones=[zone_spec], video=True)
    segmenter.predictor.postprocess = lambda raws, frames: [truth[f.index].select(slice(None)) for f in frames]
    list(segmenter.run(str(synth_clip), tmp_path / "run"))

    records = list(read_records(tmp_path / "run" / "frames.jsonl"))
    left = parse_zones([zone_spec])[0].mask(180, 320)
    names = ("__background__", "circle", "rectangle", "triangle")
    for record in records:
        gt = truth[record["frame"]]
        inside = Counter(names[c] for c, m in zip(gt.class_ids, gt.masks) if (m & left).sum() >= 0.5 * m.sum())
        assert record["counts"]["zones"]["left"] == dict(inside), record["frame"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for direction in ("in", "out"):
        events = Counter(e["label"] for r in records for e in r["events"] if e.get("direction") == direction)
        assert summary["counts"]["lines"]["middle"][direction] == dict(events)
    assert records[-1]["counts"]["lines"] == summary["counts"]["lines"]
    entered = Counter(e["label"] for r in records for e in r["events"] if e["direction"] == "enter")
    assert summary["counts"]["zones"]["left"]["enter"] == dict(entered) and sum(entered.values()) > 0


def test_the_configured_tracker_thresholds_are_the_ones_used(tmp_path, synth_clip, tiny_checkpoint):
    # Ground truth as the detections: every object is a track; count_hits decides which count.
    truth = {r["frame"]: record_to_instances(r) for r in read_records(synth_clip.with_name("clip.gt.jsonl"))}
    uniques = {}
    for count_hits in (1, len(truth) + 1):
        segmenter = _segmenter(tiny_checkpoint, video=False, tracker={"count_hits": count_hits})
        segmenter.predictor.postprocess = lambda raws, frames: [truth[f.index].select(slice(None)) for f in frames]
        list(segmenter.run(str(synth_clip), tmp_path / str(count_hits)))
        summary = json.loads((tmp_path / str(count_hits) / "summary.json").read_text())
        assert summary["config"]["tracker"]["count_hits"] == count_hits
        uniques[count_hits] = sum(summary["counts"]["unique"].values())
    assert uniques[1] > 0 and uniques[len(truth) + 1] == 0  # no track is seen in more frames than the clip has


def test_trails_follow_each_visible_track_for_the_configured_length(tmp_path, synth_clip, tiny_checkpoint):
    truth = {r["frame"]: record_to_instances(r) for r in read_records(synth_clip.with_name("clip.gt.jsonl"))}
    segmenter = _segmenter(tiny_checkpoint, trail=5, max_frames=20)
    segmenter.predictor.postprocess = lambda raws, frames: [truth[f.index].select(slice(None)) for f in frames]
    results = list(segmenter.run(str(synth_clip)))
    last = results[-1]
    assert last.trails and all(len(points) <= 5 for points in last.trails.values())
    ids = [i for i in last.instances.track_ids.tolist() if i >= 0]
    assert sorted(last.trails) == sorted(ids)  # only tracks in view
    for track_id, centroid in zip(last.instances.track_ids.tolist(), last.instances.centroids):
        if track_id >= 0:
            assert last.trails[track_id][-1] == pytest.approx(tuple(centroid))
    assert all(r.trails is None for r in _segmenter(tiny_checkpoint, trail=0, max_frames=3).run(str(synth_clip)))


@pytest.mark.parametrize("remove", ["directory", "jsonl"])
def test_a_removed_output_stops_the_run_with_one_clear_error(tmp_path, tiny_checkpoint, remove):
    out = tmp_path / "run"
    run = Segmenter(build_config(model=str(tiny_checkpoint))).run(SyntheticSource(None, 160, 120, seed=1), out)
    started = None
    with pytest.raises(OutputError, match="removed during the run") as caught:
        for result in run:
            if result.frame.index == 10:
                shutil.rmtree(out) if remove == "directory" else (out / "frames.jsonl").unlink()
                started = time.monotonic()
    assert time.monotonic() - started < 10  # a never-ending source, stopped within seconds
    assert str(out) in str(caught.value) and run.summary.to_dict()["complete"] is False
    assert (remove == "jsonl") == (out / "summary.json").exists()  # written where there is still a directory
