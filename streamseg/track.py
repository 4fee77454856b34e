"""Mask-aware multi-object tracking: ids that survive crossings and occlusion.

Association follows ByteTrack's two stages: confident detections are matched first, to every
live track; the leftover weak detections then only rescue tracks that were just seen, which keeps
a partly hidden object's track alive without letting noise start new ones. What we add is the
mask: a track's last mask, shifted by the motion its Kalman filter predicts, is compared with each
new mask. Two boxes that overlap while their objects cross still have masks that do not, so ids
do not swap. Lost tracks are kept for ``lost_seconds`` of stream time (not frames, so ``--stride``
and dropped frames do not change it) and are re-found by predicted position after an occlusion; an
object cut from one side as it went out of sight is predicted at its full size and at the speed of
its still-moving edge. Motion is predicted from the stream time between frames, so a variable frame
rate, a stall or a burst of frames moves each track as far as the time says.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import InputError
from .geometry import box_iou_matrix, overlap, to_cxcywh, to_xyxy
from .instances import Instances
from .kalman import KalmanBox

_NO_MATCH = 1e6
_RATE_WINDOW = 15  # frames over which the time step (the typical frame interval) is averaged
_MIN_STEP = 1 / 60  # seconds: a shorter mean gap is a burst (or retimed repeats), not a frame rate


@dataclass
class TrackerConfig:
    # Defaults chosen 2026-12-01 for the shipped model's detections on 20 tuning clips (seed bases 9191
    # to 9999) and checked on the tracking benchmark's; docs/benchmarks.md has what each moved.
    high_score: float = 0.6  # detections at or above: first stage, and may start tracks
    new_track_score: float = 0.8  # a track starts only from a detection this sure
    min_similarity: float = 0.1  # first stage: mask_weight * mask IoU + (1 - mask_weight) * box IoU
    mask_weight: float = 0.6
    low_min_iou: float = 0.4  # second stage (weak detections): box IoU with the predicted box
    confirm_hits: int = 3  # frames a new track must be seen in (the first included) before it gets an id
    count_hits: int = 8  # frames a track must be seen in to count as an object (flickers are not objects)
    lost_seconds: float = 3.0  # how long an unseen track waits to be re-found
    reacquire_distance: float = 1.0  # a lost track is re-found within this many of its box sizes
    other_class_weight: float = 0.6  # similarity factor for a detection of another class than the track's

    def validate(self) -> TrackerConfig:
        for name in ("high_score", "new_track_score", "min_similarity", "mask_weight", "low_min_iou",
                     "other_class_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"tracker.{name} must be between 0 and 1, got {getattr(self, name)}")
        for name in ("confirm_hits", "count_hits"):
            if getattr(self, name) < 1:
                raise InputError(f"tracker.{name} must be at least 1 frame, got {getattr(self, name)}")
        for name in ("lost_seconds", "reacquire_distance"):
            if not getattr(self, name) > 0:
                raise InputError(f"tracker.{name} must be positive, got {getattr(self, name)}")
        return self


class TrackState(Enum):
    TENTATIVE = "tentative"  # seen, not yet in confirm_hits frames: no id, dropped at its first miss
    CONFIRMED = "confirmed"  # has an id and was seen in the latest frame
    LOST = "lost"  # has an id, unseen lately: coasting, waiting lost_seconds to be re-found


@dataclass
class Track:
    id: int  # assigned when confirmed; 0 while tentative
    class_id: int
    kalman: KalmanBox
    mask: np.ndarray  # the last mask, as the crop of its box
    mask_box: np.ndarray  # the crop's box in the frame: x0, y0, x1, y1
    mask_center: np.ndarray  # where the Kalman box centre was when the mask was seen
    last_time: float
    full_size: np.ndarray  # (w, h): the largest box lately, a maximum that fades over lost_seconds
    hits: int = 1
    score: float = 0.0
    state: TrackState = TrackState.TENTATIVE
    votes: dict[int, float] = field(default_factory=dict)  # class id -> summed detection scores
    mask_area: int = field(init=False)

    def __post_init__(self) -> None:
        self.mask_area = int(np.count_nonzero(self.mask))

    def vote(self, class_id: int, score: float) -> None:
        """The track's class is the one its detections gave most confidence to, so one flicker does not relabel it."""
        self.votes[class_id] = self.votes.get(class_id, 0.0) + score
        self.class_id = max(self.votes, key=self.votes.get)

    @property
    def confirmed(self) -> bool:
        return self.state is not TrackState.TENTATIVE

    @property
    def lost(self) -> bool:
        return self.state is TrackState.LOST


Scorer = Callable[[list[Track], np.ndarray], np.ndarray]  # (tracks, detection indices) -> similarity matrix


class Tracker:
    """Give each detection of each frame a track id; feed frames in order with ``update``."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.next_id = 1
        self.frame_interval: float | None = None  # one "step": the mean of recent_gaps, at least _MIN_STEP
        self.recent_gaps: deque[float] = deque(maxlen=_RATE_WINDOW)
        self.last_time: float | None = None
        self.counted_ids: dict[int, int] = {}  # track id -> class id, every track seen in count_hits frames

    def update(self, found: Instances) -> Instances:
        """``found`` with ``track_ids`` filled (-1 for detections without a confirmed track)."""
        config, now = self.config, found.time
        steps = self._steps(now)
        KalmanBox.predict_all([track.kalman for track in self.tracks], steps)
        ids = np.full(len(found), -1, np.int64)
        high = np.flatnonzero(found.scores >= config.high_score)
        low = np.flatnonzero(found.scores < config.high_score)

        classes, weight = found.class_ids, config.other_class_weight
        by_mask, free_tracks, free_high = _match(self.tracks, high, classes, self._similarity(found), config.min_similarity, weight)
        by_box, _, _ = _match([t for t in free_tracks if not t.lost], low, classes, _box_overlap(found), config.low_min_iou,
                            weight)
        refound, _, free_high = _match([t for t in free_tracks if t.lost], free_high, classes, self._nearness(found), 0.0,
                                     weight)
        matched = set()
        class_ids = found.class_ids.copy()
        matched_pairs = by_mask + by_box + refound
        KalmanBox.update_all([track.kalman for track, _ in matched_pairs],
                             found.boxes[[index for _, index in matched_pairs]].reshape(-1, 4))
        for track, index in matched_pairs:
            self._absorb(track, found, index, now)
            matched.add(id(track))
            if track.confirmed:
                ids[index], class_ids[index] = track.id, track.class_id

        survivors = []
        for track in self.tracks:
            if id(track) in matched:
                survivors.append(track)
            elif track.confirmed and now - track.last_time <= config.lost_seconds:
                if not track.lost:
                    track.kalman.coast(track.full_size)
                track.state = TrackState.LOST
                survivors.append(track)
        # An unconfirmed track that misses a frame was noise; a confirmed one waits to be re-found.
        first_frame = not self.tracks and self.next_id == 1
        for index in free_high:
            if found.scores[index] >= config.new_track_score:
                track = self._start(found, index, now)
                if first_frame or self.config.confirm_hits <= 1:  # from the start: not in doubt
                    self._confirm(track)
                    ids[index] = track.id
                survivors.append(track)
        self.tracks = survivors
        result = found.select(np.arange(len(found)))
        result.track_ids, result.class_ids = ids, class_ids
        return result

    def _similarity(self, found: Instances) -> Scorer:
        """First stage: mask_weight x IoU of each track's motion-shifted last mask with each new mask, plus
        the rest x IoU of the predicted and new boxes.

        Masks are compared only where their crops meet, and only where the best IoU their sizes and the
        crops' overlap allow could lift the pair over ``min_similarity``: a crowd has many neighbours
        whose crops touch, few that can match.
        """
        mask_weight, threshold, areas = self.config.mask_weight, self.config.min_similarity, found.areas

        def score(tracks: list[Track], candidates: np.ndarray) -> np.ndarray:
            states = np.array([t.kalman.x[:4] for t in tracks])
            similarity = (1 - mask_weight) * box_iou_matrix(to_xyxy(states), found.boxes[candidates])
            # Each last mask's crop, moved by the motion predicted since it was seen.
            moved = np.round(states[:, :2] - np.array([t.mask_center for t in tracks])).astype(np.int64)
            shifted = np.array([t.mask_box for t in tracks]) + np.tile(moved, 2)
            crop_boxes = found.crop_boxes[candidates]
            track_areas, new_areas = np.array([t.mask_area for t in tracks]), areas[candidates]
            widths = np.minimum(shifted[:, None, 2], crop_boxes[None, :, 2]) - np.maximum(shifted[:, None, 0], crop_boxes[None, :, 0])
            heights = np.minimum(shifted[:, None, 3], crop_boxes[None, :, 3]) - np.maximum(shifted[:, None, 1], crop_boxes[None, :, 1])
            most = np.minimum(np.clip(widths, 0, None) * np.clip(heights, 0, None),
                              np.minimum(track_areas[:, None], new_areas[None, :]))  # shared pixels at most
            with np.errstate(divide="ignore", invalid="ignore"):
                best = np.where(most > 0, most / (track_areas[:, None] + new_areas[None, :] - most), 0.0)
            rows, cols = np.nonzero(similarity + mask_weight * best > threshold)
            for row, col in zip(rows.tolist(), cols.tolist()):
                track, index = tracks[row], int(candidates[col])
                inter = overlap(track.mask, shifted[row].tolist(), found.crops[index], crop_boxes[col].tolist())
                union = track.mask_area + int(areas[index]) - inter
                similarity[row, col] += mask_weight * inter / union if union else 0.0
            return similarity

        return score

    def _nearness(self, found: Instances) -> Scorer:
        """Re-finding after occlusion: 1 at a lost track's predicted centre, 0 at reacquire_distance box sizes away."""
        reach = self.config.reacquire_distance

        def score(tracks: list[Track], candidates: np.ndarray) -> np.ndarray:
            predicted = np.array([t.kalman.x[:4] for t in tracks])
            boxes = found.boxes[candidates].astype(np.float64)
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            sizes = np.maximum(np.hypot(predicted[:, 2], predicted[:, 3]), 1.0)
            distances = np.hypot(*(centres[None, :, :] - predicted[:, None, :2]).transpose(2, 0, 1))
            return np.maximum(0.0, 1.0 - distances / (reach * sizes[:, None]))

        return score

    def reset(self) -> None:
        """Forget every track (after a long outage): objects seen next get new ids, never reused ones."""
        self.tracks = []
        self.last_time = None  # the outage is not a frame interval: the step stays the stream's recent one

    def _steps(self, now: float) -> float:
        """Stream time since the last frame, in steps: the mean frame interval over the last _RATE_WINDOW frames.

        Motion is predicted from the time itself (velocities are per step, and rescaled when it changes); the
        step only sets how much the motion may change in that time, as the Kalman noise is per frame. A mean,
        not the shortest or the median gap: it is the window's length over its frame count, which frames
        squeezed together by a burst, or a tick apart after a repeated timestamp, only rearrange. And at least
        _MIN_STEP, as a step of a tick (the first gap of a stream that starts with a burst) would make the
        noise, and the speed learnt from one frame's jump, blow up.
        """
        if self.last_time is None:
            self.last_time = now
            return 0.0
        gap = max(now - self.last_time, 0.0)  # a repeated timestamp (or one going back): no time has passed
        self.last_time = now
        self.recent_gaps.append(gap)
        step = max(sum(self.recent_gaps) / len(self.recent_gaps), _MIN_STEP)
        if self.frame_interval is not None and step != self.frame_interval:
            for track in self.tracks:
                track.kalman.rescale_step(step / self.frame_interval)
        self.frame_interval = step
        return gap / step

    def _start(self, found: Instances, index: int, now: float) -> Track:
        box = found.boxes[index]
        track = Track(0, int(found.class_ids[index]), KalmanBox(box), found.crops[index], found.crop_boxes[index],
                      to_cxcywh(box)[:2], now, to_cxcywh(box)[2:], score=float(found.scores[index]))
        track.vote(track.class_id, track.score)
        return track

    def _confirm(self, track: Track) -> None:
        track.state = TrackState.CONFIRMED
        track.id = self.next_id
        self.next_id += 1

    def _absorb(self, track: Track, found: Instances, index: int, now: float) -> None:
        """Take detection ``index`` into ``track`` (its Kalman filter is already updated with the box)."""
        box = found.boxes[index]
        track.mask, track.mask_box, track.mask_area = found.crops[index], found.crop_boxes[index], int(found.areas[index])
        track.mask_center = track.kalman.x[:2].copy()
        fade = np.exp(-(now - track.last_time) / self.config.lost_seconds)
        track.full_size = np.maximum(to_cxcywh(box)[2:], track.full_size * fade)
        track.last_time, track.score = now, float(found.scores[index])
        if track.lost:
            track.state = TrackState.CONFIRMED
        track.hits += 1
        track.vote(int(found.class_ids[index]), track.score)
        if not track.confirmed and track.hits >= self.config.confirm_hits:
            self._confirm(track)
        if track.confirmed and track.hits >= self.config.count_hits:
            self.counted_ids[track.id] = track.class_id  # updated while it lives: the class may still be outvoted


def _match(tracks: list[Track], candidates: np.ndarray, class_ids: np.ndarray, scorer: Scorer, threshold: float,
           other_class_weight: float):
    """Hungarian matching of ``tracks`` to ``candidates`` (detection indices) on ``scorer``'s similarities.

    A detection of another class than the track's can still match, its similarity scaled by
    ``other_class_weight``: the model's class flickers on small or half-hidden objects, and a
    new track for each flicker would count one object several times.

    Returns the (track, detection index) pairs, the tracks left over and the detections left over.
    """
    if not tracks or not len(candidates):
        return [], list(tracks), [int(i) for i in candidates]
    similarity = scorer(tracks, candidates)
    other_class = np.array([t.class_id for t in tracks])[:, None] != class_ids[candidates][None, :]
    similarity = np.where(other_class, similarity * other_class_weight, similarity)
    cost = np.where(similarity > threshold, 1.0 - similarity, _NO_MATCH)
    rows, cols = linear_sum_assignment(cost)
    kept = [(r, c) for r, c in zip(rows, cols) if cost[r, c] < _NO_MATCH]
    used_rows, used_cols = {r for r, _ in kept}, {c for _, c in kept}
    return ([(tracks[r], int(candidates[c])) for r, c in kept],
            [t for r, t in enumerate(tracks) if r not in used_rows],
            [int(i) for c, i in enumerate(candidates) if c not in used_cols])


def _box_overlap(found: Instances) -> Scorer:
    """Second stage (weak detections): IoU of each track's predicted box with each new box."""
    return lambda tracks, candidates: box_iou_matrix(to_xyxy(np.array([t.kalman.x[:4] for t in tracks])),
                                                     found.boxes[candidates])
