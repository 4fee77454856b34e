import json

import pytest

from streamseg.bench import run_benchmark
from streamseg.config import build_config
from streamseg.errors import InputError

from .test_segment import run_cli

KEYS = {"device", "model", "frames", "decode_fps", "model_fps", "render_encode_fps", "sequential_fps", "async_fps",
        "async_over_sequential", "async_over_model", "forward_fps", "async_over_forward", "postprocess_ms", "peak_rss_mb"}


def test_benchmark_measures_every_stage(synth_clip, tiny_checkpoint):
    config = build_config(model=str(tiny_checkpoint), device="cpu", score_threshold=0.05)
    stages = []
    measured = run_benchmark(str(synth_clip), config, frames=12, report=stages.append)
    result = measured.to_dict()
    assert KEYS <= set(result) and measured.frames == 12 and measured.size == [320, 180]
    assert stages == ["decode", "model", "forward (async workers)", "render + encode", "pipeline (sequential)",
                      "pipeline (async)"]
    assert all(result[k] > 0 for k in ("decode_fps", "model_fps", "render_encode_fps", "sequential_fps", "async_fps"))
    assert result["async_over_sequential"] == pytest.approx(result["async_fps"] / result["sequential_fps"], rel=1e-2)
    assert result["async_over_model"] == pytest.approx(result["async_fps"] / result["model_fps"], rel=1e-2)
    assert result["async_over_forward"] == pytest.approx(result["async_fps"] / result["forward_fps"], rel=1e-2)
    assert result["forward_fps"] > 0 and result["postprocess_ms"] > 0
    assert result["peak_rss_mb"] == measured.asynchronous.peak_rss_mb > 0 and measured.peak_gpu_mb is None
    assert set(result["stage_seconds"]["async"]) >= {"decode", "infer", "render", "encode"}


def test_bench_command_writes_json(tmp_path, synth_clip, tiny_checkpoint):
    out = tmp_path / "bench.json"
    result = run_cli("bench", synth_clip, "--model", tiny_checkpoint, "--device", "cpu", "--frames", "8",
                     "--json", out)
    assert result.returncode == 0, result.stderr
    assert "pipeline async" in result.stdout
    assert KEYS <= set(json.loads(out.read_text()))


def test_too_few_frames_is_refused(synth_clip, tiny_checkpoint):
    with pytest.raises(InputError, match="--frames"):
        run_benchmark(str(synth_clip), build_config(model=str(tiny_checkpoint)), frames=2)
