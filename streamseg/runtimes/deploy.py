"""``streamseg export-model``: the runtime's exported graph, written out for other runtimes and checked.

The graph is :class:`~streamseg.runtimes.graph.FrameGraph`'s: a decoded frame in, detections with
boxes in its pixels and 28x28-style mask probabilities out. ``model.json`` beside it says so, with the
class names and the settings the graph holds, and how the export compared with torch on sample
frames (ONNX Runtime where installed, else OpenVINO).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..engine import Predictor
from ..errors import InputError, ModelError, OutputError
from ..models.registry import LoadedModel
from ..sinks import write_json_atomic
from . import INSTALL_HINT, openvino_installed
from .agreement import compare
from .base import RawDetections
from .graph import OUTPUTS, export_onnx, sample_frames

FORMATS = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
DESCRIPTION = "model.json"
CONTRACT = {
    "input": {"image": "uint8 (height, width, 3): one RGB frame, any height and width"},
    "outputs": {
        "boxes": "float32 (N, 4): x0, y0, x1, y1 in the frame's pixels",
        "scores": "float32 (N,): at least the score threshold, highest first within each class",
        "labels": "int64 (N,): index into classes",
        "mask_probs": "float32 (N, M, M): mask probabilities over each box; resize into the box, threshold at 0.5",
    },
    "not_in_graph": "streamseg then drops detections that overlap one of another class (NMS at IoU 0.7) and "
                    "fragments of surer masks",
}

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]


def export_model(model: LoadedModel, fmt: str, out: Path, input_size: int | None = None,
                 score_threshold: float = 0.5) -> dict:
    """Write ``model``'s forward pass into ``out`` as ``fmt`` with ``model.json``; returns that description.

    Raises :class:`ModelError` when the export does not give torch's detections on the sample frames.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown model format '{fmt}' (known: {', '.join(FORMATS)})")
    if importlib.util.find_spec("onnx") is None or fmt == "openvino" and not openvino_installed():
        raise ModelError(f"exporting to {fmt} needs {'onnx' if fmt == 'onnx' else 'OpenVINO and onnx'}: {INSTALL_HINT}")
    reference = Predictor(model, score_threshold=score_threshold, inference_size=input_size, runtime="torch")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    path = export_onnx(reference.graph, out / FORMATS["onnx"][0])
    if fmt == "openvino":
        path = _onnx_to_openvino(path, out / FORMATS["openvino"][0])
    run, checker = _runner(path)
    description = {
        "streamseg": __version__, "model": model.name, "architecture": model.architecture, "format": fmt,
        "files": list(FORMATS[fmt]),
        "classes": list(model.class_names), **CONTRACT, "settings": reference.graph.settings(), "checked": None,
    }
    if run is not None:
        frames = sample_frames()
        exported = [RawDetections(*(torch.from_numpy(np.asarray(o)) for o in run(frame.image))) for frame in frames]
        # against the graph as exported, whole frames in: not Predictor.forward, which shrinks them first
        ours = [reference.runtime.forward([frame])[0] for frame in frames]
        pairs = list(zip(reference.postprocess(ours, frames), reference.postprocess(exported, frames)))
        agreement = compare(pairs)
        description["checked"] = {"with": checker, "detections": sum(len(ours) for ours, _ in pairs),
                                  **agreement.to_dict()}
    write_json_atomic(out / DESCRIPTION, description)
    if description["checked"] and not description["checked"]["identical"]:
        raise ModelError(f"{path}: the export does not give torch's detections on the sample frames "
                         f"({description['checked']})")
    return description


def _onnx_to_openvino(onnx: Path, xml: Path) -> Path:
    import openvino

    from .openvino_runtime import openvino_core

    ir = openvino_core().read_model(onnx)
    openvino.save_model(ir, xml, compress_to_fp16=False)  # the weights stay fp32
    del ir  # it may hold the ONNX file open
    onnx.unlink()
    return xml


def _runner(path: Path) -> tuple[Runner | None, str | None]:
    """A function running the exported file on one frame, and what runs it: ONNX Runtime for ONNX where
    installed (what deployments most often use), else OpenVINO; (None, None) with neither."""
    if path.suffix == ".onnx" and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(image: np.ndarray) -> tuple[np.ndarray, ...]:
            return tuple(session.run(list(OUTPUTS), {"image": image}))

        return run, f"onnxruntime {onnxruntime.__version__}"
    if openvino_installed():
        import openvino

        from .openvino_runtime import openvino_core

        compiled = openvino_core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return (lambda image: compiled(image).to_tuple()), f"openvino {openvino.__version__}"
    return None, None
