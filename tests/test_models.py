import os

import numpy as np
import pytest
import torch

from streamseg.engine import Predictor
from streamseg.errors import InputError, ModelError
from streamseg.instances import Frame
from streamseg.models import build_compact, load_checkpoint, load_model, save_checkpoint
from streamseg.models.registry import build_architecture

from .conftest import TINY_CONFIG


def _frame(h=96, w=160, seed=0):
    return Frame(0, 0.0, np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_checkpoint_rebuilds_the_same_model(tiny_checkpoint):
    a = load_model(str(tiny_checkpoint), device="cpu")
    b = load_model(str(tiny_checkpoint), device="cpu")
    assert a.architecture == "compact" and a.class_names[1] == "circle"
    for pa, pb in zip(a.module.state_dict().values(), b.module.state_dict().values()):
        assert torch.equal(pa, pb)
    frame = _frame()
    out_a = Predictor(a, score_threshold=0.0).predict([frame])[0]
    out_b = Predictor(b, score_threshold=0.0).predict([frame])[0]
    assert np.array_equal(out_a.boxes, out_b.boxes) and np.array_equal(out_a.masks, out_b.masks)


def test_half_precision_checkpoint_is_smaller_and_loads(tmp_path):
    model = build_compact(4, TINY_CONFIG)
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, model, "compact", TINY_CONFIG, ["__background__", "a", "b", "c"])
    save_checkpoint(half, model, "compact", TINY_CONFIG, ["__background__", "a", "b", "c"], half=True)
    assert half.stat().st_size < full.stat().st_size * 0.7
    loaded = load_model(str(half), device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ModelError, match="not a streamseg checkpoint"):
        load_checkpoint(plain)

    # Even with our format tag, a file that needs pickle to import code is refused by weights_only.
    evil = tmp_path / "evil.pt"
    torch.save({"format": "streamseg-checkpoint", "hook": os.getcwd}, evil)
    with pytest.raises(ModelError, match="not a loadable streamseg checkpoint"):
        load_checkpoint(evil)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelError):
        load_model(str(text))


def test_unknown_model_and_device():
    with pytest.raises(ModelError, match="unknown model 'nosuchmodel'"):
        load_model("nosuchmodel")
    with pytest.raises(ModelError, match="no such streamseg checkpoint"):
        load_model("missing/model.pt")
    with pytest.raises(ModelError, match="unknown device"):
        load_model("shapes", device="tpu")


def test_torchvision_models_build_without_weights():
    model = load_model("maskrcnn_resnet50_fpn", weights="random", device="cpu")
    assert len(model.class_names) == 91 and model.class_names[1] == "person"
    assert model.default_input_size == 800


def test_offline_coco_weights_give_one_actionable_line(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as info:
        load_model("maskrcnn_resnet50_fpn", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "--weights FILE" in message and str(tmp_path / "hub") in message
    assert capfd.readouterr() == ("", "")  # torch's own "Downloading: ..." line stays out of the way


def test_coco_weights_come_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    state = build_architecture("maskrcnn_resnet50_fpn", 91).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")
    model = load_model("maskrcnn_resnet50_fpn", device="cpu")
    key = "backbone.body.conv1.weight"
    assert torch.equal(model.module.state_dict()[key], state[key])


def test_local_weights_file_for_torchvision_model(tmp_path):
    state = build_architecture("maskrcnn_resnet50_fpn", 91).state_dict()
    path = tmp_path / "coco.pth"
    torch.save(state, path)
    model = load_model("maskrcnn_resnet50_fpn", weights=str(path), device="cpu")
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(model.module.state_dict()[key], state[key])
    wrong = tmp_path / "wrong.pth"
    torch.save(build_compact(4, TINY_CONFIG).state_dict(), wrong)
    with pytest.raises(ModelError, match="do not fit"):
        load_model("maskrcnn_resnet50_fpn", weights=str(wrong), device="cpu")


def test_predictor_thresholds_and_class_filter(tiny_checkpoint):
    model = load_model(str(tiny_checkpoint), device="cpu")
    frame = _frame(seed=3)
    everything = Predictor(model, score_threshold=0.0, agnostic_nms=None).predict([frame])[0]
    assert len(everything) > 0
    assert everything.masks.shape == (len(everything), 96, 160) and everything.masks.dtype == bool
    strict = Predictor(model, score_threshold=float(np.median(everything.scores)) + 1e-6).predict([frame])[0]
    assert len(strict) < len(everything)
    only = Predictor(model, score_threshold=0.0, classes=["triangle"]).predict([frame])[0]
    assert set(only.class_ids.tolist()) <= {3}
    with pytest.raises(InputError, match="unknown class"):
        Predictor(model, classes=["dog"])
