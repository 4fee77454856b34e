import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamseg.errors import OutputError
from streamseg.sinks import KEYFRAME_INTERVAL, JsonlWriter, VideoWriter, rgb_to_i420, write_json_atomic
from streamseg.sources import open_source

from .helpers_video import index_of, picture, write_mp4
from .test_sources import VFR_GAPS

REPO = Path(__file__).resolve().parents[1]


def copy_through_writer(source_path: Path, output: Path) -> None:
    with open_source(source_path) as source, VideoWriter(
        output, source.info.width, source.info.height, source.info.time_base, source.info.fps
    ) as writer:
        for frame in source:
            writer.write(frame.image, frame.pts, frame.time)


def stream_facts(path: Path) -> dict:
    """What a player sees: codec, pixel format, the pts of every packet and which are keyframes."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "keyframe_times": [float(p.pts * p.time_base) for p in packets if p.is_keyframe],
            "duration": float(stream.duration * stream.time_base),
        }


@pytest.mark.parametrize(
    ("pts", "time_base", "rate"),
    [
        (list(range(40)), Fraction(1001, 30000), 30000 / 1001),
        (np.concatenate([[0], np.cumsum(VFR_GAPS)]).tolist(), Fraction(1, 90000), 30),
    ],
    ids=["constant", "variable"],
)
def test_round_trip_keeps_every_frame_and_its_time(tmp_path, pts, time_base, rate):
    original = write_mp4(tmp_path / "in.mp4", pts, time_base, rate)
    copy_through_writer(original, tmp_path / "out.mp4")
    with open_source(original) as source:
        before, duration_before, fps_before = list(source), source.info.duration, source.info.fps
    with open_source(tmp_path / "out.mp4") as source:
        after, info = list(source), source.info
    assert len(after) == len(before) == len(pts) and info.frame_count == len(pts)
    assert [f.time for f in after] == pytest.approx([f.time for f in before], abs=1e-3)
    start = before[0].pts * before[0].time_base  # the writer starts its output at zero
    assert [f.pts * f.time_base for f in after] == [f.pts * f.time_base - start for f in before]  # exactly
    assert [index_of(f.image) for f in after] == list(range(len(pts)))
    facts = stream_facts(tmp_path / "out.mp4")
    assert (facts["codec"], facts["pix_fmt"], info.codec) == ("h264", "yuv420p", "h264")
    # The last frame lasts one average frame duration (the input's last frame has no duration of its own).
    assert abs(facts["duration"] - duration_before) <= 1 / fps_before + 1e-6


def test_time_is_used_without_time_base_or_pts(tmp_path):
    times = [0.0, 0.04, 0.1, 0.5, 0.52]
    with VideoWriter(tmp_path / "out.mp4", 64, 48, None, None) as writer:
        for index, time in enumerate(times):
            writer.write(picture(index), None, time)
    _, frames = _read(tmp_path / "out.mp4")
    assert [f.time for f in frames] == pytest.approx(times, abs=1e-4)


def test_output_starts_at_zero_and_timestamps_strictly_increase(tmp_path):
    stamps = [5000, 6000, 6000, 5500, 9000]  # starts late, repeats itself and steps back
    with VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(1, 1000), 25) as writer:
        for index, stamp in enumerate(stamps):
            writer.write(picture(index), stamp, stamp / 1000)
    _, frames = _read(tmp_path / "out.mp4")
    assert [index_of(f.image) for f in frames] == list(range(5))
    assert frames[0].pts == 0  # players would otherwise show nothing for the first 5 s
    assert frames[0].time == 0.0 and frames[1].time == pytest.approx(1.0) and frames[4].time == pytest.approx(4.0)
    assert all(a.pts < b.pts for a, b in zip(frames, frames[1:]))


def test_colors_survive_in_rgb_order(tmp_path):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :16] = (220, 30, 30)
    image[:, 16:32] = (30, 220, 30)
    image[:, 32:48] = (30, 30, 220)
    with VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(1, 25), 25) as writer:
        writer.write(image, 0, 0.0)
    _, frames = _read(tmp_path / "out.mp4")
    decoded = frames[0].image.astype(int)
    assert np.abs(decoded[4:-4, 4:12] - (220, 30, 30)).max() < 20
    assert np.abs(decoded[4:-4, 20:28] - (30, 220, 30)).max() < 20
    assert np.abs(decoded[4:-4, 36:44] - (30, 30, 220)).max() < 20


@pytest.mark.parametrize(("height", "width"), [(3, 5), (1, 1), (33, 64), (48, 65)])
def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path, height, width):
    image = np.zeros((height, width, 3), np.uint8)
    image[-1, :] = 200  # a bright last row and column, repeated into the padding
    image[:, -1] = 200
    with VideoWriter(tmp_path / "odd.mp4", width, height, Fraction(1, 25), 25) as writer:
        for index in range(3):
            writer.write(image, index, index / 25)
    source, frames = _read(tmp_path / "odd.mp4")
    assert len(frames) == 3
    assert (source.info.height, source.info.width) == (height + height % 2, width + width % 2)
    if height > 1 and width > 1:
        decoded = frames[0].image.astype(int)
        assert decoded[-1].mean() > 150 and decoded[:, -1].mean() > 150
        assert decoded[: height // 2, : width // 2].mean() < 60


def test_keyframes_at_most_two_seconds_apart(tmp_path):
    # Smooth content (no scene cuts): keyframes come only from the writer's rule, at a constant and a variable rate.
    with VideoWriter(tmp_path / "cfr.mp4", 64, 48, Fraction(1, 30), 30) as writer:
        for index in range(200):
            writer.write(_moving_bar(index), index, index / 30)
    with VideoWriter(tmp_path / "vfr.mp4", 64, 48, Fraction(1, 1000), 30) as writer:
        for index in range(40):  # actually 4 frames a second, against the stated 30
            writer.write(_moving_bar(index), index * 250, index / 4)
    for name, length in (("cfr.mp4", 199 / 30), ("vfr.mp4", 39 / 4)):
        keys = stream_facts(tmp_path / name)["keyframe_times"]
        assert keys[0] == 0.0
        assert max(np.diff(keys + [length])) <= KEYFRAME_INTERVAL + 1e-6, keys


def test_killed_writer_leaves_a_playable_file(tmp_path):
    path = tmp_path / "killed.mp4"
    # A child that writes 100 frames (3.3 s at 30 fps) and is killed before close(). It loads streamseg.sinks
    # without the package's __init__ (which imports torch) to start in a fraction of a second.
    child = f"""
import os, signal, sys, types
from fractions import Fraction
package = types.ModuleType("streamseg")
package.__path__ = [{str(REPO / "streamseg")!r}]
sys.modules["streamseg"] = package
sys.path.insert(0, {str(REPO / "tests")!r})
from helpers_video import picture
from streamseg.sinks import VideoWriter
writer = VideoWriter({str(path)!r}, 64, 48, Fraction(1, 30), 30)
for index in range(100):
    writer.write(picture(index), index, index / 30)
os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    _, frames = _read(path)
    # Everything up to the last keyframe (every 2 s) is in complete fragments; the fragment being built is lost.
    assert len(frames) >= 60
    assert [index_of(f.image) for f in frames] == list(range(len(frames)))
    assert [f.time for f in frames] == pytest.approx([i / 30 for i in range(len(frames))], abs=1e-3)


def test_close_is_idempotent_and_final(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(1, 25), 25)
    writer.write(picture(0), 0, 0.0)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="after close"):
        writer.write(picture(1), 1, 0.04)
    assert len(_read(tmp_path / "out.mp4")[1]) == 1


def test_wrong_image_shape_is_refused(tmp_path):
    with VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(1, 25), 25) as writer:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            writer.write(np.zeros((64, 48, 3), np.uint8), 0, 0.0)


def test_video_to_a_missing_directory_is_an_output_error(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "out.mp4"
    with pytest.raises(OutputError, match="No such file or directory") as caught:
        VideoWriter(path, 64, 48, Fraction(1, 25), 25)
    assert str(path) in str(caught.value)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_an_output_error():
    with pytest.raises(OutputError, match="No space left on device"):
        with VideoWriter("/dev/full", 64, 48, Fraction(1, 25), 25) as writer:
            for index in range(60):
                writer.write(picture(index), index, index / 25)
    log = JsonlWriter("/dev/full")
    with pytest.raises(OutputError, match="/dev/full: cannot write .*No space left on device"):
        log.write({"frame": 0})
    with pytest.raises(OutputError):
        log.close()  # the line is still unwritten
    log.close()


def test_jsonl_lines_are_on_disk_before_close(tmp_path):
    path = tmp_path / "frames.jsonl"
    log = JsonlWriter(path)
    log.write({"frame": 0, "label": "caf\u00e9"})
    log.write({"frame": 1, "boxes": [[1.5, 2, 3, 4]]})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"frame": 0, "label": "caf\u00e9"}, {"frame": 1, "boxes": [[1.5, 2, 3, 4]]}]
    with pytest.raises(TypeError):
        log.write({"frame": 2, "bad": object()})
    log.close()
    log.close()
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2  # the unserializable record wrote nothing


def test_jsonl_in_a_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot create"):
        JsonlWriter(tmp_path / "missing" / "frames.jsonl")


def test_write_json_atomic_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"complete": False})
    write_json_atomic(path, {"complete": True, "frames": 3})
    assert json.loads(path.read_text()) == {"complete": True, "frames": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_json_atomic_failure_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"complete": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    with pytest.raises(OutputError, match="cannot write"):
        write_json_atomic(tmp_path / "missing" / "summary.json", {"complete": True})
    assert json.loads(path.read_text()) == {"complete": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_write_json_atomic_cleans_up_when_the_rename_fails(tmp_path):
    target = tmp_path / "summary.json"
    target.mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(OutputError, match="summary.json: cannot write"):
        write_json_atomic(target, {"complete": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"] and target.is_dir()


def _read(path: Path):
    with open_source(path) as source:
        return source, list(source)


def _moving_bar(index: int) -> np.ndarray:
    image = np.full((48, 64, 3), 40, np.uint8)
    image[:, index % 56 : index % 56 + 8] = 200
    return image


def test_gray_levels_come_back_as_written(tmp_path):
    # The RGB to YUV conversion must use the range the file is marked with: a full-range conversion read back as
    # limited range would darken 64 to 56.
    levels = (0, 64, 128, 192, 255)
    image = np.concatenate([np.full((32, 16, 3), level, np.uint8) for level in levels], axis=1)
    with VideoWriter(tmp_path / "out.mp4", image.shape[1], 32, Fraction(1, 25), 25) as writer:
        writer.write(image, 0, 0.0)
    _, frames = _read(tmp_path / "out.mp4")
    decoded = frames[0].image.astype(int)
    for i, level in enumerate(levels):
        assert np.abs(decoded[8:-8, 16 * i + 4:16 * i + 12] - level).max() <= 3, level



def _studio_chroma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range U and V planes of each 2x2 block's mean colour, in floating point."""
    height, width = rgb.shape[:2]
    means = rgb.astype(float).reshape(height // 2, 2, width // 2, 2, 3).mean(axis=(1, 3))
    u = 128 + means @ np.array([-37.797, -74.203, 112.0]) / 255
    v = 128 + means @ np.array([112.0, -93.786, -18.214]) / 255
    return np.concatenate([u.ravel(), v.ravel()]).reshape(height // 2, width)


def test_i420_luma_is_ffmpegs_and_chroma_is_the_colour_of_each_2x2_block():
    # One-pixel stripes of saturated colours: a chroma sample taken from one pixel of its block (OpenCV's own
    # RGB-to-I420) is ~100 levels off the block's colour here.
    rng = np.random.default_rng(7)
    image = rng.choice(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 20]], np.uint8), (64, 96))
    image[:, ::2] = (20, 40, 220)
    yuv = rgb_to_i420(image).astype(int)
    reference = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray()
    assert yuv.shape == reference.shape == (96, 96)
    assert np.abs(yuv[:64] - reference[:64]).max() <= 1
    assert np.abs(yuv[64:] - _studio_chroma(image)).max() <= 1.5
