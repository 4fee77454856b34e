"""The synthetic world: moving circles, rectangles and triangles over textured backgrounds.

Everything is drawn from one seeded ``numpy.random.Generator``, so a seed gives the same pictures
and the same ground truth on any machine. Ground truth is the *visible* part of every object after
the objects in front of it are painted, with an id that stays with the object for its whole life.

The same renderer (:mod:`streamseg.shapes`) serves three users: ``streamseg synth`` (a clip and its GT
file), training (:func:`random_scene`, independent scenes with no motion) and the tracking tests (moving
worlds).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from .count import LineZoneCounter, parse_lines
from .errors import InputError
from .formats import SummaryCounts, instances_to_record
from .instances import Frame, Instances
from .shapes import (  # noqa: F401 - the painting's names, also read from here
    CLASS_NAMES,
    MAX_SIZE,
    MIN_VISIBLE_AREA,
    Scene,
    Shape,
    background,
    paint,
    random_scene,
    random_shape,
)
from .sinks import JsonlWriter, VideoWriter, write_json_atomic
from .sources import FrameSource, SourceInfo

# The hard cases for a tracker, each a way of moving ``objects`` shapes (see World).
SCENARIOS = {
    "random": "shapes drift in any direction, spin, overlap, leave, and new ones enter",
    "crossing": "shapes travel left and right along three shared lanes, passing in front of each other",
    "occlusion": "shapes pass behind a pillar in the middle that hides them completely for a while",
    "crowd": "shapes bounce around inside the frame, overlapping all the time (use 12 or more)",
    "enter-exit": "shapes enter on the left and leave on the right, crossing the centre line once",
}


class World:
    """A moving scene of ``objects`` shapes, moving as ``scenario`` (one of :data:`SCENARIOS`) says.

    Iterating yields ``(image, gt)`` per frame at ``fps``; ``gt.track_ids`` are the true identities,
    kept through occlusion (a hidden object is absent from GT and comes back with its id).
    """

    def __init__(self, width: int = 640, height: int = 360, objects: int = 6, seed: int = 0, fps: float = 30.0,
                 scenario: str = "random"):
        if scenario not in SCENARIOS:
            raise InputError(f"unknown scenario '{scenario}' (known: {', '.join(SCENARIOS)})")
        self.width, self.height, self.fps, self.scenario = width, height, fps, scenario
        self.rng = np.random.default_rng(seed)
        self.backdrop = background(self.rng, height, width)
        self.next_id = 1
        self.shapes = [self._spawn(inside=True) for _ in range(objects)]
        if scenario == "occlusion":
            self.shapes.append(self._pillar())  # last: painted in front of everything

    def _pillar(self) -> Shape:
        pillar = random_shape(self.rng, self.next_id, self.width / 2, self.height / 2, 0.0)
        self.next_id += 1
        pillar.class_id, pillar.size, pillar.aspect, pillar.angle, pillar.spin = 2, self.height * 0.7, 0.5, 90.0, 0.0
        pillar.texture = "solid"
        return pillar

    def _spawn(self, inside: bool) -> Shape:
        if self.scenario in ("crossing", "occlusion", "enter-exit"):
            return self._spawn_on_lane(inside)
        if self.scenario == "crowd":
            shape = self._spawn_anywhere(inside=True)
            shape.size = min(shape.size, 70.0)  # room to move without filling the frame
            return shape
        return self._spawn_anywhere(inside)

    def _spawn_on_lane(self, inside: bool) -> Shape:
        """A shape moving horizontally, from the edge it enters by (or anywhere on its path at the start)."""
        rng, height = self.rng, self.height
        direction = 1 if self.scenario == "enter-exit" else int(rng.choice([-1, 1]))
        if self.scenario == "crossing":
            y = float(rng.choice([0.3, 0.5, 0.7])) * height
        elif self.scenario == "occlusion":
            y = float(rng.uniform(0.38, 0.62)) * height  # within the pillar's height, so it hides them
        else:
            y = float(rng.uniform(0.15, 0.85)) * height
        size = float(rng.uniform(24, 44 if self.scenario == "occlusion" else 80))
        x = float(rng.uniform(0, self.width)) if inside else (-size / 2 if direction > 0 else self.width + size / 2)
        shape = random_shape(rng, self.next_id, x, y, 0.0)
        self.next_id += 1
        shape.size, shape.vx, shape.vy = size, direction * float(rng.uniform(1.5, 4.0)), 0.0
        return shape

    def _spawn_anywhere(self, inside: bool) -> Shape:
        rng = self.rng
        speed = float(rng.uniform(0.5, 4.0))
        if inside:
            x, y = float(rng.uniform(0, self.width)), float(rng.uniform(0, self.height))
        else:
            # Enter from a random edge, just outside, heading across the frame.
            edge = int(rng.integers(4))
            x = [-MAX_SIZE / 2, self.width + MAX_SIZE / 2, float(rng.uniform(0, self.width)), float(rng.uniform(0, self.width))][edge]
            y = [float(rng.uniform(0, self.height)), float(rng.uniform(0, self.height)), -MAX_SIZE / 2, self.height + MAX_SIZE / 2][edge]
        shape = random_shape(rng, self.next_id, x, y, speed)
        if not inside:
            target = np.array([rng.uniform(0.2, 0.8) * self.width, rng.uniform(0.2, 0.8) * self.height])
            heading = target - np.array([x, y])
            shape.vx, shape.vy = (heading / np.linalg.norm(heading) * speed).tolist()
        self.next_id += 1
        return shape

    def __iter__(self) -> Iterator[tuple[np.ndarray, Instances]]:
        """(picture, ground truth) of each frame."""
        for scene in self.scenes():
            yield scene.image, scene.truth

    def scenes(self) -> Iterator[Scene]:
        """Each frame as a :class:`~streamseg.shapes.Scene`: with the faint parts the truth leaves out."""
        index = 0
        while True:
            yield paint(self.backdrop, self.shapes, index, index / self.fps)
            for shape in self.shapes:
                shape.step()
                if self.scenario == "crowd":  # bounce off the borders: nobody leaves
                    if not 0 <= shape.x <= self.width:
                        shape.vx = -shape.vx
                    if not 0 <= shape.y <= self.height:
                        shape.vy = -shape.vy
            self.shapes = [s if not s.gone(self.height, self.width) else self._spawn(inside=False) for s in self.shapes]
            index += 1


class SyntheticSource(FrameSource):
    """A :class:`World` as a pipeline source, frames straight from the painter with no codec between:
    ``streamseg.segment(SyntheticSource(frames=20_000), ...)`` runs a long stream with nothing on disk.
    ``frames=None`` never ends. ``truth`` holds the last frame's ground truth."""

    def __init__(self, frames: int | None = 300, width: int = 640, height: int = 360, seed: int = 0, objects: int = 6,
                 fps: float = 30.0, scenario: str = "random"):
        self.world = World(width, height, objects, seed, fps, scenario)
        self.frames, self.decode_errors, self.truth = frames, 0, None
        rate = Fraction(fps).limit_denominator(1001)
        self.info = SourceInfo(path=f"synth:{scenario}:{seed}", container="synthetic", codec="rawvideo", width=width,
                               height=height, fps=float(rate), frame_count=frames,
                               duration=None if frames is None else frames / float(rate), time_base=1 / rate,
                               live=frames is None)

    def __iter__(self) -> Iterator[Frame]:
        for index, (image, gt) in enumerate(self.world):
            if self.frames is not None and index >= self.frames:
                return
            self.truth = gt
            yield Frame(index, gt.time, image, pts=index, time_base=self.info.time_base)

    # stop(), report() and close() are FrameSource's: nothing to stop or report, nothing open (frames are painted on demand)


def write_clip(
    path: str | Path, frames: int, width: int = 640, height: int = 360, seed: int = 0, objects: int = 6,
    fps: float = 30.0, scenario: str = "random",
) -> Path:
    """Render ``frames`` of a moving world to an H.264 ``path`` and its GT beside it (``clip.gt.jsonl``).

    ``clip.gt.summary.json`` gets the true counts: distinct objects per class, and crossings of the
    vertical centre line (``centre_line``) counted by the same rule ``--line`` uses, on the true ids.
    """
    path = Path(path)
    gt_path = path.with_name(path.stem + ".gt.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    world = World(width, height, objects, seed, float(rate), scenario)
    line = centre_line(width, height)
    counter = LineZoneCounter(parse_lines([line]), [], CLASS_NAMES)
    unique: dict[str, set] = {}
    with VideoWriter(path, width, height, 1 / rate, float(rate), fast=False) as video, JsonlWriter(gt_path) as jsonl:
        for index, scene in zip(range(frames), world.scenes()):
            gt = scene.truth
            video.write(scene.image, index, gt.time)
            jsonl.write(ground_truth_record(scene))
            counter.update(gt)
            for track_id, class_id in zip(gt.track_ids.tolist(), gt.class_ids.tolist()):
                unique.setdefault(CLASS_NAMES[class_id], set()).add(track_id)
    counts = SummaryCounts({label: len(ids) for label, ids in sorted(unique.items())}, counter.totals()).to_dict()
    summary = {"scenario": scenario, "seed": seed, "frames": frames, "objects": objects, "line": line, "counts": counts}
    write_json_atomic(path.with_name(path.stem + ".gt.summary.json"), summary)
    return gt_path


def ground_truth_record(scene: Scene) -> dict:
    """A frame's ground-truth record: the truth as ``instances``, and its faint parts, if any, as ``ignore``
    (docs/format.md): ``streamseg eval`` neither rewards nor penalises a detection of one."""
    record = instances_to_record(scene.truth, CLASS_NAMES)
    if len(scene.faint):
        record["ignore"] = instances_to_record(scene.faint, CLASS_NAMES)["instances"]
    return record


def centre_line(width: int, height: int) -> str:
    """The counting line of a synthetic clip's GT summary, as a ``--line`` spec: top to bottom through the middle."""
    return f"{width // 2},0,{width // 2},{height}:centre"
