"""Runs a model on frames: preprocessing, the forward pass and postprocessing into Instances.

Kept apart from the model (which only maps tensors to tensors) and from the pipeline (which only
moves frames between threads), as detectron2 keeps its predictor apart from its models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import nms

from .errors import InputError
from .instances import Frame, Instances
from .models.registry import LoadedModel


class Predictor:
    """Thresholds, class filter and class-agnostic NMS around a loaded Mask R-CNN.

    Class-agnostic NMS matters for Mask R-CNN's per-class box regression: one object can come out
    once per class (a circle that is also a weak "rectangle"); one physical object, one detection.
    """

    def __init__(
        self,
        model: LoadedModel,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        classes: Sequence[str] | None = None,
        inference_size: int | None = None,
        agnostic_nms: float | None = 0.7,
    ):
        self.model = model
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.agnostic_nms = agnostic_nms
        self.inference_size = inference_size or model.default_input_size
        self.class_filter = self._class_ids(classes) if classes else None
        module = model.module
        # Scores below the threshold never reach the mask head: the cheapest detection is one not made.
        module.roi_heads.score_thresh = score_threshold
        module.transform.min_size = (self.inference_size,)
        module.transform.max_size = max(module.transform.max_size, round(self.inference_size * 1333 / 800))

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
            "class_filter": None if self.class_filter is None else [self.model.class_names[i] for i in self.class_filter],
        }

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).to(self.model.device).permute(2, 0, 1).float().div_(255)

    @torch.inference_mode()
    def predict(self, frames: Sequence[Frame]) -> list[Instances]:
        """One forward pass over ``frames`` (a batch), one Instances per frame."""
        if not frames:
            return []
        outputs = self.model.module([self.to_tensor(f.image) for f in frames])
        return [self.postprocess(out, frame) for out, frame in zip(outputs, frames)]

    def postprocess(self, output: dict[str, torch.Tensor], frame: Frame) -> Instances:
        keep = output["scores"] >= self.score_threshold
        if self.class_filter is not None:
            keep &= torch.isin(output["labels"], torch.from_numpy(self.class_filter).to(output["labels"].device))
        boxes, scores, labels = output["boxes"][keep], output["scores"][keep], output["labels"][keep]
        masks = output["masks"][keep]
        if self.agnostic_nms is not None and len(scores) > 1:
            kept = nms(boxes, scores, self.agnostic_nms)
            boxes, scores, labels, masks = boxes[kept], scores[kept], labels[kept], masks[kept]
        return Instances(
            boxes=boxes.float().cpu().numpy(),
            scores=scores.float().cpu().numpy(),
            class_ids=labels.cpu().numpy().astype(np.int64),
            masks=(masks[:, 0] > self.mask_threshold).cpu().numpy(),
            frame_index=frame.index,
            time=frame.time,
        )
