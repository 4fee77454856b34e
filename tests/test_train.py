import json

import numpy as np
import pytest
import torch

from streamseg.engine import Predictor
from streamseg.errors import InputError
from streamseg.instances import Frame
from streamseg.models import load_checkpoint, load_model
from streamseg.train import TrainSettings, _Average, parse_overrides, train

from .conftest import TINY_CONFIG


def test_training_smoke_loss_falls_and_checkpoint_reloads(tmp_path):
    steps = []
    settings = TrainSettings(out=str(tmp_path / "run"), iterations=30, batch=2, lr=3e-3, warmup=3, seed=1,
                             device="cpu", workers=0, config=TINY_CONFIG, log_every=10)
    path = train(settings, on_step=steps.append)
    assert [s.iteration for s in steps] == list(range(1, 31))
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in logged] == [10, 20, 30]
    assert logged[-1]["losses"]["total"] == pytest.approx(steps[-1].losses["total"], abs=1e-4)
    totals = [s.losses["total"] for s in steps]
    assert all(np.isfinite(totals))
    assert np.mean(totals[-5:]) < np.mean(totals[:5])
    assert set(steps[0].losses) == {"rpn", "box", "mask", "total"}

    ckpt = load_checkpoint(path)
    assert ckpt["meta"]["iterations"] == 30 and ckpt["class_names"][1] == "circle"
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    # The fp16 model is exactly the moving average of the trained fp32 states, rounded; not the last step's.
    resumable = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    average, last = resumable["train_state"]["average"], resumable["state_dict"]
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(average[key].half() if average[key].is_floating_point() else average[key], value), key
    assert not all(torch.equal(average[key], last[key]) for key in last)
    # And it is rebuilt from the file alone: two independent loads predict identically.
    frame = Frame(0, 0.0, np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8))
    a = Predictor(load_model(str(path), device="cpu"), score_threshold=0.0).predict([frame])[0]
    b = Predictor(load_model(str(path), device="cpu"), score_threshold=0.0).predict([frame])[0]
    assert len(a) > 0
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.masks, b.masks)


def test_resume_continues_the_iteration_count(tmp_path):
    common = dict(out=str(tmp_path / "run"), batch=1, warmup=1, device="cpu", workers=0, config=TINY_CONFIG)
    train(TrainSettings(iterations=3, **common))
    steps = []
    train(TrainSettings(iterations=5, **common), resume=True, on_step=steps.append)
    assert [s.iteration for s in steps] == [4, 5]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_state"]["iteration"] == 5


def test_without_average_the_model_is_the_last_step(tmp_path):
    settings = TrainSettings(out=str(tmp_path / "run"), iterations=3, batch=1, warmup=1, device="cpu", workers=0,
                             config=TINY_CONFIG, ema=0.0)
    shipped = load_checkpoint(train(settings))["state_dict"]
    last = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(last[k].half() if last[k].is_floating_point() else last[k], v) for k, v in shipped.items())


def test_average_moves_towards_each_step_by_its_ramped_decay():
    module = torch.nn.BatchNorm1d(2)
    average = _Average(module, decay=0.999)
    with torch.no_grad():
        module.weight.fill_(3.0)  # from 1.0
        module.num_batches_tracked.fill_(7)
    average.update(module, iteration=1)  # decay ramps: min(0.999, 2 / 11)
    assert torch.allclose(average.state["weight"], torch.full((2,), 1 + 2 * (1 - 2 / 11)))
    assert int(average.state["num_batches_tracked"]) == 7
    average.update(module, iteration=10_000)  # decay 0.999 from then on
    assert torch.allclose(average.state["weight"], torch.full((2,), 3 - 2 * (2 / 11) * 0.999))


def test_resume_keeps_the_average(tmp_path):
    common = dict(out=str(tmp_path / "run"), batch=1, warmup=1, device="cpu", workers=0, config=TINY_CONFIG)
    train(TrainSettings(iterations=2, **common))
    before = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_state"]["average"]
    train(TrainSettings(iterations=2, **common), resume=True)  # already done: restores, saves again
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_state"]["average"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_settings_need_a_bound():
    with pytest.raises(InputError, match="--minutes or --iterations"):
        TrainSettings()
    with pytest.raises(InputError, match="--ema"):
        TrainSettings(iterations=1, ema=1.0)


def test_a_fine_tune_can_change_the_checkpoints_sizes(tmp_path):
    common = dict(batch=1, warmup=1, device="cpu", workers=0)
    first = train(TrainSettings(out=str(tmp_path / "a"), iterations=1, config=TINY_CONFIG, **common))
    tuned = train(TrainSettings(out=str(tmp_path / "b"), iterations=1, model=str(first),
                                config={"min_size": 128, "train_min_sizes": [128, 144]}, **common))
    before, config = load_checkpoint(first)["config"], load_checkpoint(tuned)["config"]
    assert before["widths"] == TINY_CONFIG["widths"] and before["min_size"] != 128
    assert config == {**before, "min_size": 128, "train_min_sizes": [128, 144]}
    assert load_model(str(tuned), device="cpu").default_input_size == 128
    # Resumed without the overrides, the run keeps the sizes it was started with.
    resumed = train(TrainSettings(out=str(tmp_path / "b"), iterations=2, model=str(first), **common), resume=True)
    assert load_checkpoint(resumed)["config"] == config


def test_overrides_are_json_values_of_known_keys(tmp_path):
    assert parse_overrides(["min_size=312", "train_min_sizes=[264, 312]", "x=word"]) == {
        "min_size": 312, "train_min_sizes": [264, 312], "x": "word"}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_overrides(["min_size"])
    with pytest.raises(InputError, match="unknown model setting 'min_sise'"):
        TrainSettings(iterations=1, config={"min_sise": 300})
    with pytest.raises(InputError, match="compact models only"):
        train(TrainSettings(out=str(tmp_path / "r50"), iterations=1, model="maskrcnn_resnet50_fpn", device="cpu",
                            workers=0, config={"min_size": 300}))
