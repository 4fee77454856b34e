"""End to end: `streamseg segment` on synthetic and real clips, and every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import streamseg
from streamseg.formats import decode_masks, read_records

from .conftest import opencv_clip

LOW = ["--score-threshold", "0.05"]  # the tiny test model is untrained: low scores are all it has


def run_cli(*args, cwd=None):
    """The installed entry point in a real process: exit codes and stderr as a user sees them."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "streamseg", *map(str, args)], capture_output=True, text=True, encoding="utf-8",
                          cwd=cwd, env=env, timeout=300)


def probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
    return codec, pix_fmt, times


def test_segment_end_to_end(tmp_path, synth_clip, tiny_checkpoint):
    out = tmp_path / "run"
    result = run_cli("segment", synth_clip, "--model", tiny_checkpoint, "--out", out, "--quiet", *LOW)
    assert result.returncode == 0, result.stderr
    _, _, in_times = probe(synth_clip)
    codec, pix_fmt, out_times = probe(out / "overlay.mp4")
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert len(out_times) == len(in_times) == 40
    assert np.allclose(out_times, in_times, atol=1e-3)

    records = list(read_records(out / "frames.jsonl"))
    assert [r["frame"] for r in records] == list(range(40))
    assert any(r["instances"] for r in records)
    for record in records:
        assert (record["width"], record["height"]) == (320, 180)
        assert abs(record["time"] - record["frame"] / 30) < 1e-3
        for obj in record["instances"]:
            assert (obj["id"] is None or obj["id"] >= 1) and obj["label"] in {"circle", "rectangle", "triangle"}
            mask = decode_masks([obj["mask"]], 180, 320)[0]
            assert mask.shape == (180, 320) and int(mask.sum()) == obj["area"]
            assert obj["score"] >= 0.05 and len(obj["box"]) == 4

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["source"]["codec"] == "h264" and summary["source"]["width"] == 320
    assert summary["run"]["frames_decoded"] == summary["run"]["frames_inferred"] == 40
    assert set(summary["run"]["stage_seconds"]) == {"decode", "infer", "postprocess", "track", "count", "render",
                                                        "encode", "write"}
    assert sum(summary["detections"].values()) == sum(len(r["instances"]) for r in records)
    assert summary["model"]["score_threshold"] == 0.05


def test_stride_keeps_every_frame_in_the_video(tmp_path, synth_clip, tiny_checkpoint):
    out = tmp_path / "run"
    result = run_cli("segment", synth_clip, "--model", tiny_checkpoint, "--out", out, "--stride", "3", "-q", *LOW)
    assert result.returncode == 0, result.stderr
    _, _, in_times = probe(synth_clip)
    _, _, out_times = probe(out / "overlay.mp4")
    assert np.allclose(out_times, in_times, atol=1e-3)
    assert [r["frame"] for r in read_records(out / "frames.jsonl")] == list(range(0, 40, 3))


def test_library_call_yields_every_frame_in_order(synth_clip, tiny_checkpoint):
    results = list(streamseg.segment(str(synth_clip), model=str(tiny_checkpoint), score_threshold=0.05, stride=2))
    assert [r.frame.index for r in results] == list(range(40))
    assert [r.inferred for r in results] == [i % 2 == 0 for i in range(40)]
    for r in results:
        assert r.instances.frame_index == r.frame.index - (r.frame.index % 2)


def test_existing_run_is_not_overwritten_without_asking(tmp_path, synth_clip, tiny_checkpoint):
    out = tmp_path / "run"
    args = ["segment", synth_clip, "--model", tiny_checkpoint, "--out", out, "-q", "--max-frames", "3", *LOW]
    assert run_cli(*args).returncode == 0
    again = run_cli(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert run_cli(*args, "--overwrite").returncode == 0
    assert len(list(read_records(out / "frames.jsonl"))) == 3


def test_the_default_model_says_once_what_it_knows(tmp_path, synth_clip):
    args = ["segment", synth_clip, "--out", tmp_path / "run", "--max-frames", "1", "--no-video"]
    told = run_cli(*args)
    assert told.returncode == 0, told.stderr
    assert told.stderr.count("note: the default model 'shapes' knows only the synthetic shapes") == 1
    assert "--model maskrcnn_resnet50_fpn_v2" in told.stderr
    assert "note:" not in run_cli(*args, "--overwrite", "--quiet").stderr


def test_vtest_first_30_frames(tmp_path, tiny_checkpoint):
    clip = opencv_clip("vtest.avi", tmp_path)
    out = tmp_path / "run"
    result = run_cli("segment", clip, "--model", tiny_checkpoint, "--out", out, "--max-frames", "30", "-q", *LOW)
    assert result.returncode == 0, result.stderr
    records = list(read_records(out / "frames.jsonl"))
    assert len(records) == 30 and (records[0]["width"], records[0]["height"]) == (768, 576)
    assert records[10]["time"] == pytest.approx(1.0, abs=1e-3)
    _, _, times = probe(out / "overlay.mp4")
    assert len(times) == 30 and times[29] == pytest.approx(2.9, abs=1e-3)


def test_box_mp4_whole(tmp_path, tiny_checkpoint):
    clip = opencv_clip("box.mp4", tmp_path)
    out = tmp_path / "run"
    result = run_cli("segment", clip, "--model", tiny_checkpoint, "--out", out, "-q", *LOW)
    assert result.returncode == 0, result.stderr
    _, _, in_times = probe(clip)
    _, _, out_times = probe(out / "overlay.mp4")
    assert len(out_times) == len(in_times)
    # box.mp4 stamps its B-frames out of order; sorted, they are the presentation times.
    assert np.allclose(out_times, np.sort(in_times) - min(in_times), atol=2e-3)
    assert len(list(read_records(out / "frames.jsonl"))) == len(in_times)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for i in range(4):
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture
def bad_inputs(tmp_path, synth_clip, tiny_checkpoint):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    foreign = tmp_path / "foreign.pt"
    import torch

    torch.save({"weights": torch.zeros(3)}, foreign)
    broken_toml = tmp_path / "broken.toml"
    broken_toml.write_text("stride = [\n")
    unknown_toml = tmp_path / "unknown.toml"
    unknown_toml.write_text("strid = 2\n")
    model = ["--model", tiny_checkpoint]
    return {
        "missing file": ([tmp_path / "missing.mp4", *model], "no such file"),
        "not a video": ([text, *model], "notes.mp4"),
        "no video stream": ([_audio_only(tmp_path / "audio.m4a"), *model], "no video stream"),
        "unknown model": ([synth_clip, "--model", "nosuchmodel"], "unknown model"),
        "foreign checkpoint": ([synth_clip, "--model", foreign], "not a streamseg checkpoint"),
        "malformed toml": ([synth_clip, *model, "--config", broken_toml], "not valid TOML"),
        "unknown toml key": ([synth_clip, *model, "--config", unknown_toml], "unknown setting strid"),
        "stride 0": ([synth_clip, *model, "--stride", "0"], "stride must be at least 1"),
        "bad line": ([synth_clip, *model, "--line", "1,2,3"], "give exactly x1,y1,x2,y2"),
        "zone untracked": ([synth_clip, *model, "--zone", "0,0,9,0,9,9", "--no-track"], "need tracking on"),
        "bad export": ([synth_clip, *model, "--export", "coco"], "unknown export format coco"),
    }


CASES = ["missing file", "not a video", "no video stream", "unknown model", "foreign checkpoint", "malformed toml",
         "unknown toml key", "stride 0", "bad line", "zone untracked", "bad export"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2(case, bad_inputs, tmp_path):
    args, message = bad_inputs[case]
    out = tmp_path / "out-of-bad-run"
    result = run_cli("segment", *args, "--out", out, "-q")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "summary.json").exists()
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_out(tmp_path, synth_clip, tiny_checkpoint):
    # Below a regular file nothing can be created, even by root (CI runs as root).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("segment", synth_clip, "--model", tiny_checkpoint, "--out", blocker / "run", "-q")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot write" in result.stderr


def test_help_is_complete():
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("segment", "synth", "train", "eval", "bench", "export", "export-model"):
        assert command in top.stdout
        sub = run_cli(command, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout
    seg = run_cli("segment", "--help").stdout
    for option in ("--model", "--weights", "--device", "--runtime", "--precision", "--score-threshold", "--mask-threshold", "--classes",
                   "--stride", "--max-frames", "--start", "--inference-size", "--no-video", "--no-json", "--quiet",
                   "--config", "--overwrite", "--out", "--mode", "--batch", "--streams", "--no-track", "--line",
                   "--zone", "--zone-overlap", "--export", "--trail"):
        assert option in seg, option
