"""The forward pass in torch, on the model's device: the only runtime on CUDA, the fallback on CPU.

``forward`` returns as soon as the work is queued; on CUDA each calling thread has its own stream,
and ``RawDetections.ready`` says when the device is done.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import numpy as np
import torch

from ..instances import Frame
from .base import RawDetections, Runtime
from .graph import DetectionGraph


class _CudaLane:
    """One worker's share of the GPU: its own stream and a reusable pinned host buffer.

    Frames are copied host→pinned (CPU memcpy), then pinned→device with ``non_blocking`` on the
    lane's stream, so the copy overlaps the other lane's kernels.
    """

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)
        self.pinned: torch.Tensor | None = None
        self.copied: torch.cuda.Event | None = None

    def upload(self, images: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
        shape = (len(images), *images[0].shape)
        if self.pinned is None or self.pinned.shape != shape:
            self.pinned = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        elif self.copied is not None:
            self.copied.synchronize()  # the previous batch's copy must finish before the buffer is reused
        for slot, image in zip(self.pinned.numpy(), images):
            slot[...] = image
        batch = self.pinned.to(device, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record(self.stream)
        return list(batch.permute(0, 3, 1, 2).float().div_(255))


class TorchRuntime(Runtime):
    """Eager torch; on CUDA under fp16 autocast, on one stream per calling thread."""

    def __init__(self, graph: DetectionGraph, device: torch.device):
        self.graph = graph
        self.device = device
        self.cuda = device.type == "cuda"
        self._lanes = threading.local()

    def describe(self) -> dict:
        return {"runtime": "torch", "precision": "fp16" if self.cuda else "fp32"}

    def _lane(self) -> _CudaLane:
        lane = getattr(self._lanes, "lane", None)
        if lane is None:
            lane = self._lanes.lane = _CudaLane(self.device)
        return lane

    def _upload(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        if self.cuda and all(i.shape == images[0].shape for i in images):
            return self._lane().upload(images, self.device)
        return [torch.from_numpy(i).to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(255)
                for i in images]

    @torch.inference_mode()
    def forward(self, frames: Sequence[Frame]) -> list[RawDetections]:
        stream = torch.cuda.stream(self._lane().stream) if self.cuda else contextlib.nullcontext()
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.cuda else contextlib.nullcontext()
        with stream, autocast:
            raws = [RawDetections(*found) for found in self.graph(self._upload([f.image for f in frames]))]
            if self.cuda:
                done = torch.cuda.Event()
                done.record()
                for raw in raws:
                    raw.ready = done
        return raws
