"""The model shipped in the package is the real default: it loads from the file alone and segments a clip it never saw."""

import json

from streamseg.evaluate import evaluate_detections
from streamseg.formats import read_records
from streamseg.models import load_checkpoint, load_model
from streamseg.models.registry import SHIPPED
from streamseg.pipeline import segment
from streamseg.synth import CLASS_NAMES, write_clip

# Training draws its scenes from seed 0; the demo clip is seed 2026 and the model card's clip seed 1000.
UNSEEN_SEED = 31337


def test_shipped_model_is_small_fp16_and_the_default():
    path = SHIPPED["shapes"]
    assert path.stat().st_size <= 8 * 1024 * 1024
    ckpt = load_checkpoint(path)
    assert ckpt["class_names"] == list(CLASS_NAMES) and ckpt["architecture"] == "compact"
    assert {str(v.dtype) for v in ckpt["state_dict"].values() if v.is_floating_point()} == {"torch.float16"}
    assert load_model(device="cpu").name == "shapes"


def test_shipped_model_segments_an_unseen_clip(tmp_path):
    clip = tmp_path / "unseen.mp4"
    gt = write_clip(clip, frames=40, width=640, height=360, seed=UNSEEN_SEED, objects=6)
    run = segment(str(clip), out=tmp_path / "run", device="cpu", video=False)
    assert sum(1 for _ in run) == 40
    metrics = evaluate_detections(tmp_path / "run" / "frames.jsonl", gt)
    # The floor this model clears with margin (it measures 0.88 mask / 0.83 box AP on this clip; its
    # masks pasted by torchvision's rule, as before 2026-12-01, 0.85, which fails it); the model card's
    # target is 0.90, not reached yet (docs/models.md). An untrained model scores ~0.
    assert metrics["mask_ap"] >= 0.86, metrics
    assert metrics["box_ap"] >= 0.80, metrics
    # Tracking is on by default: confident objects carry ids, and the summary counts unique ones.
    records = list(read_records(tmp_path / "run" / "frames.jsonl"))
    ids = [o["id"] for r in records for o in r["instances"]]
    assert sum(i is not None for i in ids) >= 0.8 * len(ids)
    truth = {o["id"]: o["label"] for r in read_records(gt) for o in r["instances"]}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    unique = summary["counts"]["unique"]
    # Close to the number of true objects (exact counts are the tracker issue's target, not met yet).
    assert abs(sum(unique.values()) - len(truth)) <= 2, (unique, truth)
