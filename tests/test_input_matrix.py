"""The rest of the bad-input matrix: empty and odd-sized videos, rotation, a cut faststart MP4, URLs, damage warnings."""

import json
import re
import shutil
import struct
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from streamseg.config import build_config
from streamseg.formats import read_records
from streamseg.pipeline import segment
from streamseg.sources import VideoSource, open_source
from tests.helpers_video import index_of, picture, write_avi


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "streamseg", "segment", *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout)


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "avi"])
def test_a_video_without_frames_is_one_clear_error(tmp_path, suffix):
    path = tmp_path / f"no-frames.{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # header and index written, not one frame
    assert path.stat().st_size > 0
    result = run_cli(path, "--out", tmp_path / "run")
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    (line,) = result.stderr.strip().splitlines()
    assert re.fullmatch(rf"streamseg: error: {re.escape(str(path))}: no (decodable )?video frames.*", line)


def write_raw(path, width, height, count=3):
    """Uncompressed BGR in AVI: any size, even 1x1, which H.264 in yuv420p cannot hold."""
    rng = np.random.default_rng(width * 7919 + height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr24"
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="bgr24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("width, height", [(1, 1), (3, 5), (4097, 17)])
def test_odd_sizes_go_through_the_whole_pipeline(tmp_path, tiny_checkpoint, width, height):
    clip = write_raw(tmp_path / f"odd-{width}x{height}.avi", width, height)
    run = segment(clip, out=tmp_path / "run", model=str(tiny_checkpoint), score_threshold=0.0)
    results = list(run)
    assert len(results) == 3 and all(r.frame.image.shape == (height, width, 3) for r in results)
    records = list(read_records(tmp_path / "run" / "frames.jsonl"))
    assert [(r["width"], r["height"]) for r in records] == [(width, height)] * 3
    for record in records:
        assert all(i["mask"]["size"] == [height, width] for i in record["instances"])
    with av.open(str(tmp_path / "run" / "overlay.mp4")) as video:
        frames = list(video.decode(video=0))
    # yuv420p needs even sizes: the overlay is padded by at most one row and column.
    assert len(frames) == 3 and (frames[0].width, frames[0].height) == (width + width % 2, height + height % 2)


def set_display_matrix(path, matrix):
    """Write a track header rotation matrix into an MP4 (what a phone does for a portrait video)."""
    data = bytearray(path.read_bytes())
    offset = data.index(b"tkhd") + 4 + 40  # version/flags, times, track id, duration, layer...: then the matrix
    data[offset:offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(data)
    return path


def test_rotation_metadata_turns_the_frames_upright(tmp_path):
    path = tmp_path / "portrait.mp4"
    image = np.zeros((48, 64, 3), np.uint8)
    image[:8, :8] = 255  # a mark in the stored picture's top-left corner
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    # The matrix an iPhone writes for portrait: turn the stored picture 90 degrees clockwise to show it.
    set_display_matrix(path, (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000))
    with VideoSource(path) as source:
        frames = list(source)
    assert (source.info.width, source.info.height, source.info.rotation) == (48, 64, 270)
    mark = np.argwhere(frames[0].image[:, :, 0] > 128).mean(axis=0)
    assert mark[0] < 10 and mark[1] > 38  # top-left turned clockwise is top-right
    assert frames[0].image.flags.c_contiguous


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_a_faststart_mp4_cut_short_gives_the_frames_before_the_cut(tmp_path, fraction):
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:  # the index first
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 256, 192, "yuv420p"
        stream.codec_context.options = {"bf": "0", "g": "10"}
        rng = np.random.default_rng(0)
        for index in range(90):
            # Noise makes the frames, not the index, most of the file, as in any real video.
            noisy = picture(index, 256, 192).astype(np.int16) + rng.integers(-40, 40, (192, 256, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat") < 0.05 * len(data)
    path.write_bytes(data[: int(len(data) * fraction)])
    with VideoSource(path) as source:
        frames = list(source)
    indices = [index_of(f.image) for f in frames]
    assert indices == list(range(len(frames))) and len(frames) >= 90 * fraction - 15
    assert len(frames) < 90


def test_an_unknown_url_scheme_is_one_line(tmp_path):
    result = run_cli("nosuchproto://camera/1", "--out", tmp_path / "run")
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("streamseg: error: nosuchproto://camera/1: not a video FFmpeg can open")


def test_an_unreachable_host_fails_within_the_timeout(tmp_path):
    started = time.monotonic()
    # 192.0.2.0/24 is reserved for documentation: nothing answers there.
    result = run_cli("rtsp://user:secret@192.0.2.1:554/stream", "--timeout", "1", "--out", tmp_path / "run")
    assert time.monotonic() - started < 30
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("streamseg: error: rtsp://user:***@192.0.2.1:554/stream: cannot open stream (")
    assert "secret" not in result.stderr


def test_damaged_packets_are_skipped_counted_and_warned_about(tmp_path, tiny_checkpoint):
    clip = write_avi(tmp_path / "damaged.avi", 30, garbage=[5, 6, 20])
    result = run_cli(clip, "--out", tmp_path / "run", "--model", tiny_checkpoint, "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    damaged = summary["source"]["decode_errors"]
    assert damaged >= 1 and summary["complete"]
    assert result.stderr.strip().splitlines() == [
        f"warning: {damaged} damaged packet{'s' * (damaged != 1)} skipped (decode_errors in summary.json)"]


def test_a_file_named_like_a_camera_is_a_file(tmp_path, synth_clip, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(synth_clip, "cam:0.mp4")
    with open_source("cam:0.mp4", build_config()) as source:
        assert isinstance(source, VideoSource) and source.info.frame_count == 40
