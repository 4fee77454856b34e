"""The tracker on irregular time: a variable frame rate, jittered arrival, repeated timestamps.

Seven objects of three classes cross the frame on four lanes, two lanes with a pair passing each
other. Each case feeds the same objects with other timestamps; every object must keep one id from
the first frame to the last, and the unique count per class must stay exact.
"""

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from streamseg.instances import Instances
from streamseg.sources import open_source
from streamseg.track import Tracker

from .helpers_video import write_restamped

H, W = 240, 320
ROWS, COLS = np.mgrid[:H, :W]
FRAMES = 60

DISC, SQUARE, RING = 1, 2, 3  # class ids
# (class, lane y, start x, end x): pairs on a lane pass each other a little above and below.
OBJECTS = [(DISC, 40, 30, 290), (RING, 52, 290, 30), (SQUARE, 110, 30, 290), (DISC, 122, 290, 30),
           (RING, 180, 30, 290), (SQUARE, 192, 290, 30), (DISC, 224, 60, 260)]
TRUE_COUNTS = {DISC: 3, SQUARE: 2, RING: 2}


def shape_mask(class_id, cx, cy, r=12):
    if class_id == SQUARE:
        return (abs(COLS - cx) <= r) & (abs(ROWS - cy) <= r)
    inside = (COLS - cx) ** 2 + (ROWS - cy) ** 2 <= r * r
    return inside & ((COLS - cx) ** 2 + (ROWS - cy) ** 2 >= (r - 5) ** 2) if class_id == RING else inside


def detections(masks, class_ids, index, time):
    boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(m) for m in masks)]
    return Instances.from_masks(np.array(boxes, np.float32), np.full(len(masks), 0.9, np.float32),
                     np.array(class_ids, np.int64), np.stack(masks), index, time)


def scene(index, progress, time):
    """Every object at ``progress`` (0..1) along its path, stamped ``time``."""
    masks = [shape_mask(c, x0 + (x1 - x0) * progress, y) for c, y, x0, x1 in OBJECTS]
    return detections(masks, [c for c, *_ in OBJECTS], index, time)


def track(content_times, stamps):
    """Track the objects as seen at ``content_times`` (seconds) but stamped ``stamps``."""
    tracker = Tracker()
    progress = np.asarray(content_times) / content_times[-1]
    ids = [tracker.update(scene(i, p, t)).track_ids.tolist() for i, (p, t) in enumerate(zip(progress, stamps))]
    return tracker, ids


def assert_one_id_each(tracker, ids):
    assert -1 not in ids[0] and len(set(ids[0])) == len(OBJECTS)
    assert all(row == ids[0] for row in ids)
    assert Counter(tracker.counted_ids.values()) == TRUE_COUNTS


def test_a_variable_rate_clip_keeps_every_id():
    # 25 fps with a frame 1 ms after the one before it here and there, and 200 ms stalls (five frames' worth);
    # the objects move with the time stamped.
    gaps = np.resize([0.040, 0.040, 0.001, 0.040, 0.040, 0.200, 0.040], FRAMES - 1)
    times = np.r_[0.0, np.cumsum(gaps)]
    assert_one_id_each(*track(times, times))


def test_live_arrival_with_jitter_and_a_burst_keeps_every_id():
    # Captured every 100 ms, stamped on arrival: gaps of 70-130 ms, and a frame 2 ms after the one before it,
    # at the start (a stream often starts with a burst) and later on.
    rng = np.random.default_rng(7)
    gaps = rng.uniform(0.070, 0.130, FRAMES - 1)
    gaps[[0, 30]] = 0.002
    assert_one_id_each(*track(np.arange(FRAMES) * 0.1, np.r_[0.0, np.cumsum(gaps)]))


@pytest.mark.parametrize("tick", [1 / 90000, 1 / 1000, 0.0], ids=["retimed-90kHz", "retimed-ms", "repeated"])
def test_repeated_timestamps_keep_every_id(tick):
    # 25 fps, but some frames carry the timestamp of the frame before, the second frame among them: the retimer
    # moves them one tick later (``tick`` 0: as the container has them). The pictures are still a frame apart.
    nominal = np.arange(FRAMES) * 0.04
    stamps = nominal.copy()
    for index in (1, 5, 6, 20, 33, 50):
        stamps[index] = stamps[index - 1] + tick
    tracker, ids = track(nominal, stamps)
    assert_one_id_each(tracker, ids)
    assert all(np.isfinite(t.kalman.x).all() and np.isfinite(t.kalman.P).all() for t in tracker.tracks)


def test_a_file_with_repeated_timestamps_keeps_every_id(tmp_path):
    # The same through a real source: Matroska keeps repeated timestamps, and the source moves each repeat one
    # millisecond on. Only the times come from the file; the objects are one frame apart from frame to frame.
    stamps = np.arange(FRAMES)
    for index in (1, 5, 6, 20, 33, 50):
        stamps[index] = stamps[index - 1]
    with open_source(write_restamped(tmp_path / "repeats.mkv", "matroska", stamps.tolist(), Fraction(1, 25))) as source:
        times = [frame.time for frame in source]
    assert len(times) == FRAMES and min(np.diff(times)) == pytest.approx(0.001)
    assert_one_id_each(*track(np.arange(FRAMES) * 0.04, times))


def test_speed_is_kept_in_real_time_when_the_frame_rate_changes():
    # A variable-rate stream that goes from 15 to 30 fps: the object's speed, 100 px/s, must not double or halve.
    times = np.r_[np.arange(20) / 15, 19 / 15 + np.arange(1, 31) / 30]
    tracker = Tracker()
    for index, time in enumerate(times):
        tracker.update(detections([shape_mask(DISC, 30 + 100 * time, 100)], [DISC], index, float(time)))
        if index >= 15:  # learnt by then
            speed = tracker.tracks[0].kalman.x[4] / tracker.frame_interval
            assert speed == pytest.approx(100, rel=0.05), (index, time)
