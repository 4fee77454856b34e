"""Per-frame steps: a feature of one's own plugs into a run without touching Run."""

import json
from fractions import Fraction

import numpy as np

import streamseg
from streamseg import FrameSource
from streamseg.config import SegmentConfig
from streamseg.instances import Frame, FrameNotes, Instances
from streamseg.models import load_model
from streamseg.pipeline import Segmenter
from streamseg.sources import SourceInfo
from streamseg.steps import standard_steps
from streamseg.synth import World
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


# The README's example of a source of one's own, as it stands there ("Python API").
class ArraySource(FrameSource):
    """A source: RGB uint8 (H, W, 3) arrays from anywhere, at ``fps``."""

    def __init__(self, images, fps: float = 30.0):
        self.images = images
        height, width = images[0].shape[:2]
        self.info = SourceInfo(path="arrays", container="numpy", codec="rawvideo", width=width, height=height,
                               fps=fps, frame_count=len(images), duration=len(images) / fps,
                               time_base=Fraction(1, round(fps)))

    def __iter__(self):
        for index, image in enumerate(self.images):
            yield Frame(index, index / self.info.fps, image, pts=index, time_base=self.info.time_base)


def test_a_source_and_a_step_of_ones_own_run_through_segment(tmp_path, tiny_checkpoint):
    world = iter(World(width=320, height=180, objects=4, seed=3))
    images = [next(world)[0] for _ in range(8)]
    step = DropSmall(40)
    run = streamseg.segment(ArraySource(images), out=tmp_path / "run", steps=[step], model=str(tiny_checkpoint),
                            device="cpu", score_threshold=0.05, video=False)
    results = list(run)
    assert [r.frame.index for r in results] == list(range(8)) and step.seen == 8
    assert all((r.instances.areas >= 40).all() and r.instances.track_ids is not None for r in results)
    summary = run.summary
    assert summary.complete and summary.source.info.path == "arrays" and summary.source.report is None
    assert summary.run.frames_inferred == 8 and summary.counts is not None
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written == summary.to_dict()
