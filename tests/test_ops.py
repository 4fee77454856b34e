import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from streamseg.ops import paste_crops


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def _boxes(generator, count, height, width):
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width + 40.0, height + 40.0]) - 20
    size = torch.rand(count, 2, generator=generator) * 80 + 1
    boxes = torch.cat([corner, corner + size], 1)
    # Detections are clipped to the frame before pasting (torchvision's own paste fails otherwise).
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
    boxes[:4] = torch.tensor([[0, 0, 30, 20], [width - 25, height - 10, width, height],
                              [-10, 5, 15, 40], [0, 0, width, height]], dtype=torch.float32)
    return boxes


@pytest.mark.parametrize("seed", range(4))
def test_pasting_into_box_crops_matches_torchvision_full_frame_paste(seed):
    generator = torch.Generator().manual_seed(seed)
    height, width, count = 90, 160, 24
    boxes = _boxes(generator, count, height, width)
    masks = torch.rand(count, 28, 28, generator=generator)
    theirs = paste_masks_in_image(masks[:, None], boxes, (height, width))[:, 0]
    crops, crop_boxes = paste_crops(masks, boxes, height, width)
    assert crop_boxes.dtype == torch.int64 and crops.shape[0] == count
    for full, crop, (x0, y0, x1, y1) in zip(theirs, crops, crop_boxes.tolist()):
        assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        ours = torch.zeros(height, width)
        ours[y0:y1, x0:x1] = crop[:y1 - y0, :x1 - x0]
        assert torch.allclose(ours, full, atol=1e-4)  # nothing torchvision pastes lies outside the crop box
        assert _iou(ours > 0.5, full > 0.5) >= 0.99


def test_crops_are_as_large_as_the_largest_box_not_the_frame():
    boxes = torch.tensor([[10.0, 10.0, 30.0, 20.0], [100.0, 50.0, 110.0, 90.0]])
    crops, crop_boxes = paste_crops(torch.rand(2, 28, 28), boxes, 1080, 1920)
    spans = (crop_boxes[:, 2:] - crop_boxes[:, :2]).numpy()
    assert crops.shape == (2, *np.flip(spans.max(axis=0)))
    assert crops.numel() < 2 * 50 * 50


def test_nothing_to_paste():
    crops, crop_boxes = paste_crops(torch.zeros(0, 28, 28), torch.zeros(0, 4), 10, 20)
    assert crops.shape[0] == 0 and crop_boxes.shape == (0, 4)
