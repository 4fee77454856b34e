import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from streamseg.ops import paste_masks


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.mark.parametrize("seed", range(4))
def test_batched_paste_matches_torchvision_including_the_borders(seed):
    generator = torch.Generator().manual_seed(seed)
    height, width, count = 90, 160, 24
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width + 40.0, height + 40.0]) - 20
    size = torch.rand(count, 2, generator=generator) * 80 + 1
    boxes = torch.cat([corner, corner + size], 1)
    # Detections are clipped to the frame before pasting (torchvision's own paste fails otherwise).
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
    boxes[:4] = torch.tensor([[0, 0, 30, 20], [width - 25, height - 10, width, height],
                              [-10, 5, 15, 40], [0, 0, width, height]], dtype=torch.float32)
    masks = torch.rand(count, 28, 28, generator=generator)
    theirs = paste_masks_in_image(masks[:, None], boxes, (height, width))[:, 0]
    ours = paste_masks(masks, boxes, height, width)
    assert ours.shape == (count, height, width)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert all(_iou(a > 0.5, b > 0.5) >= 0.99 for a, b in zip(ours, theirs))


def test_nothing_to_paste():
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), 10, 20).shape == (0, 10, 20)
