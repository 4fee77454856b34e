"""The tracker on scripted scenes: crossing, occlusion, noise, and time-based expiry."""

import numpy as np

from streamseg.instances import Instances
from streamseg.track import KalmanBox, Tracker, TrackerConfig

H, W = 120, 200


def disc(cx, cy, r=10):
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def ring(cx, cy, r=14, width=4):
    yy, xx = np.mgrid[:H, :W]
    d = (xx - cx) ** 2 + (yy - cy) ** 2
    return (d <= r * r) & (d >= (r - width) ** 2)


def frame(index, objects, fps=30.0):
    """``objects``: (mask, class_id, score) triples."""
    if not objects:
        return Instances.from_masks(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                         np.zeros((0, H, W), bool), index, index / fps)
    masks = np.stack([m for m, _, _ in objects])
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Instances.from_masks(np.array(boxes, np.float32), np.array([s for _, _, s in objects], np.float32),
                     np.array([c for _, c, _ in objects], np.int64), masks, index, index / fps)


def run(frames, config=None):
    tracker = Tracker(config)
    return tracker, [tracker.update(f).track_ids.tolist() for f in frames]


def test_two_objects_crossing_keep_their_ids():
    # A disc moving right passes over a ring moving left; same class, boxes overlapping for many frames.
    frames = []
    for i in range(40):
        a, b = 20 + 4 * i, 180 - 4 * i
        visible = [(disc(a, 60), 1, 0.9), (ring(b, 62), 1, 0.9)]
        frames.append(frame(i, visible))
    _, ids = run(frames)
    first = ids[0]
    assert len(set(first)) == 2 and -1 not in first
    assert all(frame_ids == first for frame_ids in ids)


def test_an_object_hidden_for_frames_gets_its_id_back():
    frames = []
    for i in range(40):
        x = 20 + 3 * i
        objects = [(disc(x, 60), 1, 0.9)] if not 15 <= i < 25 else []  # hidden for 10 frames (1/3 s)
        frames.append(frame(i, objects))
    tracker, ids = run(frames)
    assert ids[0] == [1] and ids[14] == [1]
    assert ids[25] == [1] and ids[39] == [1]
    assert list(tracker.counted_ids) == [1]


def test_lost_tracks_expire_by_time_not_frames():
    config = TrackerConfig(lost_seconds=0.5)
    frames = [frame(0, [(disc(50, 60), 1, 0.9)]), frame(1, [(disc(52, 60), 1, 0.9)])]
    frames += [frame(i, []) for i in range(2, 40)]  # 38 frames: over a second of nothing
    tracker, _ = run(frames, config)
    assert tracker.tracks == []
    # The same gap in time but with only two frames (a stride of 19) expires the track as well.
    sparse = [frames[0], frames[1], frame(20, []), frame(39, [])]
    tracker, _ = run(sparse, config)
    assert tracker.tracks == []


def test_weak_detections_keep_a_track_but_never_start_one():
    frames = [frame(i, [(disc(30 + 3 * i, 60), 1, 0.9 if i < 5 else 0.3)]) for i in range(15)]
    frames[3] = frame(3, [(disc(39, 60), 1, 0.9), (disc(150, 30), 2, 0.3)])  # a weak stray elsewhere
    tracker, ids = run(frames)
    assert all(frame_ids[0] == 1 for frame_ids in ids)
    assert ids[3][1] == -1 and list(tracker.counted_ids) == [1]


def test_a_new_object_needs_confirmation_and_a_class_flicker_keeps_its_track():
    frames = [frame(0, [(disc(30, 30), 1, 0.9)])]
    frames += [frame(i, [(disc(30, 30), 1, 0.9), (disc(120, 80), 2, 0.9)]) for i in range(1, 4)]
    frames += [frame(4, [(disc(30, 30), 2, 0.9), (disc(120, 80), 2, 0.9)])]  # the model calls object 1 a "2" once
    frames += [frame(i, [(disc(30, 30), 1, 0.9), (disc(120, 80), 2, 0.9)]) for i in range(5, 10)]
    tracker = Tracker(TrackerConfig(confirm_hits=2))
    out = [tracker.update(f) for f in frames]
    ids = [o.track_ids.tolist() for o in out]
    assert ids[0] == [1] and ids[1] == [1, -1] and ids[2] == [1, 2] and ids[3] == [1, 2]
    assert ids[4] == [1, 2] and out[4].class_ids.tolist() == [1, 2]  # same object, reported by its voted class
    assert tracker.counted_ids == {1: 1, 2: 2}  # counted once, as what it mostly was


def test_a_short_lived_track_has_an_id_but_is_not_counted_as_an_object():
    frames = [frame(i, [(disc(30 + i, 30), 1, 0.9)] + ([(disc(150, 90), 3, 0.9)] if 2 <= i < 6 else []))
              for i in range(12)]
    tracker, ids = run(frames)
    assert ids[5] == [1, 2]  # four frames: confirmed, so it carries an id while it lasts
    assert tracker.counted_ids == {1: 1}  # but a four-frame flicker is not an object


def test_a_track_takes_the_class_its_detections_mostly_give():
    frames = [frame(i, [(disc(30 + i, 30), 1 if i < 3 else 3, 0.9)]) for i in range(10)]
    tracker = Tracker()
    classes = [tracker.update(f).class_ids.tolist() for f in frames]
    assert classes[3] == [1] and classes[-1] == [3]
    assert tracker.counted_ids == {1: 3}


def test_a_far_object_of_another_class_is_a_new_track():
    frames = [frame(i, [(disc(30, 30), 1, 0.9)]) for i in range(3)]
    frames += [frame(i, [(disc(150, 90), 2, 0.9)]) for i in range(3, 3 + TrackerConfig().confirm_hits)]
    ids = run(frames)[1]
    assert ids[0] == [1] and ids[-1] == [2]


def test_kalman_filter_learns_a_constant_velocity():
    kalman = KalmanBox(np.array([0, 0, 10, 10.0]))
    for step in range(1, 20):
        kalman.predict(1.0)
        kalman.update(np.array([5 * step, 0, 5 * step + 10, 10.0]))
    kalman.predict(1.0)
    assert abs(kalman.box[0] - 100) < 1.0 and abs(kalman.x[4] - 5) < 0.2


def test_confirm_hits_counts_the_first_sighting():
    # One object throughout; a second appears at frame 3.
    frames = [frame(i, [(disc(30 + i, 40), 1, 0.9)] + ([(disc(150, 80), 2, 0.9)] if i >= 3 else [])) for i in range(6)]
    for hits, first_id_frame in ((1, 3), (2, 4), (3, 5)):
        _, ids = run(frames, TrackerConfig(confirm_hits=hits))
        newcomer = [row[1] if len(row) > 1 else None for row in ids]
        assert [i for i, v in enumerate(newcomer) if v is not None and v >= 0][0] == first_id_frame, (hits, ids)


def test_a_shrinking_object_hidden_for_a_while_gets_its_id_back():
    # A receding disc (radius 18 -> 8) is hidden for 20 frames and comes back a little off its path.
    # Were the unseen box to go on shrinking, it would reach a point before then, and a point is
    # near nothing.
    frames = []
    for i in range(60):
        radius = max(18 - 0.8 * i, 8)
        hidden = 15 <= i < 35
        frames.append(frame(i, [] if hidden else [(disc(30 + 2 * i + (6 if i >= 35 else 0), 60, radius), 1, 0.9)]))
    tracker, ids = run(frames)
    assert ids[14] == [1] and ids[35:] == [[1]] * 25
    assert list(tracker.counted_ids) == [1]


def test_a_lost_track_keeps_its_size():
    kalman = KalmanBox(np.array([0, 0, 40, 40], float))
    for step in range(1, 6):  # shrinking by 4 px a frame on both sides: receding, not cut
        kalman.predict(1)
        kalman.update(np.array([2 * step, 2 * step, 40 - 2 * step, 40 - 2 * step], float))
    centre, width = kalman.x[:2].copy(), kalman.x[2]
    kalman.coast(np.array([40.0, 40.0]))
    for _ in range(30):
        kalman.predict(1)
    assert abs(kalman.x[2] - width) < 1e-6
    assert np.allclose(kalman.x[:2], centre, atol=1.0)


def test_an_object_that_went_behind_a_wall_gets_its_id_back():
    # Going behind the wall, the visible part of the disc narrows, its centre moving at half the disc's
    # speed, until the detector misses it (under 40 % visible); it comes out on the far side.
    wall = np.zeros((H, W), bool)
    wall[:, 70:140] = True
    frames = []
    for i in range(50):
        whole = disc(30 + 3 * i, 60, r=12)
        visible = whole & ~wall
        frames.append(frame(i, [(visible, 1, 0.9)] if visible.sum() > 0.4 * whole.sum() else []))
    tracker, ids = run(frames)
    hidden = [i for i, frame_ids in enumerate(ids) if not frame_ids]
    assert len(hidden) >= 8 and ids[0] == [1]
    assert all(frame_ids == [1] for frame_ids in ids[hidden[-1] + 1:])
    assert list(tracker.counted_ids) == [1]


def test_coasting_an_object_cut_on_one_side_restores_its_size_and_speed():
    kalman = KalmanBox(np.array([0, 0, 30, 30], float))
    for step in range(1, 8):  # moving right 3 px a frame into a wall at x = 40
        kalman.predict(1)
        kalman.update(np.array([3 * step, 0, min(30 + 3 * step, 40), 30], float))
    kalman.coast(np.array([30.0, 30.0]))
    assert abs(kalman.x[2] - 30) < 1e-6 and kalman.x[4] > 2.5  # full width again, the left edge's speed
    assert abs(kalman.box[0] - 21) < 2  # the left edge stays where it was seen
