"""Live sources with injected connections: dropping, keeping, reconnecting, credentials, names."""

import socket
import threading
import time

import numpy as np
import pytest

from streamseg.config import build_config
from streamseg.errors import InputError
from streamseg.sources import live, open_source, run_name
from streamseg.sources.capture import ConnectionLost, StreamCapture, is_live, redact
from streamseg.sources.live import LiveOptions, LiveSource
from streamseg.stages import Stage, Stages
from tests.helpers_video import write_avi


class FakeCapture:
    """A connection that delivers ``frames`` numbered pictures, ``interval`` seconds apart, then ends or fails."""

    container, codec, fps = "fake", "rawvideo", 30.0

    def __init__(self, frames, interval=0.0, size=(64, 48), fail=False, start=0):
        self.frames, self.interval, self.size, self.fail = frames, interval, size, fail
        self.sent = start
        self.end = start + frames
        self.closed = False

    def read(self):
        if self.sent >= self.end:
            if self.fail:
                raise ConnectionLost("connection reset by peer")
            return None
        time.sleep(self.interval)
        image = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        image[0, 0, 0] = self.sent % 256  # which picture this is
        self.sent += 1
        return image

    def close(self):
        self.closed = True


def source(connections, **options):
    """A LiveSource whose successive connections are ``connections`` (a ConnectionLost instance fails that try)."""
    pending = list(connections)

    def connect():
        attempt = pending.pop(0) if pending else ConnectionLost("refused")
        if isinstance(attempt, Exception):
            raise attempt
        return attempt

    return LiveSource("tcp://cam.local:9000", LiveOptions(**options), connect=connect)


def test_low_latency_keeps_only_the_newest_frame_and_counts_the_rest():
    live_source = source([FakeCapture(200, interval=0.001)], reconnect=False, latency="low")
    seen = []
    for frame in live_source:
        seen.append(frame)
        time.sleep(0.02)  # a consumer 20x slower than the stream
    live_source.close()
    indices = [f.index for f in seen]
    assert indices == sorted(indices) and len(indices) < 100
    assert live_source.dropped > 100
    # Every received frame is either yielded or counted as dropped before a yielded one.
    assert sum(f.dropped_before for f in seen) + len(seen) == 200
    assert all(f.index - prev.index - 1 == f.dropped_before for prev, f in zip(seen, seen[1:]))
    assert all(b.time > a.time and b.pts > a.pts for a, b in zip(seen, seen[1:]))


def test_complete_keeps_every_frame_however_slow_the_consumer():
    live_source = source([FakeCapture(150)], reconnect=False, latency="complete")
    seen = []
    for frame in live_source:
        seen.append(frame.index)
        time.sleep(0.002)
    live_source.close()
    assert seen == list(range(150)) and live_source.dropped == 0


def test_reconnects_with_backoff_and_reports_the_outage(monkeypatch):
    monkeypatch.setattr(live, "FIRST_RETRY", 0.01)
    first = FakeCapture(10, fail=True)
    second = FakeCapture(100, size=(32, 24), start=100)  # comes back at another size
    live_source = source([first, ConnectionLost("refused"), ConnectionLost("refused"), second],
                         latency="complete", reconnect=True, reconnect_max=0.02)
    seen = []
    for frame in live_source:
        seen.append(frame)
        if len(seen) == 20:
            break
    live_source.close()
    assert [f.image[0, 0, 0] for f in seen] == list(range(10)) + list(range(100, 110))
    assert all(f.image.shape == (48, 64, 3) for f in seen)  # resized to the first connection's size
    assert first.closed
    (outage,) = live_source.outages
    assert outage["reason"] == "connection reset by peer" and outage["attempts"] == 3 and outage["gap_seconds"] > 0
    assert seen[10].events == [outage] and not any(f.events for f in seen[:10] + seen[11:])
    assert live_source.report().outages == [outage]


def test_without_reconnect_the_end_of_the_stream_ends_the_source():
    live_source = source([FakeCapture(5), FakeCapture(5)], reconnect=False, latency="complete")
    assert len(list(live_source)) == 5 and live_source.outages == []


def test_duration_ends_a_source_that_never_ends():
    live_source = source([FakeCapture(10**6, interval=0.005)], reconnect=False, latency="low", duration=0.3)
    started = time.monotonic()
    frames = list(live_source)
    live_source.close()
    assert 0.25 < time.monotonic() - started < 2 and frames and frames[-1].time < 0.3


def test_stop_ends_iteration_while_the_stream_is_down(monkeypatch):
    monkeypatch.setattr(live, "FIRST_RETRY", 0.01)
    live_source = source([FakeCapture(3, fail=True)], reconnect=True, latency="low", reconnect_max=0.05)
    threading.Timer(0.3, live_source.stop).start()
    started = time.monotonic()
    frames = list(live_source)
    live_source.close()
    assert len(frames) >= 1 and time.monotonic() - started < 3
    assert live_source.outages and live_source.outages[0]["gap_seconds"] is None  # still down when stopped


def test_a_dead_address_fails_at_open_with_the_password_hidden():
    url = "rtsp://admin:hunter2@192.0.2.1/stream"

    def refuse():
        raise ConnectionLost(f"Connection refused: '{url}'")

    with pytest.raises(InputError) as caught:
        LiveSource(url, LiveOptions(), connect=refuse)
    assert "hunter2" not in str(caught.value) and "admin:***@192.0.2.1" in str(caught.value)


def test_a_stream_that_ends_before_its_first_frame_is_an_input_error():
    with pytest.raises(InputError, match="ended before its first frame"):
        source([FakeCapture(0)], reconnect=False)


@pytest.mark.parametrize("spec, expected", [
    ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
    ("http://user:p%40ss@example.com/index.m3u8", "http://user:***@example.com/index.m3u8"),
    ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ("clip.mp4", "clip.mp4"),
])
def test_redact_hides_passwords_only(spec, expected):
    assert redact(spec) == expected


def test_sources_are_told_apart():
    assert all(is_live(s) for s in ("cam:0", "/dev/video2", "rtsp://h/x", "RTMP://h/x", "udp://@:5000", "srt://h:1",
                                     "https://h/index.m3u8", "tcp://127.0.0.1:5000"))
    assert not any(is_live(s) for s in ("clip.mp4", "-", "/dev/null", "file:clip.mp4", "runs/cam:0.mp4"))
    assert [run_name(s) for s in ("cam:0", "-", "rtsp://u:p@10.0.0.5:554/live/ch1.sdp", "clips/a.b.mp4")] == \
        ["cam0", "stdin", "10.0.0.5-ch1", "a.b"]


@pytest.mark.parametrize("settings, message", [
    ({"latency": "fast"}, "latency must be low or complete"),
    ({"camera_size": "big"}, "camera_size must look like"),
    ({"reconnect_max": 0}, "reconnect_max must be a positive"),
    ({"duration": -1}, "duration must be a positive"),
])
def test_live_settings_are_checked(settings, message):
    with pytest.raises(InputError, match=message):
        build_config(**settings)


def test_low_latency_is_refused_for_a_file_and_start_for_a_stream(synth_clip):
    with pytest.raises(InputError, match="latency low is for cameras and network streams"):
        open_source(synth_clip, build_config(latency="low"))
    with pytest.raises(InputError, match="start applies to files"):
        open_source("tcp://127.0.0.1:9", build_config(start=2.0))


@pytest.mark.parametrize("pull", [True, False])
def test_pull_mode_takes_an_item_only_when_a_worker_is_free(pull):
    pulled = 0

    def items():
        nonlocal pulled
        for item in range(30):
            pulled += 1
            yield item

    ahead = []  # items taken from the source beyond the one a worker starts on

    def work(item):
        ahead.append(pulled - item - 1)
        time.sleep(0.01)
        return item

    out = list(Stages(items(), [Stage("work", work, workers=2), Stage("after", lambda x: x)], queue_size=4, pull=pull))
    assert out == list(range(30))
    if pull:
        assert max(ahead) <= 1  # at most the one the other worker is on
    else:
        assert max(ahead) >= 4  # the source runs ahead by the queue: what pull mode prevents


def test_a_stream_whose_tag_is_not_utf8_opens_and_reads(tmp_path):
    # A camera or server may name itself in another encoding: its tag must not fail the connection.
    data = bytearray(write_avi(tmp_path / "clip.avi", 5).read_bytes())
    tag = data.index(b"Lavf")
    data[tag:tag + 2] = b"\xd0\xff"
    (tmp_path / "tagged.avi").write_bytes(data)
    connection = StreamCapture(str(tmp_path / "tagged.avi"))
    try:
        assert connection.read().shape == (48, 64, 3)
    finally:
        connection.close()


def test_a_silent_server_times_out_instead_of_hanging():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never sends a byte
        started = time.monotonic()
        with pytest.raises(InputError, match=r"cannot open stream \(no data for 1 s\)"):
            LiveSource(f"tcp://127.0.0.1:{silent.getsockname()[1]}", LiveOptions(timeout=1.0))
        assert time.monotonic() - started < 5
