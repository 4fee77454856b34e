import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


def _full_frame_paste(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reference: each mask sampled by ``grid_sample`` at every frame pixel's centre, the M cells laid
    exactly on the float box (normalised coordinates -1..1 are the box's edges), zeros outside."""
    centres_x, centres_y = torch.arange(width) + 0.5, torch.arange(height) + 0.5
    pasted = []
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist()):
        gx = (centres_x - x0) / max(x1 - x0, 1e-3) * 2 - 1
        gy = (centres_y - y0) / max(y1 - y0, 1e-3) * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]
        pasted.append(F.grid_sample(mask[None, None], grid, align_corners=False, padding_mode="zeros")[0, 0])
    return torch.stack(pasted)


@pytest.mark.parametrize("seed", range(4))
def test_pasting_into_box_crops_matches_a_full_frame_paste(seed):
    generator = torch.Generator().manual_seed(seed)
    height, width, count = 90, 160, 24
    boxes = _boxes(generator, count, height, width)
    masks = torch.rand(count, 28, 28, generator=generator)
    reference = _full_frame_paste(masks, boxes, height, width)
    crops, crop_boxes = paste_crops(masks, boxes, height, width)
    assert crop_boxes.dtype == torch.int64 and crops.shape[0] == count
    for full, crop, (x0, y0, x1, y1) in zip(reference, crops, crop_boxes.tolist()):
        assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        ours = torch.zeros(height, width)
        ours[y0:y1, x0:x1] = crop[:y1 - y0, :x1 - x0]
        assert torch.allclose(ours, full, atol=1e-4)  # nothing the reference pastes lies outside the crop box


def test_a_full_mask_covers_exactly_its_box_pixels():
    # A box on whole pixels: inside reads the mask (1), the pixels beyond it only the fading edge.
    crops, crop_boxes = paste_crops(torch.ones(1, 28, 28), torch.tensor([[10.0, 20.0, 24.0, 27.0]]), 60, 80)
    x0, y0, x1, y1 = crop_boxes[0].tolist()
    full = torch.zeros(60, 80)
    full[y0:y1, x0:x1] = crops[0, :y1 - y0, :x1 - x0]
    assert torch.equal((full > 0.5).nonzero().amin(0), torch.tensor([20, 10]))
    assert torch.equal((full > 0.5).nonzero().amax(0), torch.tensor([26, 23]))


def test_crops_are_as_large_as_the_largest_box_not_the_frame():
    boxes = torch.tensor([[10.0, 10.0, 30.0, 20.0], [100.0, 50.0, 110.0, 90.0]])
    crops, crop_boxes = paste_crops(torch.rand(2, 28, 28), boxes, 1080, 1920)
    spans = (crop_boxes[:, 2:] - crop_boxes[:, :2]).numpy()
    assert crops.shape == (2, *np.flip(spans.max(axis=0)))
    assert crops.numel() < 2 * 50 * 50


def test_nothing_to_paste():
    crops, crop_boxes = paste_crops(torch.zeros(0, 28, 28), torch.zeros(0, 4), 10, 20)
    assert crops.shape[0] == 0 and crop_boxes.shape == (0, 4)
