"""The forward pass in torch and in OpenVINO: the same detections, the cache, the fallback, and export-model."""

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import openvino
import pytest
import torch

from streamseg import runtimes
from streamseg.config import SegmentConfig
from streamseg.engine import Predictor
from streamseg.errors import InputError, ModelError
from streamseg.instances import Frame, Instances
from streamseg.models import load_model
from streamseg.pipeline import Segmenter
from streamseg.runtimes import openvino_runtime
from streamseg.runtimes.agreement import compare
from streamseg.runtimes.deploy import export_model
from streamseg.runtimes.openvino_runtime import OpenVinoRuntime
from streamseg.runtimes.torch_runtime import TorchRuntime
from streamseg.sources import open_source

from .test_segment import run_cli

DEMO = Path(__file__).resolve().parents[1] / "samples" / "demo.mp4"
LOW = 0.05  # the tiny test model is untrained: low scores are all it has


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes", device="cpu")


@pytest.fixture(scope="module")
def demo_frames():
    with open_source(str(DEMO)) as video:
        return [frame for frame, _ in zip(video, range(6))]


def _said(caplog, level=logging.INFO):
    """What streamseg logged at ``level`` or above."""
    return [r.message for r in caplog.records if r.name.startswith("streamseg") and r.levelno >= level]


def _frame(height, width, seed=0):
    return Frame(0, 0.0, np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_agreement_forgives_a_moved_edge_not_a_changed_interior():
    def one(mask):
        ys, xs = np.nonzero(mask)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        return Instances.from_masks(boxes=box, scores=np.ones(1, np.float32), class_ids=np.ones(1, np.int64),
                                    masks=mask[None])
    small = np.zeros((40, 40), bool)
    small[10:17, 10:17] = True  # 49 pixels: one pixel less is IoU 0.98
    edge, hole = small.copy(), small.copy()
    edge[10, 10] = False
    hole[13, 13] = False
    moved = compare([(one(small), one(edge))])
    assert moved.min_mask_iou < 0.99 and moved.off_edge_pixels == 0 and moved.identical
    holed = compare([(one(small), one(hole))])
    assert holed.off_edge_pixels == 1 and not holed.identical


def test_openvino_gives_torchs_detections_on_the_demo_clip(tmp_path, shapes):
    found = {}
    for runtime in ("torch", "openvino"):
        config = SegmentConfig(device="cpu", runtime=runtime, max_frames=6, track=False, video=False, json=False)
        run = Segmenter(config, shapes).run(str(DEMO))
        found[runtime] = [result.instances for result in run]
        assert run.summary.to_dict()["model"]["runtime"] == runtime and run.summary.to_dict()["model"]["precision"] == "fp32"
    agreement = compare(zip(found["openvino"], found["torch"]))
    assert agreement.identical, agreement
    assert sum(len(f) for f in found["torch"]) >= 20  # the clip's objects, not empty frames agreeing


@pytest.mark.parametrize("height, width", [(300, 200), (1080, 1920), (641, 359)])
def test_any_frame_size_runs_as_in_torch(shapes, demo_frames, height, width):
    # 300x200 at input 288 is where a traced float32 resize came out a pixel short and moved every box.
    frame = Frame(0, 0.0, cv2.resize(demo_frames[0].image, (width, height)))
    openvino_found = Predictor(shapes, runtime="openvino").predict([frame])
    torch_found = Predictor(shapes, runtime="torch").predict([frame])
    agreement = compare(zip(openvino_found, torch_found))
    assert agreement.identical and len(torch_found[0]) > 0, agreement


@pytest.mark.parametrize("height, width", [(1, 1), (96, 160)])
def test_a_frame_without_objects_has_no_detections(shapes, height, width):
    # Traced torchvision NMS has a branch for no boxes that OpenVINO turned into one detection of garbage.
    raw = Predictor(shapes, runtime="openvino").forward([Frame(0, 0.0, np.full((height, width, 3), 128, np.uint8))])[0]
    assert len(raw.scores) == len(raw.boxes) == len(raw.labels) == len(raw.mask_probs) == 0


def test_a_batch_runs_frame_by_frame(tiny_checkpoint):
    predictor = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=LOW, runtime="openvino")
    frames = [_frame(96, 160, seed) for seed in range(3)]
    together = predictor.predict(frames)
    assert compare(zip(together, [predictor.predict([f])[0] for f in frames])).identical


def test_prepared_frame_sizes_get_a_static_graph_up_to_a_limit_with_the_same_detections(tiny_checkpoint,
                                                                                         monkeypatch):
    monkeypatch.setattr(openvino_runtime, "STATIC_SHAPES", 2)
    model = load_model(str(tiny_checkpoint), device="cpu")
    predictor = Predictor(model, score_threshold=LOW, runtime="openvino")
    reference = Predictor(model, score_threshold=LOW, runtime="torch")
    frames = [_frame(96, 160, 0), _frame(120, 90, 2), _frame(64, 200, 3)]
    before = [predictor.predict([frame])[0] for frame in frames]  # the dynamic graph
    for frame in frames:
        predictor.prepare(*frame.image.shape[:2])
    after = [predictor.predict([frame])[0] for frame in frames]  # static graphs for the first two sizes
    expected = [reference.predict([frame])[0] for frame in frames]
    assert compare(zip(before + after, expected + expected)).identical and sum(len(f) for f in after) > 0
    static = predictor.runtime._by_shape
    assert sorted(static) == [(96, 160, 3), (120, 90, 3)]  # the third size stays in the dynamic graph
    assert all(compiled.inputs[0].get_partial_shape().is_static for compiled in static.values())


def test_a_run_of_a_file_prepares_the_size_the_model_sees(tmp_path, synth_clip, tiny_checkpoint):
    config = SegmentConfig(model=str(tiny_checkpoint), device="cpu", runtime="openvino", max_frames=2, video=False)
    segmenter = Segmenter(config)
    list(segmenter.run(str(synth_clip), tmp_path / "run"))
    # 320x180 frames at the tiny model's input 160: shrunk to 284x160 before the graph
    assert list(segmenter.predictor.runtime._by_shape) == [(160, 284, 3)]
    assert segmenter.predictor.runtime._dynamic is None  # never compiled: it held 80-100 MB at 1080p


def test_the_dynamic_graph_is_compiled_for_any_size_asked_for_or_first_needed(tiny_checkpoint):
    model = load_model(str(tiny_checkpoint), device="cpu")
    live = Predictor(model, score_threshold=LOW, runtime="openvino")
    assert live.runtime._dynamic is None
    live.prepare()  # a live source's run: before its first frame, for frames of any size
    assert live.runtime._dynamic is not None and not live.runtime._dynamic.inputs[0].get_partial_shape().is_static
    unprepared = Predictor(model, score_threshold=LOW, runtime="openvino")
    found = unprepared.predict([_frame(96, 160, 0)])[0]
    assert unprepared.runtime._dynamic is not None
    assert compare([(found, live.predict([_frame(96, 160, 0)])[0])]).identical


def test_the_cache_is_built_once_then_used(tmp_path, tiny_checkpoint, caplog, monkeypatch):
    model = load_model(str(tiny_checkpoint), device="cpu")
    with caplog.at_level(logging.INFO, "streamseg.runtimes"):
        first = Predictor(model, score_threshold=LOW, runtime="openvino", cache_dir=tmp_path)
    assert [r.message for r in caplog.records if "exporting" in r.message] != []  # announced
    entry = first.runtime.entry
    assert entry.parent == tmp_path / "openvino" and (entry / "manifest.json").is_file()

    def no_export(*args):
        raise AssertionError("exported again although cached")

    monkeypatch.setattr(openvino_runtime, "export_onnx", no_export)
    caplog.clear()
    with caplog.at_level(logging.INFO, "streamseg.runtimes"):
        again = Predictor(model, score_threshold=LOW, runtime="openvino", cache_dir=tmp_path)
    assert _said(caplog) == [] and again.runtime.entry == entry
    frame = _frame(96, 160)
    assert compare([(again.predict([frame])[0], first.predict([frame])[0])]).identical


def test_the_cache_key_holds_what_the_graph_bakes_in(tmp_path, tiny_checkpoint):
    model = load_model(str(tiny_checkpoint), device="cpu")
    other_weights = load_model(str(tiny_checkpoint), weights="random", device="cpu")
    base = Predictor(model, score_threshold=LOW, runtime="torch").graph
    key = openvino_runtime.cache_key(base, model)
    assert openvino_runtime.cache_key(Predictor(model, score_threshold=LOW, runtime="torch").graph, model) == key
    for graph, loaded in [(Predictor(model, score_threshold=0.3, runtime="torch").graph, model),
                          (Predictor(model, score_threshold=LOW, inference_size=128, runtime="torch").graph, model),
                          (Predictor(other_weights, score_threshold=LOW, runtime="torch").graph, other_weights)]:
        assert openvino_runtime.cache_key(graph, loaded) != key


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory, tiny_checkpoint):
    """A cache with one entry, for the tiny model at a low threshold."""
    cache = tmp_path_factory.mktemp("built-cache")
    Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=LOW, runtime="openvino", cache_dir=cache)
    return cache


@pytest.mark.parametrize("damage", ["truncated bin", "truncated xml", "garbage manifest", "missing bin"])
def test_a_damaged_cache_is_rebuilt_with_one_line(tmp_path, built_cache, tiny_checkpoint, caplog, damage):
    cache = Path(shutil.copytree(built_cache, tmp_path / "cache"))
    (entry,) = (cache / "openvino").iterdir()
    name = {"truncated bin": "model.bin", "truncated xml": "model.xml", "garbage manifest": "manifest.json",
            "missing bin": "model.bin"}[damage]
    if damage == "missing bin":
        (entry / name).unlink()
    else:
        (entry / name).write_bytes((entry / name).read_bytes()[:100])
    model = load_model(str(tiny_checkpoint), device="cpu")
    with caplog.at_level(logging.WARNING, "streamseg.runtimes"):
        rebuilt = Predictor(model, score_threshold=LOW, runtime="openvino", cache_dir=cache)
    warnings = _said(caplog, logging.WARNING)
    assert len(warnings) == 1 and "damaged" in warnings[0] and "rebuilding" in warnings[0], warnings
    assert rebuilt.runtime.entry == entry and (entry / name).stat().st_size > 100
    frame = _frame(96, 160)
    reference = Predictor(model, score_threshold=LOW, runtime="torch").predict([frame])[0]
    assert len(reference) > 0 and compare([(rebuilt.predict([frame])[0], reference)]).identical


def test_auto_falls_back_to_torch_without_openvino(tiny_checkpoint, caplog, monkeypatch):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    model = load_model(str(tiny_checkpoint), device="cpu")
    with caplog.at_level(logging.INFO, "streamseg.runtimes"):
        predictor = Predictor(model, score_threshold=LOW)
    assert isinstance(predictor.runtime, TorchRuntime)
    assert _said(caplog) == [
        "OpenVINO is not installed: running on torch, about half as fast on CPU (pip install 'streamseg[openvino]')"]
    with pytest.raises(ModelError, match=r"pip install 'streamseg\[openvino\]'"):
        Predictor(model, runtime="openvino")


def test_auto_falls_back_to_torch_when_openvino_fails_and_the_run_goes_on(tmp_path, synth_clip, tiny_checkpoint,
                                                                            caplog, monkeypatch):
    def broken(*args):
        raise RuntimeError("Exception from src/frontends/onnx: unsupported operation\nmore detail")

    monkeypatch.setattr(openvino_runtime, "export_onnx", broken)
    monkeypatch.setenv("STREAMSEG_CACHE_DIR", str(tmp_path / "cache"))  # nothing cached: it must export
    config = SegmentConfig(model=str(tiny_checkpoint), device="cpu", score_threshold=LOW, max_frames=3, video=False)
    with caplog.at_level(logging.INFO, "streamseg.runtimes"):
        run = Segmenter(config).run(str(synth_clip), tmp_path / "run")
        assert sum(1 for _ in run) == 3
    assert _said(caplog, logging.WARNING) == [
        "tiny cannot run in OpenVINO (Exception from src/frontends/onnx: unsupported operation); running on torch"]
    assert run.summary.to_dict()["complete"] and run.summary.to_dict()["model"]["runtime"] == "torch"
    with pytest.raises(ModelError, match="tiny cannot run in OpenVINO"):
        Predictor(load_model(str(tiny_checkpoint), device="cpu"), runtime="openvino")


def test_auto_runs_torchvision_models_in_torch_on_the_cpu(monkeypatch):
    exported = []
    monkeypatch.setattr(openvino_runtime, "export_onnx", lambda *args: exported.append(args))
    model = load_model("maskrcnn_resnet50_fpn", weights="random", device="cpu")
    assert isinstance(Predictor(model, inference_size=96).runtime, TorchRuntime) and not exported


def test_runtime_and_precision_settings_are_checked():
    for settings in ({"runtime": "tensorrt"}, {"precision": "fp16"}, {"runtime": "torch", "precision": "bf16"}):
        with pytest.raises(InputError):
            SegmentConfig(**settings)


def test_bf16_runs_where_the_cpu_has_it_and_says_so_where_not(tiny_checkpoint, caplog):
    has_bf16 = "BF16" in openvino_runtime.openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    with caplog.at_level(logging.WARNING, "streamseg.runtimes"):
        predictor = Predictor(load_model(str(tiny_checkpoint), device="cpu"), runtime="openvino", precision="bf16")
    assert predictor.describe()["precision"] == ("bf16" if has_bf16 else "fp32")
    assert _said(caplog) == ([] if has_bf16 else ["this CPU cannot run bf16 in OpenVINO; running fp32"])


def test_the_pipeline_gives_openvino_a_stream_per_worker(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr("streamseg.pipeline.usable_cpus", lambda: 2)
    monkeypatch.setattr(openvino_runtime, "usable_cpus", lambda: 2)
    for mode, streams in (("async", 2), ("sequential", 1)):
        segmenter = Segmenter(SegmentConfig(model=str(tiny_checkpoint), device="cpu", runtime="openvino", mode=mode))
        assert isinstance(segmenter.predictor.runtime, OpenVinoRuntime)
        assert (segmenter.predictor.describe()["streams"], segmenter.predictor.describe()["threads"]) == (streams, 2)


THREADS_SCRIPT = """
import gc, os, signal, sys, threading
import numpy as np
import openvino
from streamseg.engine import Predictor
from streamseg.instances import Frame, Instances
from streamseg.models import load_model
signal.signal(signal.SIGUSR1, lambda *args: None)
model = load_model(sys.argv[1], device="cpu")
held = [Predictor(model, runtime="openvino", score_threshold=0.05),
        Predictor(model, runtime="openvino", score_threshold=0.05, workers=6)]
frame = Frame(0, 0.0, np.zeros((96, 160, 3), np.uint8))
together = threading.Barrier(6)
def first_call():
    together.wait()
    openvino.Type.u8.to_dtype()  # what an inference's first call does first, here with no other work around it
    held[1].forward([frame])
workers = [threading.Thread(target=first_call) for _ in range(6)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
held.pop(0)
gc.collect()
releaser = threading.Thread(target=lambda: (held.clear(), gc.collect()))
releaser.start()
releaser.join()
os.kill(os.getpid(), signal.SIGUSR1)
print("alive")
"""


def test_openvino_in_threads_neither_deadlocks_nor_crashes(tiny_checkpoint):
    # Six threads' first inference at once deadlocked in OpenVINO's Python binding about half the time
    # (in its lazily built table of element types, which making a runtime now builds);
    # a CPU plugin released in another thread than its creator's unmapped that thread's signal stack,
    # and the next signal killed the process. Two processes, so that a deadlock's chance shows.
    processes = [subprocess.Popen([sys.executable, "-c", THREADS_SCRIPT, str(tiny_checkpoint)], text=True, encoding="utf-8",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for process in processes:
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("deadlocked")
        assert process.returncode == 0 and "alive" in out, err[-2000:]


def test_the_shipped_model_exports_to_onnx_that_onnx_runtime_runs(tmp_path, shapes, demo_frames):
    description = export_model(shapes, "onnx", tmp_path)
    assert description["checked"]["identical"] and description["checked"]["detections"] > 0, description["checked"]
    assert description["checked"]["with"].startswith("onnxruntime")
    assert json.loads((tmp_path / "model.json").read_text()) == description
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    frame = demo_frames[0]
    boxes, scores, labels, mask_probs = session.run(None, {"image": frame.image})
    reference = Predictor(shapes, runtime="torch").runtime.forward([frame])[0]  # the graph, whole frames in
    assert np.array_equal(labels, reference.labels.numpy()) and mask_probs.shape[1:] == (28, 28)
    assert np.abs(boxes - reference.boxes.numpy()).max() < 0.01
    assert np.abs(scores - reference.scores.numpy()).max() < 1e-4


def test_a_torchvision_model_exports_to_openvino(tmp_path):
    torch.manual_seed(0)
    model = load_model("maskrcnn_resnet50_fpn", weights="random", device="cpu")
    # Untrained heads give every class the same score; scaled up, scores spread out, so that there are
    # detections, in a well-defined order, to compare.
    model.module.roi_heads.box_predictor.cls_score.weight.data *= 300
    description = export_model(model, "openvino", tmp_path, input_size=96, score_threshold=0.3)
    assert description["checked"]["identical"] and description["checked"]["detections"] > 0, description["checked"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.json", "model.xml"]
    compiled = openvino.Core().compile_model(tmp_path / "model.xml", "CPU")
    assert all(name in output.names for name, output in zip(["boxes", "scores", "labels", "mask_probs"],
                                                             compiled.outputs, strict=True))
    assert description["classes"][1] == "person" and description["settings"]["min_size"] == [96]


def test_export_model_command(tmp_path, tiny_checkpoint):
    done = run_cli("export-model", tiny_checkpoint, "--format", "openvino", "--out", tmp_path / "out",
                   "--score-threshold", str(LOW))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "out" / name) for name in ("model.xml", "model.bin", "model.json")]
    assert "checked against torch with openvino" in done.stderr and "the same ones" in done.stderr
    with pytest.raises(InputError, match=r"unknown model format 'tflite' \(known: onnx, openvino\)"):
        export_model(load_model(str(tiny_checkpoint), device="cpu"), "tflite", tmp_path / "bad")


def test_asking_for_openvino_without_it_is_one_line_exit_2(tmp_path, synth_clip, tiny_checkpoint):
    script = ("import sys; import streamseg.runtimes as r; r.openvino_installed = lambda: False; "
              "from streamseg.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", script, "segment", str(synth_clip), "--model", str(tiny_checkpoint),
                           "--out", str(tmp_path / "run"), "--runtime", "openvino", "--quiet"],
                          capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == ("streamseg: error: the openvino runtime needs OpenVINO and ONNX, which are not "
                                   "installed: pip install 'streamseg[openvino]'")
