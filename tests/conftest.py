"""Shared fixtures: a tiny untrained model checkpoint and small synthetic clips, made once per session."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

from streamseg.models import build_compact, save_checkpoint
from streamseg.synth import CLASS_NAMES, write_clip

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")

# Small enough to run a frame in a few milliseconds; untrained, so tests use a low score threshold.
TINY_CONFIG = {
    "widths": [8, 16, 16, 16],
    "blocks": [1, 1, 1, 1],
    "fpn_channels": 16,
    "box_head": 32,
    "mask_head": [16],
    "min_size": 160,
    "train_min_sizes": [160],
    "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20,
    "detections_per_img": 5,
}


@pytest.fixture(scope="session", autouse=True)
def runtime_cache(tmp_path_factory) -> Path:
    """The OpenVINO runtime's exported models, for this session only (never the user's ~/.cache), shared
    by its tests and the commands they run."""
    path = tmp_path_factory.mktemp("cache")
    before = os.environ.get("STREAMSEG_CACHE_DIR")
    os.environ["STREAMSEG_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        del os.environ["STREAMSEG_CACHE_DIR"]
    else:
        os.environ["STREAMSEG_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_compact(len(CLASS_NAMES), TINY_CONFIG)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_checkpoint(path, model, "compact", TINY_CONFIG, CLASS_NAMES, {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def synth_clip(tmp_path_factory) -> Path:
    """40 frames, 320x180, 30 fps, with its GT file beside it."""
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_clip(path, frames=40, width=320, height=180, seed=7, objects=4)
    return path


def opencv_clip(name: str, tmp_path: Path) -> Path:
    """A clip from Debian's opencv-doc (gunzipped into tmp_path when needed); skips when absent."""
    for candidate in (OPENCV_DATA / name, OPENCV_HTML / name, OPENCV_HTML / f"{name}.gz"):
        if candidate.exists():
            if candidate.suffix != ".gz":
                return candidate
            target = tmp_path / name
            with gzip.open(candidate) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            return target
    pytest.skip(f"{name} not installed (apt-get install opencv-doc)")
