"""Live runs end to end: a loopback H.264/MPEG-TS server (tests/loopback.py), a fake camera, the CLI."""

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from streamseg import window
from streamseg.cli import app
from streamseg.config import build_config
from streamseg.formats import read_records
from streamseg.pipeline import Segmenter
from streamseg.sources import VideoSource, capture, live, open_source
from streamseg.sources.capture import ConnectionLost
from streamseg.synth import World
from tests.loopback import free_port, start_server

SLOW_FORWARD = 0.15  # seconds added to each forward pass of the "slow model"


@pytest.fixture(scope="module")
def shipped():
    """The shipped model, loaded once (settings are swapped per test)."""
    return Segmenter(build_config()).model


@pytest.fixture
def server():
    """Start loopback servers with ``server(frames)``; all are killed at the end of the test."""
    port, processes = free_port(), []

    def start(frames, **options):
        processes.append(start_server(port, frames, **options))
        return processes[-1]

    start.url = f"tcp://127.0.0.1:{port}"
    yield start
    for process in processes:
        process.kill()
        process.wait()


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(video=0)]


def test_live_run_with_the_shipped_model_writes_every_output(tmp_path, server, shipped):
    server(60)
    out = tmp_path / "run"
    run = Segmenter(build_config(reconnect=False), shipped).run(server.url, out)
    results = list(run)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["source"]["live"] and summary["source"]["codec"] == "h264"
    assert summary["source"]["dropped_frames"] + len(results) == 60
    records = list(read_records(out / "frames.jsonl"))
    assert len(records) == len(results) >= 10
    assert all(r["wall_time"].endswith("Z") and "dropped_before" in r for r in records)
    assert sum(r["instances"] != [] for r in records) >= len(records) // 2  # the shipped model finds the shapes
    times = decoded_frames(out / "overlay.mp4")
    assert len(times) == len(results)
    # Real time: 60 frames at 30 fps span about two seconds (less what FFmpeg buffered while opening).
    assert 1.0 < times[-1] < 3.0 and times == sorted(times)


def test_the_run_reconnects_when_the_server_dies_and_comes_back(tmp_path, server, shipped, monkeypatch):
    monkeypatch.setattr(live, "FIRST_RETRY", 0.2)
    first = server(3000)
    out = tmp_path / "run"
    run = Segmenter(build_config(reset_gap=0.1), shipped).run(server.url, out)
    before_gap, after_gap = [], []
    for result in run:
        if result.frame.events:
            after_gap.append(result)
        elif after_gap:
            after_gap.append(result)
        else:
            before_gap.append(result)
            if len(before_gap) == 15:
                first.kill()  # the camera loses power
                threading.Timer(0.5, server, args=(3000,)).start()  # and comes back
        if len(after_gap) == 15:
            run.stop("enough")
    summary = json.loads((out / "summary.json").read_text())
    (outage,) = summary["source"]["outages"]
    assert outage["gap_seconds"] > 0.4 and outage["attempts"] >= 1
    assert summary["complete"] and summary["stopped_by"] == "enough"
    records = list(read_records(out / "frames.jsonl"))
    events = [r for r in records if "source_events" in r]
    assert len(events) == 1 and events[0]["source_events"][0]["gap_seconds"] == outage["gap_seconds"]
    gap_at = records.index(events[0])
    assert records[gap_at]["time"] - records[gap_at - 1]["time"] >= outage["gap_seconds"] - 0.1
    # A gap longer than reset_gap: tracking starts afresh, no id from before comes back.
    ids_before = {i["id"] for r in records[:gap_at] for i in r["instances"] if i["id"]}
    ids_after = {i["id"] for r in records[gap_at:] for i in r["instances"] if i["id"]}
    assert ids_before and ids_after and min(ids_after) > max(ids_before)
    assert len(decoded_frames(out / "overlay.mp4")) == len(before_gap) + len(after_gap)


def test_start_up_gives_the_first_frame_at_once_and_low_latency_keeps_the_start(tmp_path, server, tiny_checkpoint,
                                                                               monkeypatch):
    # FFmpeg's default probing held back the first 20 frames (0.8 s at 25 fps) of each connection and then
    # handed them over at once, and low latency dropped all but the last: 0.9 s to the first frame, 63 of 100 kept.
    monkeypatch.setattr(live, "FIRST_RETRY", 0.2)
    frames = 50  # per connection, at 25 fps
    first = server(frames, fps=25, width=160, height=96)
    settings = build_config(model=str(tiny_checkpoint), score_threshold=0.05, latency="low", video=False)
    run = Segmenter(settings).run(server.url, tmp_path / "run")

    def serve_again_then_stop():
        try:
            first.wait()
            server(frames, fps=25, width=160, height=96).wait()
            time.sleep(1.0)  # the last frames through the pipeline
        finally:
            run.stop("both connections done")

    threading.Thread(target=serve_again_then_stop, daemon=True).start()
    segmented = len(list(run))
    source = run.summary.to_dict()["source"]
    assert len(source["outages"]) == 2 and source["outages"][0]["gap_seconds"]  # reconnected once, then ended
    (connect, reconnect) = source["first_frame_seconds"]
    assert connect < 0.6 and reconnect < 0.6
    assert segmented >= 0.85 * 2 * frames, source


def test_close_returns_at_once_while_the_stream_is_stalled(server):
    server(10, fps=25, width=160, height=96, stall=True)
    source = live.LiveSource(server.url, live.LiveOptions(latency="complete", reconnect=False))
    frames = iter(source)
    # MPEG-TS over a socket holds back the last two frames sent until more data comes; take fewer.
    assert [next(frames).index for _ in range(5)] == list(range(5))
    time.sleep(0.3)  # the reader is waiting on a read that the stalled server never answers (timeout: 10 s)
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 2.0
    assert next(frames, None) is None


def slow_segmenter(shipped, **settings):
    segmenter = Segmenter(build_config(reconnect=False, video=False, **settings), shipped)
    forward = segmenter.predictor.forward

    def slow_forward(frames):
        time.sleep(SLOW_FORWARD)
        return forward(frames)

    segmenter.predictor.forward = slow_forward
    return segmenter


def test_low_latency_stays_current_and_complete_keeps_every_frame(tmp_path, server, shipped):
    server(60)
    low = slow_segmenter(shipped, latency="low").run(server.url, tmp_path / "low")
    results = list(low)
    stats = low.stats
    inference = stats.stage_seconds["infer"] / stats.frames_inferred  # measured, slow model included
    assert inference >= SLOW_FORWARD
    assert stats.latency_ms(95) < 2 * inference * 1000
    assert low.summary.to_dict()["source"]["dropped_frames"] > 0
    assert sum(r.frame.dropped_before for r in results) + len(results) <= 60

    server(60)
    complete = slow_segmenter(shipped, latency="complete").run(server.url, tmp_path / "complete")
    assert [r.frame.index for r in complete] == list(range(60))
    assert complete.summary.to_dict()["source"]["dropped_frames"] == 0
    assert complete.stats.latency_ms(95) > 2 * inference * 1000  # what low latency avoids: the backlog grows


class FakeCamera:
    """Stands in for cv2.VideoCapture: synthetic pictures at 30 fps; the first one opened fails after 20."""

    opened = []

    def __init__(self, index):
        self.index, self.settings = index, {}
        self.frames = iter(World(320, 240, seed=3))
        self.left = 20 if not FakeCamera.opened else 10**6
        FakeCamera.opened.append(self)

    def isOpened(self):
        return True

    def set(self, prop, value):
        self.settings[prop] = value
        return True

    def get(self, prop):
        return self.settings.get(prop, 0.0)

    def read(self):
        if self.left == 0:
            return False, None  # unplugged
        self.left -= 1
        time.sleep(1 / 30)
        image, _ = next(self.frames)
        return True, np.ascontiguousarray(image[:, :, ::-1])  # OpenCV hands out BGR

    def release(self):
        pass


def test_camera_through_a_fake_device(tmp_path, shipped, monkeypatch):
    def no_ffmpeg_device(*args, **kwargs):
        raise ConnectionLost("no such device")

    monkeypatch.setattr(capture, "StreamCapture", no_ffmpeg_device)
    monkeypatch.setattr(capture.cv2, "VideoCapture", FakeCamera)
    monkeypatch.setattr(live, "FIRST_RETRY", 0.05)
    FakeCamera.opened = []
    settings = build_config(camera_size="320x240", camera_fps=30, reconnect=True, max_frames=30, latency="complete")
    run = Segmenter(settings, shipped).run("cam:0", tmp_path / "cam")
    results = list(run)
    assert len(results) == 30 and [r.frame.index for r in results] == list(range(30))
    camera = FakeCamera.opened[0]
    assert camera.index == 0 and camera.settings == {cv2.CAP_PROP_FRAME_WIDTH: 320, cv2.CAP_PROP_FRAME_HEIGHT: 240,
                                                      cv2.CAP_PROP_FPS: 30}
    assert len(FakeCamera.opened) == 2  # unplugged after 20 frames, found again
    assert run.summary.to_dict()["source"]["container"] == "opencv" and len(run.summary.to_dict()["source"]["outages"]) == 1
    assert sum(len(r.instances) > 0 for r in results) >= 15


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "streamseg", "segment", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8", **kwargs)


def test_sigint_ends_a_live_run_cleanly(tmp_path, server):
    server(3000)
    out = tmp_path / "run"
    process = cli(server.url, "--out", out, "--quiet")
    jsonl, deadline = out / "frames.jsonl", time.monotonic() + 60
    while time.monotonic() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n") >= 10):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and stderr.strip().splitlines() == ["streamseg: error: interrupted"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["reason"] == "interrupted"
    records = list(read_records(out / "frames.jsonl"))
    assert len(records) >= 10 and len(decoded_frames(out / "overlay.mp4")) >= len(records)


def test_ctrl_c_while_the_stream_is_stalled_ends_the_run_within_two_seconds(tmp_path, server, tiny_checkpoint):
    server(10, fps=25, width=160, height=96, stall=True)  # ten frames, then a connection that says nothing
    out = tmp_path / "run"
    process = cli(server.url, "--out", out, "--quiet", "--model", tiny_checkpoint, "--score-threshold", "0.05")
    jsonl, deadline = out / "frames.jsonl", time.monotonic() + 60
    while time.monotonic() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n") >= 1):
        time.sleep(0.05)
    time.sleep(1.0)  # the frames are all in; the reader now waits on the silent connection (timeout: 10 s)
    asked = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - asked <= 2.0, stderr
    assert process.returncode == 130 and stderr.strip().splitlines() == ["streamseg: error: interrupted"]
    assert json.loads((out / "summary.json").read_text())["reason"] == "interrupted"


def test_show_without_a_display_fails_at_start_in_one_line(tmp_path, synth_clip):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    process = cli(synth_clip, "--show", "--out", tmp_path / "run", env=env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == ["streamseg: error: --show needs a display, and neither DISPLAY nor "
                                           "WAYLAND_DISPLAY is set"]
    assert not (tmp_path / "run").exists()


def test_standard_input_is_read_as_a_stream(tmp_path, synth_clip, tiny_checkpoint):
    out = tmp_path / "run"
    with open(synth_clip, "rb") as stdin:
        process = cli("-", "--out", out, "--model", tiny_checkpoint, "--quiet", stdin=stdin)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["frames_decoded"] == 40 and summary["source"]["path"] == "-"


def test_a_recording_on_a_web_server_is_read_like_a_file(tmp_path, synth_clip, tiny_checkpoint):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(synth_clip.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{web.server_address[1]}/{synth_clip.name}"
        source = open_source(url, build_config())
        try:
            assert isinstance(source, VideoSource)  # its own timestamps, every frame, no reconnecting at the end
        finally:
            source.close()
        run = Segmenter(build_config(model=str(tiny_checkpoint), score_threshold=0.05)).run(url, tmp_path / "run")
        assert [r.frame.index for r in run] == list(range(40))
        web.shutdown()


def test_q_in_the_window_ends_the_run_cleanly(tmp_path, synth_clip, tiny_checkpoint, monkeypatch):
    shown = []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(window.cv2, "namedWindow", lambda *args: None)
    monkeypatch.setattr(window.cv2, "imshow", lambda title, image: shown.append(image.shape))
    monkeypatch.setattr(window.cv2, "waitKey", lambda delay: ord("q") if len(shown) == 5 else -1)
    monkeypatch.setattr(window.cv2, "getWindowProperty", lambda *args: 1.0)
    monkeypatch.setattr(window.cv2, "destroyWindow", lambda title: None)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["segment", str(synth_clip), "--show", "--no-video", "--out", str(out),
                                      "--model", str(tiny_checkpoint), "--quiet"])
    assert result.exit_code == 0, result.output
    assert shown[0] == (180, 320, 3) and 5 <= len(shown) < 40  # overlays shown although no video is written
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["stopped_by"] == "q pressed in the window"
    assert summary["run"]["frames_decoded"] < 40 and not (out / "overlay.mp4").exists()
