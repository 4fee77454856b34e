"""What moves between a run's stages: batches of frames on their way, and one result per frame at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .count import Tally
from .formats import FrameRecord
from .instances import Frame, Instances


@dataclass
class FrameResult:
    """A decoded frame and the instances that belong to it.

    With ``stride`` > 1, frames between inferences carry the latest inferred instances
    (``inferred`` is False and ``instances.frame_index`` names the frame they came from).
    """

    frame: Frame
    instances: Instances
    inferred: bool
    record: FrameRecord | None = None  # the JSONL line, for inferred frames
    overlay: np.ndarray | None = None  # the rendered frame, when the run writes a video
    tally: Tally | None = None  # line and zone counters as they stand at this frame (for the overlay)
    trails: dict[int, list] | None = None  # recent mask centroids of the tracks in view (for the overlay)
    decoded_at: float = 0.0  # perf_counter() when the frame left the decoder


@dataclass
class Batch:
    """Frames decoded together, on their way through the stages; each stage fills in its part."""

    frames: list[Frame]
    infer: list[bool]  # which frames go through the model (``stride``)
    decoded_at: float
    found: list[Instances] = field(default_factory=list)  # what the model found in each inferred frame
    masks: list[list[dict] | None] = field(default_factory=list)  # their masks as RLE, when a record is wanted
    results: list[FrameResult] = field(default_factory=list)
