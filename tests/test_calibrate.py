"""Mask threshold calibration: measured on held-out clips, carried by the checkpoint, used by default."""

import pytest

from streamseg.calibrate import Calibration, best_threshold, calibrate_mask_threshold, write_calibrated
from streamseg.engine import Predictor
from streamseg.errors import InputError
from streamseg.models import load_checkpoint, load_model
from streamseg.models.registry import SHIPPED


def test_best_threshold_takes_the_highest_ap_and_of_equals_the_nearest_to_half():
    assert best_threshold({0.4: 0.61, 0.5: 0.65, 0.6: 0.66, 0.7: 0.64}) == 0.6
    assert best_threshold({0.4: 0.6, 0.55: 0.6, 0.7: 0.6}) == 0.55


def test_the_shipped_model_scores_worse_with_fat_masks_and_the_calibration_says_so(tmp_path):
    calibration = calibrate_mask_threshold(str(SHIPPED["shapes"]), tmp_path, seeds=(3001,), thresholds=(0.05, 0.6),
                                           frames=12)
    assert calibration.mask_ap[0.6] > calibration.mask_ap[0.05] + 0.05, calibration
    assert calibration.mask_threshold == 0.6


def test_a_calibrated_copy_carries_its_threshold_and_predictors_use_it(tiny_checkpoint, tmp_path):
    calibration = Calibration(0.65, {0.5: 0.6, 0.65: 0.7}, (3001,), 12)
    out = write_calibrated(tiny_checkpoint, tmp_path / "calibrated.pt", calibration)
    original, copy = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    assert copy["meta"]["mask_threshold"] == 0.65 and copy["meta"]["purpose"] == "tests"
    assert all((copy["state_dict"][k] == v).all() for k, v in original["state_dict"].items())
    assert Predictor(load_model(str(out), device="cpu"), runtime="torch").mask_threshold == 0.65
    assert Predictor(load_model(str(out), device="cpu"), mask_threshold=0.3, runtime="torch").mask_threshold == 0.3
    assert Predictor(load_model(str(tiny_checkpoint), device="cpu"), runtime="torch").mask_threshold == 0.5
    with pytest.raises(InputError, match="exists"):
        write_calibrated(tiny_checkpoint, out, calibration)  # never over a file it did not just write


def test_the_command_refuses_an_existing_out_before_any_work(tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from streamseg.cli import app

    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"someone else's")
    result = CliRunner().invoke(app, ["calibrate", str(tiny_checkpoint), "--out", str(taken)])
    assert result.exit_code != 0 and "exists" in result.output
    assert taken.read_bytes() == b"someone else's"
    assert not list(tmp_path.glob("clip*"))
