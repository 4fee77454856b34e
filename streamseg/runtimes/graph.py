"""The forward pass as one module, run by torch as it is and exported (ONNX) for other runtimes.

One definition for every runtime: what torch runs eagerly is what the exporter traces, so the two
cannot drift apart. The graph ends where the device's work ends (boxes, scores, labels, the mask
head's (N, M, M) probabilities, boxes already in frame pixels); thresholds, NMS across classes, the
mask paste and fragments stay in :meth:`streamseg.engine.Predictor.postprocess`, shared by all.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.onnx.operators import shape_as_tensor
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from ..instances import Frame

OUTPUTS = ("boxes", "scores", "labels", "mask_probs")
ONNX_OPSET = 17


class DetectionGraph(nn.Module):
    """Normalise and resize, backbone, RPN, RoI heads; one (boxes, scores, labels, mask_probs) per image.

    The settings live on this graph's own shallow copies of the two parts that read them, never on
    the shared model: several predictors (Segmenters, sources) may use one loaded model at once. The
    copies share every weight. Scores below the threshold never reach the mask head: the cheapest
    detection is one not made.
    """

    def __init__(self, model: MaskRCNN, input_size: int, score_threshold: float):
        super().__init__()
        self.transform = copy.copy(model.transform)
        self.transform.min_size = (input_size,)
        self.transform.max_size = max(model.transform.max_size, round(input_size * 1333 / 800))
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = BranchFreeRoIHeads.sharing(model.roi_heads)
        self.roi_heads.score_thresh = score_threshold

    def forward(self, images: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """``images``: (3, H, W) floats in [0, 1], any sizes."""
        resized = [self._resize(self.transform.normalize(image)) for image in images]
        batch = ImageList(self.transform.batch_images(resized, self.transform.size_divisible),
                          [(image.shape[-2], image.shape[-1]) for image in resized])
        features = self.backbone(batch.tensors)
        proposals, _ = self.rpn(batch, features)
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
        outputs = []
        for found, image, small in zip(detections, images, resized):
            # x, y, x, y factors from the resized image back to the frame
            scale = (shape_as_tensor(image)[-2:] / shape_as_tensor(small)[-2:]).flip(0).repeat(2)
            outputs.append((found["boxes"].float() * scale.to(found["boxes"].device), found["scores"].float(),
                            found["labels"], found["masks"][:, 0]))
        return outputs

    def _resize(self, image: Tensor) -> Tensor:
        """``image`` scaled as torchvision scales it (the shorter side to ``min_size``, the longer at most
        ``max_size``), with the new size computed in integers, from sizes held as tensors, so that the
        trace keeps it dynamic and every runtime gets the same pixels. torchvision's own resize, traced,
        computes it in float32 as a reciprocal times a size, and comes out a pixel short for some sizes
        (300x200 at 288: 431x287, where torch gives 432x288), which moves every detection a little."""
        size = shape_as_tensor(image)[-2:]
        short, long = size.min(), size.max()
        min_size, max_size = self.transform.min_size[0], self.transform.max_size
        by_long_side = max_size * short < min_size * long
        new_size = size * torch.where(by_long_side, max_size, min_size) // torch.where(by_long_side, long, short)
        return F.interpolate(image[None], size=[new_size[0], new_size[1]], mode="bilinear", align_corners=False)[0]

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) :meth:`_resize` makes of a ``height`` x ``width`` image, by the same
        integer rule."""
        short, long = min(height, width), max(height, width)
        min_size, max_size = self.transform.min_size[0], self.transform.max_size
        numerator, denominator = (max_size, long) if max_size * short < min_size * long else (min_size, short)
        return height * numerator // denominator, width * numerator // denominator

    def settings(self) -> dict:
        """What a trace of this graph holds as constants besides the weights: the exported graph is
        valid only for these."""
        transform, rpn, heads = self.transform, self.rpn, self.roi_heads
        return {
            "min_size": list(transform.min_size), "max_size": transform.max_size,
            "image_mean": list(transform.image_mean), "image_std": list(transform.image_std),
            "size_divisible": transform.size_divisible,
            "rpn": {"pre_nms_top_n": rpn._pre_nms_top_n["testing"], "post_nms_top_n": rpn._post_nms_top_n["testing"],
                    "nms_thresh": rpn.nms_thresh, "score_thresh": rpn.score_thresh, "min_size": rpn.min_size},
            "score_threshold": heads.score_thresh, "nms_threshold": heads.nms_thresh,
            "detections_per_image": heads.detections_per_img,
        }


class BranchFreeRoIHeads(RoIHeads):
    """torchvision's RoI heads, but for the class-wise NMS, which here needs no branch for no boxes.

    torchvision's ``batched_nms`` returns early when there are no boxes; traced, that is an ONNX
    ``If`` whose empty branch OpenVINO (2026.4) turns into one detection of uninitialised memory: a
    frame without objects came out with one. Here each class's boxes are moved apart by the same
    offsets as torchvision's (class times the largest coordinate plus one), with 0 counted among the
    coordinates so that no boxes need no branch; boxes are clipped to the image, so whenever there
    are boxes the offsets are torchvision's. (The RPN's NMS keeps its branch: it always has boxes.)
    """

    @classmethod
    def sharing(cls, heads: RoIHeads) -> BranchFreeRoIHeads:
        """A shallow copy of ``heads``, every weight shared, with this class's NMS."""
        clone = copy.copy(heads)
        clone.__class__ = cls
        return clone

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        # torchvision 0.29's RoIHeads.postprocess_detections, with _class_wise_nms for box_ops.batched_nms
        num_classes = class_logits.shape[-1]
        boxes_per_image = [boxes_in_image.shape[0] for boxes_in_image in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image, 0)
        found = ([], [], [])
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=class_logits.device).view(1, -1).expand_as(scores)
            # every class prediction but the background's is a separate instance
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            inds = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = _class_wise_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            for kept, part in zip(found, (boxes[keep], scores[keep], labels[keep])):
                kept.append(part)
        return found


def _class_wise_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    return box_ops.nms(boxes + (classes.to(boxes) * (largest + 1))[:, None], scores, iou_threshold)


class FrameGraph(nn.Module):
    """The exported graph's contract: one decoded frame, (H, W, 3) uint8 RGB of any size, in; the four
    outputs of :class:`DetectionGraph` for it out. Deployments need to know nothing of normalising or
    resizing."""

    def __init__(self, graph: DetectionGraph):
        super().__init__()
        self.graph = graph

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.graph([image.permute(2, 0, 1).float().div(255)])[0]


def sample_frames() -> list[Frame]:
    """Two synthetic frames of different shapes, 640x360 and 270x480 (shrunk and enlarged at the usual
    input sizes): enough to trace the graph and to check an export against torch, anywhere, without a
    video file."""
    from ..synth import random_scene  # synth imports cv2 and the scene painters: only when exporting

    rng = np.random.default_rng(15)
    sizes = [(360, 640), (480, 270)]
    return [Frame(i, 0.0, random_scene(rng, height, width)[0]) for i, (height, width) in enumerate(sizes)]


def export_onnx(graph: DetectionGraph, path: Path) -> Path:
    """Write ``graph`` as ONNX with a dynamic frame height and width (the TorchScript exporter: it takes
    torchvision's Mask R-CNN as it is)."""
    frame = sample_frames()[0]
    dynamic = {"image": {0: "height", 1: "width"}, **{name: {0: "detections"} for name in OUTPUTS}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer warns about every Python number it freezes; torchvision's detection code is written
        # for it (sizes stay traced), and an export is checked against torch instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(FrameGraph(graph).eval(), (torch.from_numpy(frame.image),), str(path),
                          opset_version=ONNX_OPSET, dynamo=False, input_names=["image"], output_names=list(OUTPUTS),
                          dynamic_axes=dynamic)
    return path
