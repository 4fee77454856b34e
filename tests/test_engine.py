import numpy as np
import pytest
import torch
import torchvision

from streamseg.engine import Predictor, RawDetections
from streamseg.formats import instances_to_record
from streamseg.instances import Frame, Instances, drop_fragments
from streamseg.models import load_model
from streamseg.ops import paste_crops


def _exact_full_frame_paste(masks: torch.Tensor, boxes: torch.Tensor, image_shape) -> torch.Tensor:
    """(N, 1, H, W) full-frame masks pasted by streamseg's rule, in place of torchvision's paste."""
    crops, crop_boxes = paste_crops(masks[:, 0], boxes, *image_shape)
    full = torch.zeros(len(masks), 1, *image_shape)
    for index, (x0, y0, x1, y1) in enumerate(crop_boxes.tolist()):
        full[index, 0, y0:y1, x0:x1] = crops[index, :y1 - y0, :x1 - x0]
    return full


@pytest.mark.parametrize("shape", [(96, 160), (120, 90)])
def test_predictor_gives_what_torchvision_maskrcnn_gives(tiny_checkpoint, shape, monkeypatch):
    model = load_model(str(tiny_checkpoint), device="cpu")
    # The one intended difference: masks are pasted on the exact box (streamseg.ops), not torchvision's way.
    monkeypatch.setattr(torchvision.models.detection.transform, "paste_masks_in_image", _exact_full_frame_paste)
    predictor = Predictor(model, score_threshold=0.0, agnostic_nms=None, fragment_overlap=1.0)
    image = np.random.default_rng(1).integers(0, 255, (*shape, 3), dtype=np.uint8)
    ours = predictor.predict([Frame(3, 0.1, image)])[0]
    model.module.roi_heads.score_thresh = 0.0  # the predictor's threshold lives on the predictor, not the model
    with torch.inference_mode():
        theirs = model.module([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    assert len(ours) == len(theirs["scores"]) > 0
    assert np.allclose(ours.boxes, theirs["boxes"].numpy(), atol=1e-3)
    assert np.allclose(ours.scores, theirs["scores"].numpy(), atol=1e-5)
    assert np.array_equal(ours.class_ids, theirs["labels"].numpy())
    reference = theirs["masks"][:, 0].numpy() > 0.5
    for a, b in zip(ours.masks, reference):
        assert (a & b).sum() >= 0.99 * (a | b).sum()
    assert ours.masks.shape == (len(ours), *shape) and ours.frame_index == 3


def test_predictors_sharing_one_model_keep_their_own_settings(tiny_checkpoint):
    model = load_model(str(tiny_checkpoint), device="cpu")
    before = (model.module.roi_heads.score_thresh, model.module.transform.min_size)
    loose = Predictor(model, score_threshold=0.0, inference_size=160, fragment_overlap=1.0)
    strict = Predictor(model, score_threshold=0.9, inference_size=96, fragment_overlap=1.0)
    image = np.random.default_rng(4).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    alone = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=0.0, inference_size=160,
                      fragment_overlap=1.0).predict([Frame(0, 0.0, image)])[0]
    shared = loose.predict([Frame(0, 0.0, image)])[0]  # after strict was made: its settings must not leak in
    assert len(shared) == len(alone) > 0 and np.allclose(shared.scores, alone.scores)
    assert all(strict.predict([Frame(0, 0.0, image)])[0].scores >= 0.9)
    assert (model.module.roi_heads.score_thresh, model.module.transform.min_size) == before


def test_a_batch_gives_what_single_frames_give(tiny_checkpoint):
    predictor = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=0.0)
    rng = np.random.default_rng(2)
    frames = [Frame(i, i / 30, rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)) for i in range(3)]
    batched = predictor.predict(frames)
    for frame, together in zip(frames, batched):
        alone = predictor.predict([frame])[0]
        assert np.allclose(alone.boxes, together.boxes, atol=1e-3) and np.array_equal(alone.class_ids, together.class_ids)


@pytest.mark.parametrize("classes", [None, ["rectangle", "triangle"]])
def test_postprocessing_frames_together_gives_what_each_alone_gives(tiny_checkpoint, classes):
    # One batch's table and crops are cut back into frames by row counts: frames of several sizes (as from
    # several sources), one with nothing detected, must each get exactly their own detections and masks.
    predictor = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=0.05, classes=classes)
    rng = np.random.default_rng(5)
    shapes = [(96, 160, 3), (80, 80, 3), (120, 90, 3), (64, 64, 3)]
    frames = [Frame(i, i / 30, rng.integers(0, 255, shape, dtype=np.uint8)) for i, shape in enumerate(shapes)]
    raws = [predictor.forward([frame])[0] for frame in frames]
    empty = raws[1]
    raws[1] = RawDetections(empty.boxes[:0], empty.scores[:0], empty.labels[:0], empty.mask_probs[:0])
    together = predictor.postprocess(raws, frames)
    counts = [len(found) for found in together]
    assert counts[1] == 0 and sum(counts) > 3 and len([c for c in counts if c]) >= 2
    for raw, frame, found in zip(raws, frames, together):
        alone = predictor.postprocess([raw], [frame])[0]
        assert (found.height, found.width, found.frame_index) == (*frame.image.shape[:2], frame.index)
        assert np.array_equal(found.boxes, alone.boxes) and np.array_equal(found.scores, alone.scores)
        assert np.array_equal(found.class_ids, alone.class_ids) and np.array_equal(found.crop_boxes, alone.crop_boxes)
        assert all(np.array_equal(a, b) for a, b in zip(found.crops, alone.crops))
        if classes:
            assert set(found.class_ids) <= {predictor.model.class_names.index(c) for c in classes}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_predictor_matches_cpu_within_fp16(tiny_checkpoint):
    image = np.random.default_rng(3).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    cpu = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=0.0).predict([Frame(0, 0.0, image)])[0]
    gpu = Predictor(load_model(str(tiny_checkpoint), device="cuda"), score_threshold=0.0).predict([Frame(0, 0.0, image)])[0]
    assert len(gpu) > 0 and gpu.masks.shape == (len(gpu), 96, 160)
    assert abs(gpu.scores.max() - cpu.scores.max()) < 0.05  # fp16 autocast: close, not equal


def test_a_frame_without_detections_gives_empty_instances_and_a_record(tiny_checkpoint):
    predictor = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=1.0)
    empty = predictor.predict([Frame(0, 0.0, np.zeros((96, 160, 3), np.uint8))])[0]
    assert len(empty) == 0 and empty.masks.shape == (0, 96, 160) and empty.areas.shape == (0,)
    record = instances_to_record(empty, predictor.model.class_names)
    assert record["instances"] == [] and (record["width"], record["height"]) == (160, 96)


def rectangles(*specs, height=60, width=80):
    """Instances of axis-aligned rectangles: (x0, y0, x1, y1, class_id, score) each."""
    masks = np.zeros((len(specs), height, width), bool)
    for mask, (x0, y0, x1, y1, _, _) in zip(masks, specs):
        mask[y0:y1, x0:x1] = True
    return Instances.from_masks(np.array([s[:4] for s in specs], np.float32), np.array([s[5] for s in specs], np.float32),
                     np.array([s[4] for s in specs], np.int64), masks)


def test_an_object_reported_whole_and_in_halves_keeps_the_surer_reports():
    # A tall pillar as its two halves (surer) and as a whole (less sure): the whole adds nothing new.
    found = rectangles((30, 0, 50, 30, 2, 0.99), (30, 30, 50, 60, 2, 0.96), (30, 0, 50, 60, 2, 0.80))
    kept = drop_fragments(found, 0.8)
    assert kept.scores.tolist() == pytest.approx([0.99, 0.96])
    # The other way round, the whole is surer: its halves are its fragments.
    found = rectangles((30, 0, 50, 30, 2, 0.70), (30, 30, 50, 60, 2, 0.75), (30, 0, 50, 60, 2, 0.95))
    assert drop_fragments(found, 0.8).scores.tolist() == pytest.approx([0.95])


def test_one_object_reported_as_two_classes_keeps_the_surer_class():
    found = rectangles((10, 10, 40, 40, 3, 0.6), (11, 10, 40, 41, 2, 0.9))
    kept = drop_fragments(found, 0.8)
    assert kept.class_ids.tolist() == [2]


def test_overlaps_that_are_not_fragments_are_kept():
    found = rectangles(
        (0, 0, 40, 40, 1, 0.9),   # a big object...
        (10, 10, 20, 20, 2, 0.8),  # ...with another in front of it
        (30, 30, 50, 50, 1, 0.7),  # a neighbour, a quarter of it overlapping
    )
    found.crops[0][10:20, 10:20] = False  # masks are of visible pixels: the one in front makes a hole
    kept = drop_fragments(found, 0.8)
    assert len(kept) == 3 and kept.class_ids.tolist() == [1, 2, 1]  # the original order
    assert len(drop_fragments(found, 0.2)) == 2  # the neighbour is a quarter covered


def test_the_predictor_drops_fragments_unless_told_not_to(tiny_checkpoint):
    model = load_model(str(tiny_checkpoint), device="cpu")
    image = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    everything = Predictor(model, score_threshold=0.0, fragment_overlap=1.0).predict([Frame(0, 0.0, image)])[0]
    cleaned = Predictor(model, score_threshold=0.0).predict([Frame(0, 0.0, image)])[0]
    expected = drop_fragments(everything, 0.8)
    assert len(cleaned) == len(expected) <= len(everything)
    assert np.array_equal(cleaned.scores, expected.scores)
