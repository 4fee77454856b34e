"""What every runtime gives the predictor: one frame's detections as the forward pass left them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ..instances import Frame


@dataclass
class RawDetections:
    """One frame's detections as the model left them, on its device: boxes in frame pixels,
    ``mask_probs`` the (N, M, M) mask head output. ``ready`` is set when the device is done."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    mask_probs: torch.Tensor
    ready: torch.cuda.Event | None = None


class Runtime(Protocol):
    """Runs the forward pass (:class:`~streamseg.runtimes.graph.DetectionGraph`) on frames.

    ``forward`` may be called from several threads at once (the pipeline's inference workers).
    """

    def forward(self, frames: Sequence[Frame]) -> list[RawDetections]: ...

    def prepare(self, shape: tuple[int, ...] | None) -> None:
        """Get ready for frames of this (height, width, 3) shape, or of any shape (None); nothing to do for
        most runtimes."""

    def describe(self) -> dict: ...
