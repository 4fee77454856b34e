"""A Run's life from Python: settings checked when made, resources released however it ends, honest timings."""

import json
import time

import pytest

from streamseg.config import SegmentConfig
from streamseg.errors import InputError, OutputError
from streamseg.models import load_model
from streamseg.pipeline import Segmenter
from streamseg.sources.live import LiveOptions, LiveSource

from .test_live import FakeCapture


def _segmenter(checkpoint, **settings):
    config = SegmentConfig(model=str(checkpoint), device="cpu", score_threshold=0.05, **settings)
    return Segmenter(config, load_model(str(checkpoint), device="cpu"))


@pytest.mark.parametrize("settings, message", [
    ({"stride": 0}, "stride must be at least 1"),
    ({"stride": "2"}, "stride has the wrong type"),
    ({"lines": ["0,0,10,10"], "track": False}, "they need tracking on"),
    ({"tracker": {"lost_seconds": 0}}, "tracker.lost_seconds must be positive"),
    ({"tracker": {"lost_second": 1.0}}, "unknown setting tracker.lost_second"),
])
def test_settings_made_in_python_are_checked_when_made(settings, message):
    with pytest.raises(InputError, match=message):
        SegmentConfig(**settings)


def test_settings_changed_after_they_were_made_are_checked_by_the_segmenter(tiny_checkpoint):
    config = SegmentConfig(model=str(tiny_checkpoint), device="cpu")
    config.stride = 0
    with pytest.raises(InputError, match="stride must be at least 1"):
        Segmenter(config)


def test_python_settings_take_numbers_and_tables_as_toml_does():
    config = SegmentConfig(start=2, tracker={"lost_seconds": 3})
    assert config.start == 2.0 and isinstance(config.start, float) and config.tracker.lost_seconds == 3.0


def test_a_run_never_iterated_is_closed_with_its_summary(tmp_path, synth_clip, tiny_checkpoint):
    run = _segmenter(tiny_checkpoint).run(str(synth_clip), tmp_path / "run")
    run.close()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["complete"] is False and summary["run"]["frames_decoded"] == 0
    assert (tmp_path / "run" / "frames.jsonl").read_text() == ""


def test_a_run_left_early_in_a_with_block_is_finished(tmp_path, synth_clip, tiny_checkpoint):
    with _segmenter(tiny_checkpoint).run(str(synth_clip), tmp_path / "run") as run:
        for result in run:
            if result.frame.index == 4:
                break
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["complete"] is False and 5 <= summary["run"]["frames_decoded"] < 40
    frames = [json.loads(line)["frame"] for line in (tmp_path / "run" / "frames.jsonl").read_text().splitlines()]
    assert frames == list(range(len(frames))) and len(frames) >= 5  # the writer may be a few frames ahead


def test_a_ctrl_c_in_the_callers_loop_is_recorded_as_an_interrupt(tmp_path, synth_clip, tiny_checkpoint):
    # A signal that lands while the caller holds a result is raised in the caller's code, not in the run:
    # the run then only sees itself being closed, which used to be recorded as "stopped by the caller".
    with pytest.raises(KeyboardInterrupt):
        with _segmenter(tiny_checkpoint).run(str(synth_clip), tmp_path / "run") as run:
            for result in run:
                if result.frame.index == 4:
                    raise KeyboardInterrupt
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["complete"] is False and summary["reason"] == "interrupted"
    assert 5 <= summary["run"]["frames_decoded"] < 40


def test_a_run_whose_outputs_cannot_open_releases_its_live_source(tmp_path, tiny_checkpoint):
    capture = FakeCapture(10**6, interval=0.01)
    live = LiveSource("tcp://cam.local:9000", LiveOptions(reconnect=False), connect=lambda: capture)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("mine")
    with pytest.raises(OutputError, match="not a directory"):
        _segmenter(tiny_checkpoint).run(live, not_a_folder)
    deadline = time.monotonic() + 5
    while live._reader.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not live._reader.is_alive() and capture.closed
    assert not_a_folder.read_text() == "mine"


def test_stage_times_do_not_nest(tiny_checkpoint, synth_clip):
    # The tracker made slow on purpose: its time must show under "track" and nowhere else.
    run = _segmenter(tiny_checkpoint, mode="sequential", max_frames=6).run(str(synth_clip))
    update = run.tracker.update

    def slow_update(instances):
        time.sleep(0.05)
        return update(instances)

    run.tracker.update = slow_update
    list(run)
    seconds = run.summary.to_dict()["run"]["stage_seconds"]
    assert seconds["track"] >= 6 * 0.05
    assert seconds["postprocess"] < 6 * 0.05
    assert sum(seconds.values()) <= run.summary.to_dict()["run"]["wall_seconds"] + 0.01

