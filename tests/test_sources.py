import json
from fractions import Fraction

import numpy as np
import pytest

from streamseg.errors import InputError
from streamseg.sinks import VideoWriter
from streamseg.sources import SourceInfo, VideoSource, open_source

from .helpers_video import (
    HEIGHT,
    WIDTH,
    index_of,
    picture,
    real_clip,
    write_audio,
    write_avi,
    write_decode_order_mp4,
    write_mp4,
    write_restamped,
)

# Irregular gaps in ticks of 1/90000 s: 30, 15 and 60 fps stretches, a 1.5 s stall and a 1 ms gap.
VFR_GAPS = [3000, 3000, 6000, 1500, 1500, 1500, 3000, 135000, 90, 3000, 6000, 6000, 1500, 3000]


def read_all(path, **kwargs):
    with open_source(path, **kwargs) as source:
        return source, list(source)


def test_constant_rate_clip_frames_times_and_info(tmp_path):
    path = write_mp4(tmp_path / "cfr.mp4", range(30), Fraction(1, 25), 25)
    source, frames = read_all(path)
    assert [f.index for f in frames] == list(range(30))
    assert [index_of(f.image) for f in frames] == list(range(30))
    assert all(abs(f.time - i / 25) < 1e-9 for i, f in enumerate(frames))
    # The MP4 muxer raised the time base to 1/12800 (it wants at least 10000 ticks a second); the instants are exact.
    assert [f.pts * f.time_base for f in frames] == [Fraction(i, 25) for i in range(30)]
    image = frames[0].image
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    info = source.info
    assert (info.width, info.height, info.codec, info.frame_count) == (WIDTH, HEIGHT, "h264", 30)
    assert info.container.startswith("mov,mp4") and info.fps == pytest.approx(25)
    assert info.duration == pytest.approx(1.2) and {f.time_base for f in frames} == {info.time_base} and not info.live
    assert source.decode_errors == 0


def test_info_to_dict_is_json_ready():
    info = SourceInfo("a.mp4", "avi", "h264", 4, 2, 29.97, None, None, Fraction(1, 30000))
    record = json.loads(json.dumps(info.to_dict()))
    assert record["time_base"] == "1/30000" and record["frame_count"] is None and record["path"] == "a.mp4"


def test_variable_rate_clip_keeps_its_timestamps(tmp_path):
    pts = np.concatenate([[0], np.cumsum(VFR_GAPS)]).tolist()
    path = write_mp4(tmp_path / "vfr.mp4", pts, Fraction(1, 90000), 30)
    _, frames = read_all(path)
    assert [f.pts for f in frames] == pts
    assert [f.time for f in frames] == pytest.approx([p / 90000 for p in pts], abs=1e-9)
    assert [index_of(f.image) for f in frames] == list(range(len(pts)))


def test_timestamps_muxed_in_decode_order_are_given_back_in_display_order(tmp_path):
    path = write_decode_order_mp4(tmp_path / "decode_order.mp4", 50, 25)
    _, frames = read_all(path)
    assert [index_of(f.image) for f in frames] == list(range(50))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(50)], abs=1e-6)


def test_repeated_timestamps_are_nudged_one_tick_apart(tmp_path):
    path = write_restamped(tmp_path / "repeats.mkv", "matroska", [0, 1, 1, 2, 3, 3, 4], Fraction(1, 25))
    _, frames = read_all(path)
    assert [index_of(f.image) for f in frames] == list(range(7))
    ticks = [f.pts * f.time_base * 1000 for f in frames]  # Matroska counts milliseconds
    assert ticks == [0, 40, 41, 80, 120, 121, 160]  # later frames keep their own timestamps


def test_frames_without_timestamps_are_spaced_by_the_frame_rate(tmp_path):
    path = write_restamped(tmp_path / "raw.h264", "h264", [None] * 6, Fraction(1, 25))  # raw H.264 stores no time
    source, frames = read_all(path)
    assert [index_of(f.image) for f in frames] == list(range(6))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(6)])
    assert source.info.frame_count is None


def test_start_seeks_to_the_first_frame_at_or_after_it(tmp_path):
    path = write_mp4(tmp_path / "cfr.mp4", range(50), Fraction(1, 10), 10)
    _, frames = read_all(path, start=2.25)
    assert frames[0].index == 0 and frames[0].time == pytest.approx(2.3) and index_of(frames[0].image) == 23
    assert [index_of(f.image) for f in frames] == list(range(23, 50))
    _, frames = read_all(path, start=2.0)
    assert frames[0].time == pytest.approx(2.0) and len(frames) == 30


def test_start_past_the_end_has_no_frames(tmp_path):
    path = write_mp4(tmp_path / "cfr.mp4", range(10), Fraction(1, 10), 10)
    with pytest.raises(InputError, match="no decodable video frames at or after 5 s"):
        open_source(path, start=5.0)


def test_negative_start_is_refused(tmp_path):
    path = write_mp4(tmp_path / "cfr.mp4", range(3), Fraction(1, 10), 10)
    with pytest.raises(InputError, match="start"):
        open_source(path, start=-1)


def _missing(tmp_path):
    return tmp_path / "missing.mp4"


def _directory(tmp_path):
    return tmp_path


def _empty(tmp_path):
    (tmp_path / "empty.mp4").touch()
    return tmp_path / "empty.mp4"


def _random_bytes(tmp_path):
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return tmp_path / "noise.mp4"


def _text(tmp_path):
    (tmp_path / "notes.avi").write_text("not a video, just some words\n" * 20)
    return tmp_path / "notes.avi"


def _audio_only(tmp_path):
    return write_audio(tmp_path / "silence.wav")


def _all_packets_garbage(tmp_path):
    return write_avi(tmp_path / "garbage.avi", 6, garbage=range(6))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_missing, "no such file"),
        (_directory, "directory"),
        (_empty, "empty file"),
        (_random_bytes, "not a video|no video stream"),
        (_text, "not a video|no video stream"),
        (_audio_only, r"no video stream \(found: audio\)"),
        (_all_packets_garbage, "no decodable video frames"),
    ],
)
def test_bad_input_is_an_input_error_naming_the_path(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(InputError, match=reason) as caught:
        VideoSource(str(path))
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == 2


def test_undecodable_packets_are_skipped_and_counted(tmp_path):
    path = write_avi(tmp_path / "damaged.avi", 20, garbage=[5, 6, 12])
    source, frames = read_all(path)
    assert source.decode_errors == 3
    assert len(frames) == 17 and [f.index for f in frames] == list(range(17))
    assert [f.pts for f in frames] == [i for i in range(20) if i not in (5, 6, 12)]
    assert all(a.time < b.time for a, b in zip(frames, frames[1:]))


def test_iteration_is_single_pass_and_close_is_final(tmp_path):
    path = write_mp4(tmp_path / "cfr.mp4", range(6), Fraction(1, 10), 10)
    source = open_source(path)
    iterator = iter(source)
    assert [next(iterator).index for _ in range(2)] == [0, 1]
    assert [f.index for f in source] == [2, 3, 4, 5]
    source.close()
    source.close()
    assert list(source) == []


# Real clips from Debian's opencv-doc; skipped where it is not installed.


def test_vtest_avi_first_frames(tmp_path):
    with open_source(real_clip("vtest.avi", tmp_path)) as source:
        frames = [frame for frame, _ in zip(source, range(30))]
        info = source.info
    assert (info.width, info.height, info.fps, info.codec) == (768, 576, 10.0, "msmpeg4v3")
    assert [f.index for f in frames] == list(range(30))
    assert frames[10].time == pytest.approx(1.0) and frames[0].time == 0.0
    assert frames[29].image.shape == (576, 768, 3) and frames[29].image.std() > 10  # a picture, not a blank


def test_vtest_avi_with_a_damaged_tag_gives_every_frame(tmp_path):
    # Two bytes of MEncoder's software tag in the header turned into invalid UTF-8: PyAV's strict reading of the
    # tags failed the whole file with a UnicodeDecodeError, although every picture decodes.
    data = bytearray(real_clip("vtest.avi", tmp_path).read_bytes())
    tag = data.index(b"MEncoder")
    data[tag + 1:tag + 3] = b"\xd0\xff"
    (tmp_path / "damaged.avi").write_bytes(data)
    source, frames = read_all(tmp_path / "damaged.avi")
    assert len(frames) == 795 and source.decode_errors == 0 and source.info.codec == "msmpeg4v3"


def test_box_mp4_every_frame_evenly_timed(tmp_path):
    # box.mp4 carries decode-order timestamps (every other frame steps back); the frames come out evenly spaced.
    source, frames = read_all(real_clip("box.mp4", tmp_path))
    assert source.info.codec == "h264" and (source.info.width, source.info.height) == (640, 480)
    assert len(frames) == 455 and source.decode_errors == 0
    gaps = np.diff([f.time for f in frames])
    assert gaps.min() > 0.030 and gaps.max() < 0.036
    assert frames[-1].time == pytest.approx(454 / source.info.fps, abs=0.05)


def test_megamind_avi_packed_b_frames_evenly_timed(tmp_path):
    source, frames = read_all(real_clip("Megamind.avi", tmp_path))
    assert len(frames) == 270
    assert [f.pts for f in frames] == list(range(1, 271))  # in AVI packet order the B-frame stamps are swapped


def test_megamind_bugy_avi_yields_its_frames(tmp_path):
    # Damaged for OpenCV's own reader; the FFmpeg in PyAV 18 decodes every frame (rejected packets would be counted
    # in decode_errors, as test_undecodable_packets_are_skipped_and_counted shows, never raised).
    source, frames = read_all(real_clip("Megamind_bugy.avi", tmp_path))
    assert len(frames) + source.decode_errors == 270
    assert [f.time for f in frames] == pytest.approx([f.pts / 30 for f in frames]) and frames[-1].time == pytest.approx(9.0)
    assert all(a.time < b.time for a, b in zip(frames, frames[1:]))


def test_tree_avi_yields_the_frames_ffmpeg_decodes(tmp_path):
    source, frames = read_all(real_clip("tree.avi", tmp_path))
    assert 0 < len(frames) < source.info.frame_count  # FFmpeg's cinepak decoder returns only some of them
    assert all(a.time < b.time for a, b in zip(frames, frames[1:]))
    assert frames[0].image.shape == (240, 320, 3)


def _cut(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _fragmented(path, count=300):
    """Written the way overlay.mp4 is: fragmented MP4, a keyframe (and fragment) every 2 s."""
    with VideoWriter(path, WIDTH, HEIGHT, Fraction(1, 30), 30) as writer:
        for index in range(count):
            writer.write(picture(index % 256), index, index / 30)
    return path


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75, 0.95])
def test_a_fragmented_mp4_cut_anywhere_gives_every_frame_before_the_cut(tmp_path, fraction):
    # A crashed recording: cut inside a fragment, FFmpeg cannot open it seekable, so it is read as a pipe.
    path = _cut(_fragmented(tmp_path / "cut.mp4"), fraction)
    source, frames = read_all(path)
    assert len(frames) >= 0.5 * fraction * 300
    assert [index_of(f.image) for f in frames] == [i % 256 for i in range(len(frames))]
    assert all(a.time < b.time for a, b in zip(frames, frames[1:]))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_an_mp4_cut_before_its_index_is_one_clear_input_error(tmp_path, fraction):
    path = _cut(write_mp4(tmp_path / "cut.mp4", range(90), Fraction(1, 30), 30), fraction)  # index at the end
    with pytest.raises(InputError, match="not a video FFmpeg can open") as caught:
        open_source(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
