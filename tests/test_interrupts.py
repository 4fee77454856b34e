"""A running `streamseg segment` stopped by SIGINT, SIGTERM or SIGKILL keeps what it wrote."""

import json
import os
import signal
import subprocess
import sys
import time

import av
import pytest

from streamseg.formats import read_records
from streamseg.synth import write_clip


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Long enough (600 frames) that the tiny model is still busy when the signal comes."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_clip(path, frames=600, width=320, height=180, seed=21, objects=4)
    return path


def start_run(clip, checkpoint, out):
    command = [sys.executable, "-m", "streamseg", "segment", str(clip), "--model", str(checkpoint), "--out", str(out),
               "--score-threshold", "0.05", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    jsonl, deadline = out / "frames.jsonl", time.monotonic() + 120
    # Signal once the run is really under way: some lines written, the video started.
    while time.monotonic() < deadline and process.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 30:
            return process
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the run did not get going (exit {process.poll()}): {process.stderr.read()}")


def decoded_frames(path):
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_finalizes_every_output(tmp_path, long_clip, tiny_checkpoint, signum):
    out = tmp_path / "run"
    process = start_run(long_clip, tiny_checkpoint, out)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["streamseg: error: interrupted"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["reason"] == "interrupted"
    records = list(read_records(out / "frames.jsonl"))
    assert 30 <= len(records) < 600 and [r["frame"] for r in records] == list(range(len(records)))
    assert summary["run"]["frames_inferred"] >= len(records)
    assert decoded_frames(out / "overlay.mp4") >= 30  # finalized: every frame handed to the encoder is there


def test_sigkill_leaves_a_playable_video_and_valid_lines(tmp_path, long_clip, tiny_checkpoint):
    out = tmp_path / "run"
    process = start_run(long_clip, tiny_checkpoint, out)
    time.sleep(2.5)  # past the first 2-second fragment of video
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    lines = (out / "frames.jsonl").read_text().splitlines()
    complete = [json.loads(line) for line in lines[:-1]]  # the last line may be cut mid-write
    assert [r["frame"] for r in complete] == list(range(len(complete))) and len(complete) >= 30
    assert decoded_frames(out / "overlay.mp4") >= 30  # fragments written so far decode
    assert not (out / "summary.json").exists()  # no summary pretends the run completed


def test_sigint_ends_a_run_started_in_the_background_of_a_script(tmp_path, long_clip, tiny_checkpoint):
    # A non-interactive shell starts background jobs with SIGINT ignored; Python then installs no Ctrl-C
    # handler of its own, so streamseg must install one.
    out = tmp_path / "run"
    command = " ".join([sys.executable, "-m", "streamseg", "segment", str(long_clip), "--model", str(tiny_checkpoint),
                        "--out", str(out), "--score-threshold", "0.05", "--quiet"])
    script = subprocess.Popen(["bash", "-c", f"{command} 2>{tmp_path / 'stderr'} & echo $!; wait $!; echo exit $?"],
                              stdout=subprocess.PIPE, text=True, encoding="utf-8")
    pid = int(script.stdout.readline())
    jsonl, deadline = out / "frames.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n") >= 30):
        time.sleep(0.05)
    os.kill(pid, signal.SIGINT)
    rest, _ = script.communicate(timeout=60)
    assert rest.strip() == "exit 130", (tmp_path / "stderr").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["reason"] == "interrupted"
    assert decoded_frames(out / "overlay.mp4") >= 30
