"""Runs a model on frames: the forward pass in a runtime, then postprocessing into Instances.

Kept apart from the model (which only maps tensors to tensors) and from the pipeline (which only
moves frames between threads), as detectron2 keeps its predictor apart from its models.

``forward`` is the runtime's work (:mod:`streamseg.runtimes`: torch or OpenVINO) and, on a GPU,
returns as soon as the work is queued; ``postprocess``, the same for every runtime, waits for it and
brings back only what the CPU needs. Between them torchvision's per-detection mask paste is replaced
by one batched paste (:func:`streamseg.ops.paste_crops`) of the detections that survive thresholds
and NMS, into their boxes only: pasting masks that are thrown away afterwards, and the pixels around
each box, were most of its cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import nms

from .errors import InputError
from .instances import Frame, Instances, drop_fragments
from .models.registry import LoadedModel
from .ops import paste_crops
from .runtimes import DetectionGraph, RawDetections, open_runtime

__all__ = ["Predictor", "RawDetections"]


class Predictor:
    """Thresholds, class filter and class-agnostic NMS around a loaded Mask R-CNN.

    Class-agnostic NMS matters for Mask R-CNN's per-class box regression: one object can come out
    once per class (a circle that is also a weak "rectangle"); one physical object, one detection.
    The forward pass runs in a runtime made for this predictor's settings (``self.runtime``): torch on
    any device (fp16 autocast on CUDA), or OpenVINO on the CPU.
    """

    def __init__(
        self,
        model: LoadedModel,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        classes: Sequence[str] | None = None,
        inference_size: int | None = None,
        agnostic_nms: float | None = 0.7,
        fragment_overlap: float = 0.8,
        runtime: str = "auto",
        precision: str = "fp32",
        workers: int = 1,
        cache_dir: Path | None = None,
    ):
        """``runtime``, ``precision``: see :func:`streamseg.runtimes.open_runtime`; ``workers``: how many
        threads will call ``forward`` at once (OpenVINO gives each a stream); ``cache_dir``: where the
        OpenVINO runtime keeps its exported models (default: ``~/.cache/streamseg``)."""
        self.model = model
        self.fragment_overlap = fragment_overlap  # see instances.drop_fragments; 1 turns it off
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.agnostic_nms = agnostic_nms
        self.inference_size = inference_size or model.default_input_size
        self.class_filter = self._class_ids(classes) if classes else None
        self._class_filter_tensor: torch.Tensor | None = None  # on the model's device, made once
        self.graph = DetectionGraph(model.module, self.inference_size, score_threshold)
        self.runtime = open_runtime(self.graph, model, runtime, precision, workers, cache_dir)
        self.cuda = model.device.type == "cuda"

    def _class_ids(self, classes: Sequence[str]) -> np.ndarray:
        names = list(self.model.class_names)
        unknown = [c for c in classes if c not in names]
        if unknown:
            known = ", ".join(n for n in names[1:] if n != "N/A")
            raise InputError(f"unknown class {', '.join(unknown)} for model {self.model.name} (known: {known})")
        return np.array([names.index(c) for c in classes], np.int64)

    def describe(self) -> dict:
        return {
            "input_size": self.inference_size,
            "score_threshold": self.score_threshold,
            "mask_threshold": self.mask_threshold,
            "fragment_overlap": self.fragment_overlap,
            "class_filter": None if self.class_filter is None else [self.model.class_names[i] for i in self.class_filter],
            **self.runtime.describe(),
        }

    def _class_filter_on(self, device: torch.device) -> torch.Tensor:
        if self._class_filter_tensor is None or self._class_filter_tensor.device != device:
            self._class_filter_tensor = torch.from_numpy(self.class_filter).to(device)
        return self._class_filter_tensor

    def forward(self, frames: Sequence[Frame]) -> list[RawDetections]:
        """One forward pass over ``frames`` (a batch) in the runtime; one RawDetections per frame, boxes
        in the frame's pixels.

        On the CPU each frame is first shrunk to the size the model sees while still 8-bit (every
        runtime's graph would turn the whole frame into floats and then resize it: at 1080p, 6 M floats
        made for a 512x288 input, most of the CPU's work per frame); its boxes are scaled back here.
        """
        if not frames:
            return []
        if self.cuda:
            return self.runtime.forward(frames)
        small = [dataclasses.replace(f, image=self._shrink(f.image)) for f in frames]
        raws = self.runtime.forward(small)
        for raw, frame, shrunk in zip(raws, frames, small):
            if shrunk.image is not frame.image:
                (height, width), (h, w) = frame.image.shape[:2], shrunk.image.shape[:2]
                raw.boxes = raw.boxes * raw.boxes.new_tensor([width / w, height / h] * 2)
        return raws

    def prepare(self, height: int, width: int) -> None:
        """Get ready for frames of this size (a file's): a runtime that can (OpenVINO) compiles its graph
        for the size the runtime will be given them at."""
        self.runtime.prepare((*self._given_size(height, width), 3))

    def _given_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the runtime gets a frame at: shrunk to the model's input on the CPU, as is
        on CUDA and when the frame is no larger than that."""
        size = self.graph.input_shape(height, width)
        return size if not self.cuda and size[0] < height else (height, width)

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        """``image`` at the size the runtime gets it: resized while still 8-bit when that is smaller."""
        height, width = image.shape[:2]
        size = self._given_size(height, width)
        if size == (height, width):
            return image
        # Area averaging past 2x, as a camera's sensor would see the smaller picture; bilinear (the
        # graph's own rule) below that, where it does not alias.
        fast = cv2.INTER_AREA if size[0] * 2 < height else cv2.INTER_LINEAR
        return cv2.resize(image, (size[1], size[0]), interpolation=fast)

    @torch.inference_mode()
    def postprocess(self, raw: RawDetections, frame: Frame) -> Instances:
        """Filter, NMS, paste and threshold masks on the device; bring back numpy Instances."""
        if raw.ready is not None:
            torch.cuda.current_stream(self.model.device).wait_event(raw.ready)
            for tensor in (raw.boxes, raw.scores, raw.labels, raw.mask_probs):
                tensor.record_stream(torch.cuda.current_stream(self.model.device))
        keep = raw.scores >= self.score_threshold
        if self.class_filter is not None:
            keep &= torch.isin(raw.labels, self._class_filter_on(raw.labels.device))
        boxes, scores, labels, probs = raw.boxes[keep], raw.scores[keep], raw.labels[keep], raw.mask_probs[keep]
        if self.agnostic_nms is not None and len(scores) > 1:
            kept = nms(boxes, scores, self.agnostic_nms)
            boxes, scores, labels, probs = boxes[kept], scores[kept], labels[kept], probs[kept]
        height, width = frame.image.shape[:2]
        # Two transfers: the small table first (its boxes give the crops' sizes on the host), then the
        # thresholded crops as bytes. Nothing of full-frame size exists on either side.
        table = torch.cat([boxes, scores[:, None], labels[:, None].float()], 1).cpu()
        probs, crop_boxes = paste_crops(probs, table[:, :4], height, width)
        pasted = (probs > self.mask_threshold).cpu().numpy()
        table, crop_boxes = table.numpy(), crop_boxes.numpy()
        found = Instances(
            boxes=np.ascontiguousarray(table[:, :4], np.float32),
            scores=np.ascontiguousarray(table[:, 4], np.float32),
            class_ids=table[:, 5].astype(np.int64),
            crops=[np.ascontiguousarray(crop[:y1 - y0, :x1 - x0]) for crop, (x0, y0, x1, y1) in zip(pasted, crop_boxes.tolist())],
            crop_boxes=crop_boxes,
            height=height,
            width=width,
            frame_index=frame.index,
            time=frame.time,
        )
        return drop_fragments(found, self.fragment_overlap) if self.fragment_overlap < 1 else found

    def predict(self, frames: Sequence[Frame]) -> list[Instances]:
        """Forward and postprocess ``frames`` in the calling thread."""
        return [self.postprocess(raw, frame) for raw, frame in zip(self.forward(frames), frames)]
