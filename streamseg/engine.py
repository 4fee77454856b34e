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
        mask_threshold: float | None = None,
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
        self.mask_threshold = model.default_mask_threshold if mask_threshold is None else mask_threshold
        self.agnostic_nms = agnostic_nms
        self.inference_size = inference_size or model.default_input_size
        self.class_filter = self._class_ids(classes) if classes else None
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

    def prepare(self, height: int | None = None, width: int | None = None) -> None:
        """Get ready for frames of this size (a file's), or of any size (no size: a live source's, which may
        change): a runtime that can (OpenVINO) compiles its graph for that now, before the first frame."""
        self.runtime.prepare(None if height is None or width is None else (*self._given_size(height, width), 3))

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
    def postprocess(self, raws: Sequence[RawDetections], frames: Sequence[Frame]) -> list[Instances]:
        """Instances of a batch's frames from their forward pass: thresholds, class filter, NMS, masks
        pasted into their boxes and thresholded there.

        A GPU is waited for three times a batch, however many frames it has (each wait idles the host
        until the device catches up): the batch's small table of detections comes back whole, is
        filtered and NMS'd on the host, the kept masks are picked on the device by one index, and the
        thresholded crops of every frame come back as one byte buffer. Nothing of full-frame size exists
        on either side.
        """
        if not raws:
            return []
        device = raws[0].boxes.device
        for raw in raws:
            if raw.ready is not None:
                stream = torch.cuda.current_stream(device)
                stream.wait_event(raw.ready)
                for tensor in (raw.boxes, raw.scores, raw.labels, raw.mask_probs):
                    tensor.record_stream(stream)
        table = torch.cat([torch.cat([r.boxes, r.scores[:, None], r.labels[:, None].float()], 1) for r in raws]).cpu()
        kept = self._kept(table, [len(r.scores) for r in raws])
        probs = torch.cat([r.mask_probs for r in raws])[torch.cat(kept).to(device)]
        pasted, crop_boxes, start = [], [], 0
        for rows, frame in zip(kept, frames):
            height, width = frame.image.shape[:2]
            frame_probs, frame_boxes = paste_crops(probs[start:start + len(rows)], table[rows, :4], height, width)
            pasted.append(frame_probs > self.mask_threshold)
            crop_boxes.append(frame_boxes)
            start += len(rows)
        crops = _crops_on_host(pasted, crop_boxes)
        found = [self._instances(table[rows].numpy(), boxes.numpy(), frame_crops, frame)
                 for rows, boxes, frame_crops, frame in zip(kept, crop_boxes, crops, frames)]
        return [drop_fragments(f, self.fragment_overlap) if self.fragment_overlap < 1 else f for f in found]

    def _kept(self, table: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
        """Per frame, the rows of ``table`` (the batch's detections, frame after frame, on the host)
        that pass the score threshold, the class filter and class-agnostic NMS, best first."""
        kept, start = [], 0
        for count in counts:
            rows = torch.arange(start, start + count)
            keep = table[rows, 4] >= self.score_threshold
            if self.class_filter is not None:
                keep &= torch.from_numpy(np.isin(table[rows, 5].numpy().astype(np.int64), self.class_filter))
            rows = rows[keep]
            if self.agnostic_nms is not None and len(rows) > 1:
                rows = rows[nms(table[rows, :4], table[rows, 4], self.agnostic_nms)]
            kept.append(rows)
            start += count
        return kept

    @staticmethod
    def _instances(table: np.ndarray, crop_boxes: np.ndarray, crops: list[np.ndarray], frame: Frame) -> Instances:
        height, width = frame.image.shape[:2]
        return Instances(
            boxes=np.ascontiguousarray(table[:, :4], np.float32),
            scores=np.ascontiguousarray(table[:, 4], np.float32),
            class_ids=table[:, 5].astype(np.int64),
            crops=crops,
            crop_boxes=crop_boxes,
            height=height,
            width=width,
            frame_index=frame.index,
            time=frame.time,
        )

    def predict(self, frames: Sequence[Frame]) -> list[Instances]:
        """Forward and postprocess ``frames`` in the calling thread."""
        return self.postprocess(self.forward(frames), frames)


def _crops_on_host(pasted: list[torch.Tensor], crop_boxes: list[torch.Tensor]) -> list[list[np.ndarray]]:
    """Each frame's crops (``crop_boxes`` on the host) as numpy, from its padded (N, Hmax, Wmax) masks
    ``pasted``: brought over in one transfer, cut to each box on the host."""
    flat = torch.cat([masks.reshape(-1) for masks in pasted]).cpu().numpy()
    crops, start = [], 0
    for masks, boxes in zip(pasted, crop_boxes):
        padded = flat[start:start + masks.numel()].reshape(masks.shape)
        crops.append([np.ascontiguousarray(crop[:y1 - y0, :x1 - x0]) for crop, (x0, y0, x1, y1) in zip(padded, boxes.tolist())])
        start += masks.numel()
    return crops
