"""Per-frame steps: a feature of one's own plugs into a run without touching Run."""

import numpy as np

from streamseg.config import SegmentConfig
from streamseg.instances import Frame, FrameNotes, Instances
from streamseg.models import load_model
from streamseg.pipeline import Segmenter
from streamseg.steps import standard_steps
from streamseg.track import TrackerConfig


class DropSmall:
    """An example step: instances whose masks cover fewer than ``min_area`` pixels are left out."""

    stage = "postprocess"

    def __init__(self, min_area: int):
        self.min_area = min_area
        self.seen = 0

    def __call__(self, found: Instances, frame: Frame, notes: FrameNotes) -> Instances:
        self.seen += 1
        return found.select(found.areas >= self.min_area)


def test_a_step_of_ones_own_sees_every_inferred_frame_before_tracking(synth_clip, tiny_checkpoint):
    config = SegmentConfig(model=str(tiny_checkpoint), device="cpu", score_threshold=0.05, max_frames=12, stride=2)
    segmenter = Segmenter(config, load_model(str(tiny_checkpoint), device="cpu"))
    everything = [r.instances for r in segmenter.run(str(synth_clip)) if r.inferred]
    threshold = int(np.median(np.concatenate([i.areas for i in everything])))
    step = DropSmall(threshold)
    kept = [r.instances for r in segmenter.run(str(synth_clip), steps=[step]) if r.inferred]
    assert step.seen == len(kept) == 6
    assert all((i.areas >= threshold).all() for i in kept)
    assert sum(map(len, kept)) < sum(map(len, everything))
    assert all(i.track_ids is not None for i in kept)  # tracking ran after the step


def test_the_standard_steps_follow_the_settings():
    names = ("__background__", "circle")
    assert standard_steps(False, TrackerConfig(), [], [], 0.5, 30, True, 5.0, names).steps == []
    plain = standard_steps(True, TrackerConfig(), [], [], 0.5, 30, False, 5.0, names)
    assert [type(s).__name__ for s in plain.steps] == ["FreshStartAfterOutage", "Tracking"] and plain.counter is None
    full = standard_steps(True, TrackerConfig(), ["0,0,10,10"], [], 0.5, 30, True, 5.0, names)
    assert [type(s).__name__ for s in full.steps] == ["FreshStartAfterOutage", "Tracking", "Trails", "Counting"]
