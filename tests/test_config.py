import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamseg.config import SegmentConfig, build_config
from streamseg.errors import InputError
from streamseg.track import TrackerConfig


def test_defaults_then_file_then_options(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('score_threshold = 0.7\nstride = 2\nclasses = ["circle"]\n')
    config = build_config(path, stride=3, model=None)
    assert config.score_threshold == 0.7  # from the file
    assert config.stride == 3  # the option wins
    assert config.classes == ["circle"]
    assert config.model == SegmentConfig().model  # default kept


def test_tracker_thresholds_from_the_file_then_the_options(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[tracker]\nlost_seconds = 3\ncount_hits = 5\n")
    config = build_config(path, tracker={"count_hits": 4})
    assert config.tracker == TrackerConfig(lost_seconds=3.0, count_hits=4)
    assert isinstance(config.tracker.lost_seconds, float)
    given = TrackerConfig(high_score=0.5)
    assert build_config(path, tracker=given).tracker == given  # a whole TrackerConfig replaces the table


def test_the_default_preset_spells_out_the_defaults():
    from pathlib import Path

    assert build_config(Path(__file__).parents[1] / "configs" / "default.toml") == SegmentConfig()


def test_shipped_presets_are_valid():
    from pathlib import Path

    presets = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert {p.name for p in presets} >= {"default.toml", "cpu-fast.toml", "coco-gpu.toml", "live-camera.toml", "accurate.toml"}
    for preset in presets:
        build_config(preset)


@pytest.mark.parametrize(
    "text, message",
    [
        ("stride = 0", "stride must be at least 1"),
        ("score_threshold = 1.5", "between 0 and 1"),
        ("strde = 2", "unknown setting strde"),
        ('stride = "2"', "stride has the wrong type"),
        ("stride = true", "stride has the wrong type"),
        ("classes = [1, 2]", "classes must be a list of strings"),
        ("stride = [", "not valid TOML"),
        ("[tracker]\nlost_seconds = 0", "tracker.lost_seconds must be positive"),
        ("[tracker]\nhigh_score = 2", "tracker.high_score must be between 0 and 1"),
        ("[tracker]\nconfirm_hits = 0", "tracker.confirm_hits must be at least 1"),
        ("[tracker]\nlost_second = 3", "unknown setting tracker.lost_second"),
        ("[tracker]\nconfirm_hits = 2.5", "tracker.confirm_hits has the wrong type"),
        ("tracker = 3", "tracker has the wrong type"),
    ],
)
def test_bad_config_files_are_input_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        build_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="no such config file"):
        build_config(tmp_path / "nope.toml")


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(["stride", "max_frames", "inference_size", "score_threshold", "start", "bogus"]),
                       st.one_of(st.integers(-5, 5000), st.floats(-2, 2, allow_nan=False), st.text(max_size=3), st.booleans()),
                       max_size=4))
def test_any_config_either_validates_or_raises_input_error(values):
    try:
        config = build_config(**values)
    except InputError:
        return
    assert config.stride >= 1
    assert 0 <= config.score_threshold <= 1
    assert config.start >= 0
