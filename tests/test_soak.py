"""The short soak: 2,000 frames through the whole pipeline without growing memory, threads or tracks."""

import importlib.util
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def test_two_thousand_frames_keep_memory_threads_and_tracks_bounded():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.soak(2000)  # the shipped model: real detections, so tracks come and go

    assert result["jsonl_lines"] == 2000
    assert result["rss_growth_mb"] < 50, result
    assert len(result["thread_counts_after_warmup"]) == 1, result  # no thread leaks or pile-ups
    assert 0 < result["most_live_tracks"] <= 40, result  # tracks start, and lost ones expire
    assert result["objects_counted"] > result["most_live_tracks"]
