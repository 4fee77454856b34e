"""Runs a model on frames: preprocessing, the forward pass and postprocessing into Instances.

Kept apart from the model (which only maps tensors to tensors) and from the pipeline (which only
moves frames between threads), as detectron2 keeps its predictor apart from its models.

``forward`` is the device's work and returns as soon as the work is queued; ``postprocess`` waits
for it and brings back only what the CPU needs. Between them torchvision's per-detection mask
paste is replaced by one batched paste (:func:`streamseg.ops.paste_crops`) of the detections that
survive thresholds and NMS, into their boxes only: pasting masks that are thrown away afterwards,
and the pixels around each box, were most of its cost.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.ops import nms

from .errors import InputError
from .instances import Frame, Instances, drop_fragments
from .models.registry import LoadedModel
from .ops import paste_crops


@dataclass
class RawDetections:
    """One frame's detections as the model left them, on its device: boxes in frame pixels,
    ``mask_probs`` the (N, M, M) mask head output. ``ready`` is set when the device is done."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    mask_probs: torch.Tensor
    ready: torch.cuda.Event | None = None


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


class Predictor:
    """Thresholds, class filter and class-agnostic NMS around a loaded Mask R-CNN.

    Class-agnostic NMS matters for Mask R-CNN's per-class box regression: one object can come out
    once per class (a circle that is also a weak "rectangle"); one physical object, one detection.
    On CUDA, forward passes run under fp16 autocast on one stream per calling thread.
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
    ):
        self.model = model
        self.fragment_overlap = fragment_overlap  # see instances.drop_fragments; 1 turns it off
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.agnostic_nms = agnostic_nms
        self.inference_size = inference_size or model.default_input_size
        self.class_filter = self._class_ids(classes) if classes else None
        self._class_filter_tensor: torch.Tensor | None = None  # on the model's device, made once
        self.cuda = model.device.type == "cuda"
        self._lanes = threading.local()
        # The settings live on this predictor's own shallow copies of the two parts that read them, never
        # on the shared model: several predictors (Segmenters, sources) may use one loaded model at once.
        # The copies share every weight. Scores below the threshold never reach the mask head: the
        # cheapest detection is one not made.
        module = model.module
        self.transform = copy.copy(module.transform)
        self.transform.min_size = (self.inference_size,)
        self.transform.max_size = max(module.transform.max_size, round(self.inference_size * 1333 / 800))
        self.roi_heads = copy.copy(module.roi_heads)
        self.roi_heads.score_thresh = score_threshold

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
        }

    def _class_filter_on(self, device: torch.device) -> torch.Tensor:
        if self._class_filter_tensor is None or self._class_filter_tensor.device != device:
            self._class_filter_tensor = torch.from_numpy(self.class_filter).to(device)
        return self._class_filter_tensor

    def _lane(self) -> _CudaLane:
        lane = getattr(self._lanes, "lane", None)
        if lane is None:
            lane = self._lanes.lane = _CudaLane(self.model.device)
        return lane

    def _upload(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        if self.cuda and all(i.shape == images[0].shape for i in images):
            return self._lane().upload(images, self.model.device)
        device = self.model.device
        if not self.cuda:
            images = [self._shrink(i) for i in images]
        return [torch.from_numpy(i).to(device, non_blocking=True).permute(2, 0, 1).float().div_(255) for i in images]

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        """``image`` resized to the model's input size while still 8-bit, as the transform would size it.

        The transform would turn the whole frame into floats and then resize it: at 1080p that is 6 M
        floats made for a 512x288 input, most of the CPU's work per frame. Boxes are scaled back to the
        frame from the size the model saw, so nothing downstream changes.
        """
        height, width = image.shape[:2]
        scale = min(self.transform.min_size[-1] / min(height, width), self.transform.max_size / max(height, width))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        if scale >= 1.0 or size == (width, height):
            return image
        # Area averaging past 2x, as a camera's sensor would see the smaller picture; bilinear (the transform's
        # own rule) below that, where it does not alias.
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR)

    @torch.inference_mode()
    def forward(self, frames: Sequence[Frame]) -> list[RawDetections]:
        """Queue one forward pass over ``frames`` (a batch) on the device; one RawDetections per frame."""
        if not frames:
            return []
        module = self.model.module
        stream = torch.cuda.stream(self._lane().stream) if self.cuda else contextlib.nullcontext()
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.cuda else contextlib.nullcontext()
        with stream, autocast:
            images = self._upload([f.image for f in frames])
            batch, _ = self.transform(images)
            features = module.backbone(batch.tensors)
            proposals, _ = module.rpn(batch, features)
            detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
            raws = []
            for found, resized, frame in zip(detections, batch.image_sizes, frames):
                height, width = frame.image.shape[:2]
                scale = torch.tensor([width / resized[1], height / resized[0]] * 2, device=found["boxes"].device)
                raws.append(RawDetections(found["boxes"].float() * scale, found["scores"].float(), found["labels"],
                                          found["masks"][:, 0]))
            if self.cuda:
                done = torch.cuda.Event()
                done.record()
                for raw in raws:
                    raw.ready = done
        return raws

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
