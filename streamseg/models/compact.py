"""The compact Mask R-CNN: torchvision's detection heads on a small BN ResNet with FPN.

Every piece of Mask R-CNN is torchvision's own (RPN, RoIAlign, box and mask heads, transforms);
only the backbone and the head widths are ours, sized for a 2-core CPU.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

# The architecture lives in the checkpoint as these keys. Defaults are what a fresh model starts from (the
# shipped model's recipe too); a fine-tune may change the sizes (`streamseg train --set`, docs/models.md).
DEFAULT_CONFIG = {
    "widths": [24, 48, 96, 160],  # stages at strides 4, 8, 16, 32
    "blocks": [1, 2, 2, 1],
    "fpn_channels": 64,
    "anchor_sizes": [16, 32, 64, 128, 256],
    "box_head": 256,
    "mask_head": [64, 64, 64, 64],
    "min_size": 288,  # shorter side the model sees at inference
    "train_min_sizes": [240, 264, 288, 312, 336],
    "max_size": 1333,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
    "detections_per_img": 50,
    # RoIs sampled per training image: scenes hold a dozen objects, not COCO's hundreds; fewer RoIs
    # mean fewer positives through the mask head, which is most of a training step's cost.
    "box_batch_size_per_image": 128,
}


def _separable(channels: int, relu: bool) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1: a ninth of a full 3x3 conv's work at the same field of view.

    Used where torchvision puts full 3x3 convs on every pyramid level (FPN outputs, RPN head); on the
    stride-4 level those two convs alone cost more than the whole ResNet body.
    """
    layers = [nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False), nn.Conv2d(channels, channels, 1)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class CompactBackbone(nn.Module):
    """Stem to stride 4, four residual stages, FPN on all of them plus a pooled level."""

    def __init__(self, widths: list[int], blocks: list[int], fpn_channels: int):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, widths[0] // 2, 2), _conv_bn(widths[0] // 2, widths[0], 2))
        stages, cin = [], widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(cin, width, stride)] + [BasicBlock(width, width, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork(widths, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.fpn.layer_blocks = nn.ModuleList(_separable(fpn_channels, relu=False) for _ in widths)
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.stem(x)
        features = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[str(i)] = x
        return self.fpn(features)


def build_compact(num_classes: int, config: dict | None = None) -> MaskRCNN:
    """A randomly initialised compact Mask R-CNN for ``num_classes`` (background included)."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    backbone = CompactBackbone(cfg["widths"], cfg["blocks"], cfg["fpn_channels"])
    levels = [str(i) for i in range(len(cfg["widths"]))]
    anchors = AnchorGenerator(tuple((s,) for s in cfg["anchor_sizes"]), ((0.5, 1.0, 2.0),) * len(cfg["anchor_sizes"]))
    channels = cfg["fpn_channels"]
    rpn_head = RPNHead(channels, anchors.num_anchors_per_location()[0])
    rpn_head.conv = _separable(channels, relu=True)
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=tuple(cfg["train_min_sizes"]),
        max_size=cfg["max_size"],
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_test=cfg["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_test=cfg["rpn_post_nms_top_n_test"],
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        box_head=TwoMLPHead(channels * 7 * 7, cfg["box_head"]),
        box_predictor=FastRCNNPredictor(cfg["box_head"], num_classes),
        box_detections_per_img=cfg["detections_per_img"],
        box_batch_size_per_image=cfg["box_batch_size_per_image"],
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2),
        mask_head=MaskRCNNHeads(channels, cfg["mask_head"], 1),
        mask_predictor=MaskRCNNPredictor(cfg["mask_head"][-1], cfg["mask_head"][-1], num_classes),
    )
