"""Runtimes for the forward pass: torch (eager, any device) and OpenVINO (CPU), chosen per predictor.

Both run the same :class:`~streamseg.runtimes.graph.DetectionGraph` and give the same
:class:`RawDetections`; everything after the forward pass is the predictor's, shared by both.
``auto`` takes OpenVINO on the CPU for the compact models (the shipped one, and checkpoints trained
from it) where it is installed and the model exports, torch otherwise, saying why in one line when it
falls back.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..errors import InputError, ModelError
from ..models.registry import LoadedModel
from .base import RawDetections, Runtime
from .graph import DetectionGraph
from .torch_runtime import TorchRuntime

__all__ = ["PRECISIONS", "RUNTIMES", "DetectionGraph", "RawDetections", "Runtime", "open_runtime"]

RUNTIMES = ("auto", "torch", "openvino")
PRECISIONS = ("fp32", "bf16")  # bf16: OpenVINO only, on CPUs that have it (AVX-512 BF16, AMX)
INSTALL_HINT = "pip install 'streamseg[openvino]'"

log = logging.getLogger("streamseg.runtimes")


def open_runtime(graph: DetectionGraph, model: LoadedModel, runtime: str = "auto", precision: str = "fp32",
                 workers: int = 1, cache_dir: Path | None = None) -> Runtime:
    """The runtime that will run ``graph``; ``workers``: how many threads will call it at once."""
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got '{runtime}'")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    on_cpu = model.device.type == "cpu"
    # auto: OpenVINO for the compact models only. torchvision's R50-FPN ran slower in OpenVINO than in torch
    # with the pipeline's two workers (1,660 against 1,231 ms a frame, docs/benchmarks.md), after a long export.
    if runtime == "torch" or runtime == "auto" and (not on_cpu or model.architecture != "compact"):
        if precision != "fp32":
            raise InputError(f"precision {precision} needs the openvino runtime on the CPU")
        return TorchRuntime(graph, model.device)
    if not on_cpu:
        raise InputError(f"the openvino runtime runs on the CPU, not {model.device}: add --device cpu")
    if not openvino_installed():
        if runtime == "openvino":
            raise ModelError(f"the openvino runtime needs OpenVINO and ONNX, which are not installed: {INSTALL_HINT}")
        log.warning("OpenVINO is not installed: running on torch, about half as fast on CPU (%s)", INSTALL_HINT)
        return TorchRuntime(graph, model.device)
    try:
        from .openvino_runtime import OpenVinoRuntime

        return OpenVinoRuntime(graph, model, precision, workers, cache_dir)
    except Exception as exc:  # noqa: BLE001 - export and compilation fail in many ways; auto goes on with torch
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        if runtime == "openvino":
            raise ModelError(f"{model.name} cannot run in OpenVINO ({reason})") from exc
        log.warning("%s cannot run in OpenVINO (%s); running on torch%s", model.name, reason,
                    " in fp32" if precision != "fp32" else "")
        return TorchRuntime(graph, model.device)


def openvino_installed() -> bool:
    """OpenVINO, and onnx for torch's exporter: the optional dependencies of the openvino runtime."""
    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "onnx"))
