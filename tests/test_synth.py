import json

import numpy as np
import pytest

from streamseg import sinks
from streamseg.errors import InputError
from streamseg.formats import read_records, record_to_instances
from streamseg.sources import open_source
from streamseg.synth import CLASS_NAMES, MAX_SIZE, MIN_VISIBLE_AREA, SyntheticSource, World, random_scene, write_clip


def _frames(seed, n=5, **kw):
    return [f for _, f in zip(range(n), World(seed=seed, **kw))]


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = _frames(3, width=160, height=96), _frames(3, width=160, height=96), _frames(4, width=160, height=96)
    for (ia, ga), (ib, gb) in zip(a, b):
        assert np.array_equal(ia, ib)
        assert np.array_equal(ga.masks, gb.masks) and np.array_equal(ga.track_ids, gb.track_ids)
    assert not np.array_equal(a[0][0], c[0][0])


def test_ground_truth_is_the_visible_part_without_overlap():
    for image, gt in _frames(11, n=30, width=320, height=180, objects=10):
        assert gt.masks.shape[1:] == image.shape[:2]
        # Visible parts never overlap: each pixel belongs to at most one object.
        assert gt.masks.sum(axis=0).max() <= 1
        assert (gt.areas >= MIN_VISIBLE_AREA).all()
        assert set(gt.class_ids.tolist()) <= {1, 2, 3}
        for box, mask in zip(gt.boxes, gt.masks):
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_ids_are_stable_and_objects_come_and_go():
    frames = _frames(5, n=300, width=200, height=120, objects=5)
    seen_in = {}
    for index, (_, gt) in enumerate(frames):
        for tid in gt.track_ids.tolist():
            seen_in.setdefault(tid, []).append(index)
    assert len(seen_in) > 5  # objects left and new ones entered
    assert len(set(sum(([len(v)] for v in seen_in.values()), []))) > 1
    # An id's life is one stretch of frames, with at most short gaps (occlusion), never reused later.
    for tid, indices in seen_in.items():
        assert max(np.diff(indices), default=1) < 100, tid


def test_objects_move_smoothly():
    (_, g0), (_, g1) = _frames(2, n=2, width=320, height=180, objects=6)
    common = set(g0.track_ids.tolist()) & set(g1.track_ids.tolist())
    assert common
    for tid in common:
        b0 = g0.boxes[g0.track_ids.tolist().index(tid)]
        b1 = g1.boxes[g1.track_ids.tolist().index(tid)]
        centre_shift = np.abs((b0[:2] + b0[2:]) / 2 - (b1[:2] + b1[2:]) / 2).max()
        assert centre_shift < MAX_SIZE / 4  # occlusion can move a visible box's centre, motion alone little


def test_random_scene_is_seeded_and_labelled():
    image_a, gt_a = random_scene(np.random.default_rng(9), 120, 200)
    image_b, gt_b = random_scene(np.random.default_rng(9), 120, 200)
    assert image_a.shape == (120, 200, 3) and image_a.dtype == np.uint8
    assert np.array_equal(image_a, image_b) and np.array_equal(gt_a.masks, gt_b.masks)
    assert CLASS_NAMES[0] == "__background__" and len(CLASS_NAMES) == 4


def test_write_clip_writes_video_and_matching_gt(tmp_path):
    path = tmp_path / "new" / "clip.mp4"  # folders are made as needed
    gt_path = write_clip(path, frames=12, width=160, height=96, seed=1, objects=3, fps=30)
    assert gt_path == tmp_path / "new" / "clip.gt.jsonl"
    records = list(read_records(gt_path))
    assert [r["frame"] for r in records] == list(range(12))
    assert records[3]["time"] == round(3 / 30, 6)
    source = open_source(str(path))
    frames = list(source)
    source.close()
    assert len(frames) == 12
    assert abs(frames[11].time - 11 / 30) < 1e-3
    world_gt = _frames(1, n=12, width=160, height=96, objects=3)
    for record, (_, gt) in zip(records, world_gt):
        assert np.array_equal(record_to_instances(record).masks, gt.masks)


def test_clips_are_encoded_without_the_overlays_speed_settings(tmp_path, monkeypatch):
    # The overlay's fast colour conversion moved the mask AP of a re-made model card clip by 0.02: clips keep
    # FFmpeg's conversion and x264's own threads, so accuracy figures measured on them stay comparable.
    def refuse(image):
        raise AssertionError("synth used the overlay's colour conversion")

    monkeypatch.setattr(sinks, "rgb_to_i420", refuse)
    monkeypatch.setattr(sinks, "few_cpus", lambda: True)
    encoder_options = []
    add_stream = sinks.VideoWriter._add_stream

    def recording(self, *args):
        stream = add_stream(self, *args)
        encoder_options.append(dict(stream.codec_context.options))
        return stream

    monkeypatch.setattr(sinks.VideoWriter, "_add_stream", recording)
    write_clip(tmp_path / "clip.mp4", frames=3, width=64, height=48, seed=1, objects=2, fps=30)
    assert len(encoder_options) == 1 and not set(encoder_options[0]) & {"threads", *sinks.FAST_ENCODER_OPTIONS}
    assert len(list(read_records(tmp_path / "clip.gt.jsonl"))) == 3


def test_faint_parts_are_kept_apart_from_the_truth_and_written_as_ignore(tmp_path):
    # Parts under the visibility floor are in the picture but not the truth; the GT file lists them as "ignore".
    scenes = [scene for _, scene in zip(range(60), World(seed=1000, objects=8).scenes())]
    faint = [scene.faint for scene in scenes if len(scene.faint)]
    assert faint, "a busy minute of this world has slivers under the floor"
    for scene in scenes:
        assert ((scene.faint.areas > 0) & (scene.faint.areas < MIN_VISIBLE_AREA)).all()
        assert not set(scene.faint.track_ids.tolist()) & set(scene.truth.track_ids.tolist())
        assert not (scene.faint.masks.any(axis=0) & scene.truth.masks.any(axis=0)).any()  # visible parts: disjoint
    records = list(read_records(write_clip(tmp_path / "clip.mp4", frames=60, seed=1000, objects=8)))
    for record, scene in zip(records, scenes):
        ignore = record.get("ignore", [])
        assert [o["id"] for o in ignore] == scene.faint.track_ids.tolist()
        assert [o["id"] for o in record["instances"]] == scene.truth.track_ids.tolist()


def _centroids_by_id(frames):
    """track id -> [(frame index, cx, cy)] over the visible frames."""
    seen = {}
    for index, (_, gt) in enumerate(frames):
        for track_id, mask in zip(gt.track_ids.tolist(), gt.masks):
            ys, xs = np.nonzero(mask)
            seen.setdefault(track_id, []).append((index, xs.mean(), ys.mean()))
    return seen


def test_occlusion_hides_objects_and_they_come_back_with_their_id():
    frames = _frames(5, n=120, scenario="occlusion")
    pillar = max(frames[0][1].track_ids.tolist())  # painted last, so spawned last at the start
    assert all(pillar in gt.track_ids for _, gt in frames)
    gaps = [b[0] - a[0] for path in _centroids_by_id(frames).values() for a, b in zip(path, path[1:])]
    assert max(gaps) >= 10  # someone vanished behind the pillar for at least ten frames and reappeared


def test_enter_exit_moves_everyone_rightwards_and_crossing_shares_lanes():
    for path in _centroids_by_id(_frames(6, n=40, scenario="enter-exit")).values():
        xs = [x for _, x, _ in path]
        assert len(xs) < 5 or xs[-1] > xs[0]
    lanes = {round(y / 360, 1) for path in _centroids_by_id(_frames(6, n=10, scenario="crossing")).values()
             for _, _, y in path}
    assert lanes <= {0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}


def test_crowd_keeps_everyone_in_the_frame():
    frames = _frames(7, n=200, width=320, height=180, objects=12, scenario="crowd")
    assert max(max(gt.track_ids) for _, gt in frames) <= 12  # nobody left, so nobody new was spawned


def test_clip_summary_holds_the_true_counts(tmp_path):
    gt_path = write_clip(tmp_path / "c.mp4", frames=90, width=320, height=180, seed=8, scenario="enter-exit")
    summary = json.loads((tmp_path / "c.gt.summary.json").read_text())
    truth = {}
    for record in read_records(gt_path):
        for o in record["instances"]:
            truth.setdefault(o["label"], set()).add(o["id"])
    assert summary["counts"]["unique"] == {label: len(ids) for label, ids in sorted(truth.items())}
    assert summary["line"] == "160,0,160,180:centre" and set(summary["counts"]["lines"]["centre"]) == {"in", "out"}
    assert summary["counts"]["lines"]["centre"]["in"] == {}  # everyone moves left to right: only "out"


def test_unknown_scenario_is_an_input_error():
    with pytest.raises(InputError, match="unknown scenario"):
        World(scenario="stampede")


def test_objects_that_leave_are_replaced_by_ones_that_come_in_of_every_size():
    world = World(width=320, height=180, objects=4, seed=3)
    frames = [f for _, f in zip(range(300), world)]
    visible = _centroids_by_id(frames)
    newcomers = [track_id for track_id, path in visible.items() if track_id > 4 and len(path) >= 10]
    assert len(newcomers) >= 3, {k: len(v) for k, v in visible.items()}
    sizes = {s.track_id: s.size for s in world.shapes}
    # Entering shapes start beyond an edge: they must get in whatever their size, not only the largest.
    assert world.next_id < 40  # not thousands of shapes replaced before they could arrive
    assert min(sizes.values()) < 60


def test_synthetic_source_is_the_world_as_a_pipeline_source():
    source = SyntheticSource(frames=5, width=160, height=96, seed=4)
    frames = list(source)
    world = _frames(4, n=5, width=160, height=96)
    assert [f.index for f in frames] == list(range(5)) and source.info.frame_count == 5
    assert all(np.array_equal(f.image, image) for f, (image, _) in zip(frames, world))
    assert np.array_equal(source.truth.track_ids, world[-1][1].track_ids)
    assert frames[3].time == pytest.approx(3 / 30) and source.info.to_dict()["time_base"] == "1/30"
