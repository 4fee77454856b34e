"""Tensor operations on detections that torchvision does one detection at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _interpolation_matrix(starts: torch.Tensor, lengths: torch.Tensor, size: int, source: int) -> torch.Tensor:
    """(N, size, source) weights of 1-D bilinear resampling (``align_corners=False``) of ``source`` cells
    onto pixels ``starts[n] .. starts[n] + lengths[n] - 1`` of a line of ``size`` pixels; zero elsewhere."""
    pixels = torch.arange(size, device=starts.device, dtype=torch.float32)
    local = pixels[None, :] - starts[:, None].float()  # (N, size)
    lengths = lengths[:, None].float()
    inside = ((local >= 0) & (local < lengths)).float()
    # PyTorch's bilinear rule: source coordinate of pixel centre, clamped at zero.
    coord = ((local + 0.5) * (source / lengths) - 0.5).clamp(min=0)
    low = coord.floor().clamp(max=source - 1)
    frac = coord - low
    high = (low + 1).clamp(max=source - 1)
    weights = torch.zeros(starts.shape[0], size, source, device=starts.device)
    weights.scatter_add_(2, low.long()[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(2, high.long()[..., None], (frac * inside)[..., None])
    return weights


def paste_crops(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                padding: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste (N, M, M) mask probabilities into their boxes, computing only the pixels of each box.

    Returns ``(crops, crop_boxes)``: ``crop_boxes`` (N, 4) int64, on the device of ``boxes`` (boxes
    on the CPU spare a GPU a wait for the crops' sizes), are the frame pixels each paste can touch, ``x0, y0, x1, y1`` with exclusive ends, clipped to the (height, width) frame; ``crops`` is
    (N, Hmax, Wmax) with crop n's pixels in ``crops[n, :y1 - y0, :x1 - x0]`` (the rest is padding).
    Every pixel outside a crop box is 0 in torchvision's full-frame paste, so nothing is lost.

    The same geometry as torchvision's ``paste_masks_in_image`` (mask padded by ``padding`` cells,
    box grown to match and rounded to whole pixels, bilinear resize into the box), computed for all
    masks at once: bilinear resizing is separable, so each paste is ``rows @ mask @ columns.T`` with
    two small interpolation matrices: two batched matrix products instead of a Python loop of
    ``interpolate`` calls, and memory for the boxes' pixels rather than N full frames.
    """
    count = masks.shape[0]
    if count == 0:
        return masks.new_zeros((0, 0, 0)), torch.zeros((0, 4), dtype=torch.int64, device=boxes.device)
    size = masks.shape[-1]
    padded = F.pad(masks.float(), (padding,) * 4)
    scale = (size + 2 * padding) / size
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x, centre_y = (boxes[:, 2] + boxes[:, 0]) * 0.5, (boxes[:, 3] + boxes[:, 1]) * 0.5
    # Truncation toward zero, as torchvision's int64 cast does; the paste covers x0..x1 inclusive.
    x0, x1 = (centre_x - half_w).to(torch.int64), (centre_x + half_w).to(torch.int64)
    y0, y1 = (centre_y - half_h).to(torch.int64), (centre_y + half_h).to(torch.int64)
    crop_boxes = torch.stack([x0.clamp(0, width), y0.clamp(0, height),
                              (x1 + 1).clamp(0, width), (y1 + 1).clamp(0, height)], 1)
    crop_boxes[:, 2:] = torch.maximum(crop_boxes[:, 2:], crop_boxes[:, :2])
    spans = crop_boxes[:, 2:] - crop_boxes[:, :2]
    crop_w, crop_h = (int(v) for v in spans.max(0).values.tolist())  # one host sync, for the shapes
    source, device = size + 2 * padding, masks.device
    # Crop pixel p is frame pixel crop_box start + p: the paste starts (paste start - crop start) into the crop.
    columns = _interpolation_matrix((x0 - crop_boxes[:, 0]).to(device), (x1 - x0 + 1).clamp(min=1).to(device),
                                    crop_w, source)
    rows = _interpolation_matrix((y0 - crop_boxes[:, 1]).to(device), (y1 - y0 + 1).clamp(min=1).to(device),
                                 crop_h, source)
    return rows @ padded @ columns.transpose(1, 2), crop_boxes
