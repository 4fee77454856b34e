"""Line crossings and zone occupancy on scripted tracked paths."""

import json

import numpy as np
import pytest

from streamseg.count import Line, LineZoneCounter, parse_lines, parse_zones
from streamseg.errors import InputError
from streamseg.instances import Instances

H, W = 100, 200
NAMES = ("__background__", "circle", "rectangle", "triangle")


def square(cx, cy, half=5):
    mask = np.zeros((H, W), bool)
    mask[max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half] = True
    return mask


def tracked(index, objects):
    """``objects``: (track id, class id, mask) triples, already tracked."""
    masks = np.stack([m for _, _, m in objects]) if objects else np.zeros((0, H, W), bool)
    boxes = np.zeros((len(objects), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return Instances.from_masks(boxes, np.ones(len(objects), np.float32), np.array([c for _, c, _ in objects], np.int64),
                     masks, index, index / 30, track_ids=np.array([t for t, _, _ in objects], np.int64))


def run(counter, xs_per_track):
    """Move each track's square along its x positions (y fixed at 50); all events in order."""
    events = []
    for index in range(len(next(iter(xs_per_track.values())))):
        objects = [(tid, 1, square(xs[index], 50)) for tid, xs in xs_per_track.items() if xs[index] is not None]
        _, new = counter.update(tracked(index, objects))
        events += [event.to_dict() for event in new]
    return events


def vertical_line(settle=3):
    # From (100, 0) down to (100, 100): the "in" side, sign > 0, is x < 100.
    return LineZoneCounter(parse_lines(["100,0,100,100:gate"]), [], NAMES, settle_frames=settle)


def test_line_sides_follow_the_documented_sign():
    line = Line("l", (100, 0), (100, 100))
    assert line.side(50, 50) == 1 and line.side(150, 50) == -1
    assert line.side(50, 150) == 0  # beside the line but beyond its end


def test_a_crossing_counts_once_despite_jitter_on_the_line():
    counter = vertical_line()
    # Right to left (negative to positive: "in"), wobbling across the line before settling.
    path = [130, 120, 110, 98, 103, 97, 102, 96, 94, 92, 90, 88, 86, 84]
    events = run(counter, {7: path})
    assert [(e["direction"], e["id"], e["label"]) for e in events] == [("in", 7, "circle")]
    assert counter.totals().to_dict()["lines"]["gate"] == {"in": {"circle": 1}, "out": {}}


def test_each_direction_counts_at_most_once_per_track():
    counter = vertical_line(settle=2)
    there_and_back = [120, 110, 90, 80, 80, 110, 120, 120, 80, 70, 70, 120, 130, 130]
    events = run(counter, {1: there_and_back, 2: list(reversed(there_and_back))})
    totals = counter.totals().to_dict()["lines"]["gate"]
    assert totals == {"in": {"circle": 2}, "out": {"circle": 2}}
    assert sorted((e["id"], e["direction"]) for e in events) == [(1, "in"), (1, "out"), (2, "in"), (2, "out")]


def test_a_short_excursion_over_the_line_is_not_a_crossing():
    counter = vertical_line(settle=3)
    events = run(counter, {3: [110, 105, 95, 96, 104, 110, 115]})
    assert events == [] and counter.totals().to_dict()["lines"]["gate"] == {"in": {}, "out": {}}


def test_untracked_detections_never_cross():
    counter = vertical_line(settle=1)
    events = run(counter, {-1: [120, 80, 60]})
    assert events == []


def test_zone_occupancy_and_enter_exit():
    zone = parse_zones(["0,0,100,0,100,100,0,100:left"])
    counter = LineZoneCounter([], zone, NAMES, min_overlap=0.5)
    # Track 1 walks in from the right and out again; track 2 stays inside throughout.
    path_1 = [150, 120, 104, 98, 80, 60, 80, 98, 104, 130]  # a 10-px square centred at 98 is 80% inside, at 104 20%
    occupancy, events = [], []
    for index, x in enumerate(path_1):
        counts, new = counter.update(tracked(index, [(1, 2, square(x, 50)), (2, 3, square(30, 30))]))
        occupancy.append(counts.to_dict()["zones"]["left"])
        events += [event.to_dict() for event in new]
    assert [o.get("rectangle", 0) for o in occupancy] == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert all(o["triangle"] == 1 for o in occupancy)
    assert [(e["id"], e["direction"]) for e in events] == [(2, "enter"), (1, "enter"), (1, "exit")]
    totals = counter.totals().to_dict()["zones"]["left"]
    assert totals == {"enter": {"rectangle": 1, "triangle": 1}, "exit": {"rectangle": 1},
                      "max_occupancy": {"rectangle": 1, "triangle": 1}}
    json.dumps(totals)  # summary.json takes it as it is


def test_forgetting_ended_tracks_keeps_totals_and_bounds_state():
    zone = parse_zones(["0,0,100,0,100,100,0,100:left"])
    counter = LineZoneCounter(parse_lines(["100,0,100,100:gate"]), zone, NAMES, settle_frames=2)
    # 500 tracks, one after another, each crossing the line and the zone's edge, forgotten when they end.
    for track_id in range(1, 501):
        for step, x in enumerate((130, 120, 80, 70)):
            counter.update(tracked(track_id * 4 + step, [(track_id, 1, square(x, 50))]))
        counter.forget({track_id + 1})  # only the next one is alive
    line, zone_state = counter._lines["gate"], counter._zones["left"]
    assert len(line.settled) + len(line.pending) + len(line.counted) + len(zone_state.inside) == 0
    assert counter.totals().to_dict()["lines"]["gate"] == {"in": {"circle": 500}, "out": {}}
    assert counter.totals().to_dict()["zones"]["left"]["enter"] == {"circle": 500}


def test_a_live_track_keeps_its_state_across_forgetting():
    counter = vertical_line(settle=2)
    run(counter, {3: [130, 120]})
    counter.forget({3})
    assert run(counter, {3: [80, 70]}) == [{"type": "line", "name": "gate", "direction": "in", "id": 3, "label": "circle"}]


@pytest.mark.parametrize(
    "spec, message",
    [("1,2,3", "exactly"), ("a,b,c,d", "numbers"), ("5,5,5,5", "same point")],
)
def test_bad_lines_are_input_errors(spec, message):
    with pytest.raises(InputError, match=message):
        parse_lines([spec])


def test_bad_zones_and_repeated_names_are_input_errors():
    with pytest.raises(InputError, match="three"):
        parse_zones(["0,0,10,10"])
    with pytest.raises(InputError, match="repeated: door"):
        parse_lines(["0,0,1,1:door", "2,2,3,3:door"])
    assert [line.name for line in parse_lines(["0,0,1,1", "2,2,3,3"])] == ["line1", "line2"]
